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

"""Process-level ROS 2 test helpers: start the node executable, talk to it over loopback DDS."""

import os
from pathlib import Path
import signal
import subprocess
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regseg_ros.tools.demo import node_command
from sensor_msgs.msg import Image


class NodeProcess:
    """The node as a child process; output goes to a log file; stopped by its pid."""

    def __init__(self, tmp_path, *ros_args, executable='segmentation_node'):
        self.log_path = Path(tmp_path) / f'{executable}-{time.monotonic_ns()}.log'
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            node_command(executable) + ['--ros-args', *ros_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def log(self):
        return self.log_path.read_text()

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def signal(self, sig=signal.SIGINT):
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class RosPeer:
    """A test-side rclpy node with helpers to publish frames and wait for answers."""

    def __init__(self, name='regseg_test'):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def spin_until(self, predicate, timeout=30.0, what='condition'):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            self.executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f'timed out after {timeout} s waiting for {what}')

    def collect(self, msg_type, topic, qos=None):
        """Subscribe and return the list the messages are appended to."""
        got = []
        qos = qos or QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def publisher(self, msg_type, topic, depth=10):
        return self.node.create_publisher(msg_type, topic, depth)

    def publish_until(self, pub, msg, predicate, timeout=40.0, every=1.0, what='an answer'):
        """Publish ``msg`` now and again every ``every`` s until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.publish(msg)
            try:
                self.spin_until(predicate, timeout=every, what=what)
                return
            except AssertionError:
                continue
        raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def make_image(array, encoding, stamp=(0, 0), frame_id='camera'):
    """Build a ``sensor_msgs/Image`` from an (H, W[, C]) array."""
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = array.strides[0]
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def as_array(msg):
    """Return the pixels of a mono8/rgb8 ``Image`` as an array."""
    channels = 3 if msg.encoding == 'rgb8' else 1
    data = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    return data[:, :msg.width * channels].reshape(msg.height, msg.width, channels).squeeze(-1) \
        if channels == 1 else data.reshape(msg.height, msg.width, 3)


def stamp_of(msg):
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)
