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
launch_pytest tests of the launch files: the launched nodes answer camera frames.

They need launch, launch_ros and launch_pytest (a ROS 2 workspace: ``colcon test``) and are
skipped without them. launch_pytest of the 2024 vintage fails on pytest >= 8.4 (ros2/launch#947):
pin pytest below 8.4 in such a workspace.

The exit-code tests run the launch file as ``ros2 launch`` does (``ros2 launch`` itself when
ros2cli is there, else the same LaunchService calls) in a child process with a private TMPDIR,
which must be empty when the launch has ended: no ``launch_params_*``, no generated RViz file.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import pytest
from ros_harness import make_image, RosPeer, stamp_of
from sensor_msgs.msg import CompressedImage, Image

_WHY = 'needs {} (ROS 2 workspace: source /opt/ros/<distro>/setup.bash, then colcon test)'
launch_pytest = pytest.importorskip('launch_pytest', reason=_WHY.format('launch_pytest'))
launch_ros = pytest.importorskip('launch_ros', reason=_WHY.format('launch_ros'))
launch = pytest.importorskip('launch', reason=_WHY.format('launch'))
launch_actions = pytest.importorskip('launch.actions', reason=_WHY.format('launch'))
launch_sources = pytest.importorskip('launch.launch_description_sources',
                                     reason=_WHY.format('launch'))

pytestmark = [pytest.mark.launch_test, pytest.mark.ros]

LAUNCH_DIR = Path(__file__).resolve().parent.parent / 'launch'
OUTPUTS = {'labels': 'mono8', 'drivable_mask': 'mono8', 'color': 'rgb8', 'overlay': 'rgb8',
           'confidence': 'mono8'}
SMALL_PARAMS = """/**:
  ros__parameters:
    network_height: 64
    network_width: 128
"""
TIMEOUT_S = 120.0
# What `ros2 launch <file> name:=value ...` does (ros2launch.api.launch_a_launch_file).
LAUNCH_RUNNER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
arguments = [tuple(a.split(':=', 1)) for a in sys.argv[2:]]
service = LaunchService(argv=sys.argv[2:])
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=arguments)]))
sys.exit(service.run())
"""


@pytest.fixture(scope='module', autouse=True)
def private_tmp(tmp_path_factory):
    """Give launch_ros and the launch files a temp folder of their own; it must end up empty."""
    path = tmp_path_factory.mktemp('launch_tmp')
    before, tempfile.tempdir = tempfile.tempdir, str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = before
    left = sorted(os.listdir(path))
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f'the launches left temporary files: {left}'


def launch_command(filename, **arguments):
    """Return `ros2 launch launch/<filename> name:=value ...` (or the same without ros2cli)."""
    args = [f'{name}:={value}' for name, value in arguments.items()]
    ros2 = shutil.which('ros2')
    if ros2:
        return [ros2, 'launch', str(LAUNCH_DIR / filename), *args]
    return [sys.executable, '-c', LAUNCH_RUNNER, str(LAUNCH_DIR / filename), *args]


class LaunchProcess:
    """A launch in a child process (own session, own TMPDIR); output collected in a file."""

    def __init__(self, tmp_path, filename, **arguments):
        self.tmp = tmp_path / 'tmpdir'
        self.tmp.mkdir()
        self.log_path = tmp_path / 'launch.log'
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            launch_command(filename, **arguments), stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(os.environ, TMPDIR=str(self.tmp)), start_new_session=True)

    def log(self):
        return self.log_path.read_text()

    def wait(self, timeout=TIMEOUT_S):
        """Wait for the launch to end by itself; kill its whole session if it does not."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f'the launch did not end within {timeout} s:\n{self.log()}')

    def interrupt(self, timeout=TIMEOUT_S):
        """Ctrl-C the launch as a terminal does (its whole process group); return its exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self):
        self.kill()
        self._log.close()

    def leftovers(self):
        return sorted(os.listdir(self.tmp))


def include(filename, **arguments):
    """Include ``launch/<filename>`` with ``name:=value`` arguments."""
    return launch_actions.IncludeLaunchDescription(
        launch_sources.PythonLaunchDescriptionSource(str(LAUNCH_DIR / filename)),
        launch_arguments=list(arguments.items()))


def frame():
    img = np.zeros((48, 64, 3), np.uint8)
    img[24:] = (128, 64, 128)
    return img


def wait_for_outputs(peer, msg_type, topic, msg, namespace):
    """Publish ``msg`` on ``topic`` until every output of ``namespace``/regseg has answered it."""
    prefix = f'{namespace}/regseg' if namespace else '/regseg'
    outs = {name: peer.collect(Image, f'{prefix}/{name}') for name in OUTPUTS}
    pub = peer.publisher(msg_type, topic)
    peer.spin_until(lambda: pub.get_subscription_count() > 0, TIMEOUT_S,
                    f'the node under {prefix} to subscribe {topic}')
    peer.publish_until(
        pub, msg, lambda: all(any(stamp_of(m) == stamp_of(msg) for m in got)
                              for got in outs.values()),
        timeout=TIMEOUT_S, what=f'every output under {prefix}')
    for name, encoding in OUTPUTS.items():
        out = next(m for m in outs[name] if stamp_of(m) == stamp_of(msg))
        assert (out.encoding, out.height, out.width) == (encoding, 48, 64), name
        assert out.header.frame_id == msg.header.frame_id


@pytest.fixture
def small_params(tmp_path):
    path = tmp_path / 'small.yaml'
    path.write_text(SMALL_PARAMS)
    return str(path)


@launch_pytest.fixture
def single_camera(small_params):
    """segmentation.launch.py on the CPU platform, untrained, small network."""
    return launch.LaunchDescription([
        include('segmentation.launch.py', platform='cpu', allow_untrained='true',
                params_file=small_params, image='/lp_cam/image_raw', namespace='lp_single'),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=single_camera)
def test_single_camera_launch_publishes_every_output():
    peer = RosPeer('launch_pytest_single')
    try:
        wait_for_outputs(peer, Image, '/lp_cam/image_raw',
                         make_image(frame(), 'rgb8', stamp=(3, 0), frame_id='lp_cam'),
                         '/lp_single')
    finally:
        peer.close()


@pytest.fixture
def cameras_file(tmp_path):
    path = tmp_path / 'cameras.yaml'
    path.write_text("""cameras:
  - {name: lp_front, topic: /lp_front_cam/image_raw, transport: raw}
  - {name: lp_left, topic: /lp_left_cam/image_raw, transport: compressed}
  - {name: lp_rear, topic: /lp_rear_cam/image_raw, enabled: false}
