# Copyright 2026 regseg_ros maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
How every node of the package starts and stops (rclpy only, no torch).

Start-up configuration errors become one FATAL line naming the fix and exit status 2 (launch files
do not respawn on it); SIGINT/SIGTERM stop the node cleanly with exit status 0.
"""

import re
import signal
import sys
from typing import Callable, List

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidServiceNameException, InvalidTopicNameException
from rclpy.executors import ExternalShutdownException
from regseg_ros.core.errors import RegsegError

CONFIG_ERROR = 2   # start-up configuration error: launch files do not respawn on it


def publish_diagnostics(node, statuses: Callable[[], List[DiagnosticStatus]]) -> None:
    """Publish ``statuses()`` on /diagnostics once a second, on the steady clock."""
    publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def tick():
        array = DiagnosticArray(status=statuses())
        array.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(array)
    # The steady clock: a paused bag (use_sim_time) must not stop the diagnostics.
    node.create_timer(1.0, tick, clock=Clock(clock_type=ClockType.STEADY_TIME))


class StartupError(Exception):
    """A configuration error at start-up, with the logger of the node it stopped."""

    def __init__(self, reason: str, logger):
        super().__init__(reason)
        self.logger = logger


def startup(node, setup: Callable[[], None]) -> None:
    """Run ``setup``; turn configuration errors into a StartupError naming the fix."""
    try:
        setup()
    except RegsegError as exc:
        raise StartupError(str(exc), node.get_logger()) from None
    except (InvalidTopicNameException, InvalidServiceNameException) as exc:
        raise StartupError(f'{exc}: fix the -r remap, the namespace or the topic parameter '
                           '(topic names are letters, digits, _ and /)',
                           node.get_logger()) from None


def ros_args_error(text: str) -> str:
    """Turn rcl's argument-parsing error into one line naming the argument and the fix."""
    text = re.sub(r', at /\S+:\d+', '', ' '.join(text.split()))
    text = text.replace('failed to initialize rcl: ', '')
    if 'params file' in text:
        return (f'{text}: a params file is YAML keyed `/**:` (or the node name), then '
                '`ros__parameters:`, then NAME: VALUE lines')
    if 'remap rule' in text:
        return (f'{text}: a remap is FROM:=TO with valid names (letters, digits, _ and /), e.g. '
                '-r image:=/camera/image_raw')
    return f'{text}: check --ros-args (-p NAME:=VALUE, -r FROM:=TO, --params-file FILE)'


def fatal(logger, reason: str) -> int:
    """Log the one FATAL line of a start-up error; return the exit code."""
    logger.fatal(f'cannot start: {reason}')
    return CONFIG_ERROR


def run(make_node: Callable[[], object], logger_name: str, usage: Callable[[], str],
        args=None) -> int:
    """Run a node until SIGINT/SIGTERM (exit 0) or a start-up configuration error (exit 2)."""
    argv = list(sys.argv if args is None else args)
    user_args = argv[1:argv.index('--ros-args')] if '--ros-args' in argv else argv[1:]
    if '-h' in user_args or '--help' in user_args:
        print(usage())
        return 0
    logger = rclpy.logging.get_logger(logger_name)
    try:
        rclpy.init(args=args)
    except Exception as exc:  # noqa: B902 rcl's own errors: a bad params file, a bad remap
        return fatal(logger, ros_args_error(str(exc)))
    node = None
    code = 0
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        code = fatal(exc.logger, str(exc))
    except Exception:  # noqa: B902
        # SIGTERM shuts the context down under the executor's wait; rclpy then raises RCLError
        # ('context is not valid') instead of ExternalShutdownException. That is a clean stop.
        if rclpy.ok():
            raise
    finally:
        # Ctrl-C in a terminal reaches the node twice under ros2 launch (from the terminal and
        # from launch). A second signal must not interrupt the worker's join: the process would
        # exit with the worker inside torch ('terminate called without an active exception').
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            if hasattr(node, 'stop'):
                node.stop()  # the worker: after the frame in hand
            node.destroy_node()
        rclpy.try_shutdown()
    return code
