"""
launch_pytest tests of the launch files: the launched nodes answer camera frames.

They need launch, launch_ros and launch_pytest (a ROS 2 workspace: ``colcon test``) and are
skipped without them. launch_pytest of the 2024 vintage fails on pytest >= 8.4 (ros2/launch#947):
pin pytest below 8.4 in such a workspace.
"""

from pathlib import Path

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
                params_file=small_params, cameras_file=cameras_file),
        launch_pytest.actions.ReadyToTest(),
    ])


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