""")
    return str(path)


@launch_pytest.fixture
def two_cameras(small_params, cameras_file):
    """vehicle_cameras.launch.py with two enabled cameras (raw and compressed) and one disabled."""
    return launch.LaunchDescription([
        include('vehicle_cameras.launch.py', platform='cpu', allow_untrained='true',
                params_file=small_params, cameras_file=cameras_file,
                process_per_camera='true', freespace='false'),
        launch_pytest.actions.ReadyToTest(),
    ])


@launch_pytest.fixture
def one_process(small_params, cameras_file):
    """vehicle_cameras.launch.py as by default: one multi_camera_node for both cameras."""
    return launch.LaunchDescription([
        include('vehicle_cameras.launch.py', platform='cpu', allow_untrained='true',
                params_file=small_params, cameras_file=cameras_file, freespace='false'),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=one_process)
def test_vehicle_launch_by_default_serves_every_camera_from_one_process():
    peer = RosPeer('launch_pytest_multi')
    try:
        wait_for_outputs(peer, Image, '/lp_front_cam/image_raw',
                         make_image(frame(), 'rgb8', stamp=(6, 0), frame_id='lp_front'),
                         '/lp_front')
        ok, buf = cv2.imencode('.png', frame()[..., ::-1])
        assert ok
        msg = CompressedImage(format='png', data=buf.tobytes())
        msg.header.stamp.sec, msg.header.frame_id = 7, 'lp_left'
        wait_for_outputs(peer, CompressedImage, '/lp_left_cam/image_raw/compressed', msg,
                         '/lp_left')
        names = peer.node.get_node_names_and_namespaces()
        assert ('multi_camera', '/') in names
        assert not any(name == 'regseg' for name, _ns in names)
    finally:
        peer.close()


@pytest.mark.launch(fixture=two_cameras)
def test_vehicle_launch_runs_a_node_per_enabled_camera():
    peer = RosPeer('launch_pytest_vehicle')
    try:
        wait_for_outputs(peer, Image, '/lp_front_cam/image_raw',
                         make_image(frame(), 'rgb8', stamp=(4, 0), frame_id='lp_front'),
                         '/lp_front')
        ok, buf = cv2.imencode('.png', frame()[..., ::-1])
        assert ok
        msg = CompressedImage(format='png', data=buf.tobytes())
        msg.header.stamp.sec, msg.header.frame_id = 5, 'lp_left'
        wait_for_outputs(peer, CompressedImage, '/lp_left_cam/image_raw/compressed', msg,
                         '/lp_left')
        names = peer.node.get_node_names_and_namespaces()
        assert ('regseg', '/lp_front') in names and ('regseg', '/lp_left') in names
        assert not any(ns == '/lp_rear' for _name, ns in names)
    finally:
        peer.close()


# -- exit codes, respawn, rviz: the launch run as ros2 launch runs it ------------------------

def test_node_that_cannot_start_fails_the_launch_with_its_reason(tmp_path):
    missing = tmp_path / 'missing_regseg.pth'
    launch = LaunchProcess(tmp_path, 'segmentation.launch.py', platform='cpu',
                           weights=str(missing), namespace='lp_fail',
                           image='/lp_fail_cam/image_raw')
    try:
        code = launch.wait()
    finally:
        launch.close()
    log = launch.log()
    assert code != 0, log
    assert 'Caught exception in launch' in log, log
    assert ('/lp_fail/regseg cannot start (exit code 2, a configuration error): ') in log, log
    (fatal,) = [line for line in log.splitlines() if '[FATAL]' in line and 'cannot start' in line]
    reason = fatal.split('cannot start: ', 1)[1].strip()
    assert str(missing) in reason
    assert f'a configuration error): {reason}' in log  # the launch repeats the node's reason
    assert launch.leftovers() == []


def test_configuration_error_is_not_respawned(tmp_path):
    launch = LaunchProcess(tmp_path, 'segmentation.launch.py', platform='cpu',
                           weights=str(tmp_path / 'missing.pth'), respawn='true',
                           namespace='lp_respawn', image='/lp_respawn_cam/image_raw')
    try:
        code = launch.wait()  # a respawn loop would never end
    finally:
        launch.close()
    log = launch.log()
    assert code != 0, log
    assert log.count('process started with pid') == 1, log
    assert 'not respawned: a configuration error comes back on every start' in log, log
    assert launch.leftovers() == []


def test_rviz_is_skipped_without_rviz2(tmp_path, small_params):
    from ament_index_python.packages import get_package_prefix, PackageNotFoundError
    try:
        get_package_prefix('rviz2')
    except PackageNotFoundError:
        pass
    else:
        pytest.skip('rviz2 is installed here: rviz:=true would open a window')
    launch = LaunchProcess(tmp_path, 'segmentation.launch.py', rviz='true',
                           allow_untrained='true', params_file=small_params,
                           namespace='lp_rviz', image='/lp_rviz_cam/image_raw')
    peer = RosPeer('launch_pytest_rviz')
    try:
        wait_for_outputs(peer, Image, '/lp_rviz_cam/image_raw',
                         make_image(frame(), 'rgb8', stamp=(6, 0), frame_id='lp_rviz_cam'),
                         '/lp_rviz')
        assert launch.proc.poll() is None, launch.log()
        assert launch.interrupt() == 0, launch.log()
        deadline = time.monotonic() + 30.0  # the node went with the launch: no orphan
        while ('regseg', '/lp_rviz') in peer.node.get_node_names_and_namespaces():
            assert time.monotonic() < deadline, 'segmentation_node outlived its launch'
            peer.executor.spin_once(timeout_sec=0.2)
    finally:
        peer.close()
        launch.close()
    log = launch.log()
    assert "rviz:=true but rviz2 is not installed (package 'rviz2' not found" in log, log
    assert 'platform:=auto picked ' in log, log  # the default platform says what it picked
    assert launch.leftovers() == []  # parameter files and the generated RViz file are gone
