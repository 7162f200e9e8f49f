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
The freespace node and the one-camera publisher over real rclpy and DDS.

The fusion node runs as its console script (start-up, outputs, a stale camera) and in-process
with an injected tf2-style buffer (tf2_ros is not installable here: that object, returning real
geometry_msgs/TransformStamped messages, is the tf path these tests cover).
"""

import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from freespace_scenes import fisheye_camera, pinhole_camera, render
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import OccupancyGrid
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from regseg_ros.core.freespace import OCCUPIED
from regseg_ros.core.labels import CITYSCAPES
from regseg_ros.ros.freespace_node import FreespaceNode
from regseg_ros.ros.freespace_ros import FreespacePublisher
from regseg_ros.ros.node_main import StartupError
from ros_harness import make_image, NodeProcess, RosPeer
from sensor_msgs.msg import CameraInfo, LaserScan, PointCloud2

FRONT, SIDE = pinhole_camera('front'), fisheye_camera('side')
GRID_ARGS = {'grid_resolution': 0.2, 'grid_forward': 30.0, 'grid_back': 10.0,
             'grid_left': 12.0, 'grid_right': 8.0, 'max_range': 30.0}
EXPECTED_SIZE = (200, 100)    # (30 + 10) / 0.2 by (12 + 8) / 0.2 cells


def camera_info(cam, k=None, model=None):
    msg = CameraInfo()
    msg.width, msg.height = cam.model.width, cam.model.height
    msg.k = [float(v) for v in (cam.model.K if k is None else k)]
    msg.d = [float(v) for v in cam.model.D]
    msg.distortion_model = model or cam.model.distortion_model
    return msg


def label_msg(cam, labels, stamp, frame_id=None):
    return make_image(labels, 'mono8', stamp=stamp, frame_id=frame_id or f'{cam.model.name}_opt')


def ros_args(**params):
    out = []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            value = '[' + ', '.join(str(v) for v in value) + ']'
        out += ['-p', f'{name}:={value}']
    return out


def wait_camera(peer, diags, camera, predicate, what, timeout=90.0, node='/freespace'):
    """Spin until a diagnostics status of one camera satisfies predicate; return its values."""
    found = []

    def match():
        for array in diags:
            for status in array.status:
                if status.name == f'{node}: camera {camera}':
                    values = {kv.key: kv.value for kv in status.values}
                    if predicate(values, status):
                        found.append((values, status))
                        return True
        return False
    peer.spin_until(match, timeout, what)
    return found[0]


class Frames:
    """Publish labels of several cameras with the peer clock's stamps."""

    def __init__(self, peer, cameras):
        self.peer = peer
        self.labels = {c.model.name: render(c) for c in cameras}
        self.cams = {c.model.name: c for c in cameras}
        self.pubs = {n: peer.publisher(type(make_image(np.zeros((1, 1), np.uint8), 'mono8')),
                                       f'/{n}/regseg/labels') for n in self.cams}
        self.infos = {n: peer.publisher(CameraInfo, f'/{n}/camera_info') for n in self.cams}

    def stamp(self):
        t = self.peer.node.get_clock().now().to_msg()
        return (t.sec, t.nanosec)

    def send(self, names=None, info=True):
        stamp = self.stamp()
        for name in names or self.cams:
            if info:
                self.infos[name].publish(camera_info(self.cams[name]))
            self.pubs[name].publish(label_msg(self.cams[name], self.labels[name], stamp))
        return stamp


def pose_param(cam):
    return list(cam.body_pose)


# -- the console script ------------------------------------------------------------------------

@pytest.fixture
def peer():
    p = RosPeer('freespace_test')
    yield p
    p.close()


def test_fusion_node_publishes_grid_and_scan_and_a_stale_camera_drops_out_and_back(
        tmp_path, peer):
    params = dict(GRID_ARGS, cameras=['front', 'side'], max_age=1.0,
                  **{'front.pose': pose_param(FRONT), 'side.pose': pose_param(SIDE)})
    node = NodeProcess(tmp_path, *ros_args(**params), executable='freespace_node')
    try:
        grids = peer.collect(OccupancyGrid, '/freespace/freespace_grid')
        scans = peer.collect(LaserScan, '/freespace/freespace_scan')
        diags = peer.collect(DiagnosticArray, '/diagnostics')
        frames = Frames(peer, [FRONT, SIDE])
        sent = []

        def publish_until(predicate, names, what, timeout=90.0):
            deadline = peer.node.get_clock().now().nanoseconds + timeout * 1e9
            while peer.node.get_clock().now().nanoseconds < deadline:
                sent.append(frames.send(names))
                try:
                    peer.spin_until(predicate, 0.2, what)
                    return
                except AssertionError:
                    continue
            raise AssertionError(f'timed out waiting for {what}\n{node.log()}')

        publish_until(lambda: any(g.header.stamp.sec for g in grids) and scans, None,
                      'a grid and a scan')
        grid = grids[-1]
        assert grid.header.frame_id == 'base_link'
        assert (grid.header.stamp.sec, grid.header.stamp.nanosec) in sent
        assert (grid.info.width, grid.info.height) == EXPECTED_SIZE
        assert grid.info.resolution == pytest.approx(0.2)
        assert (grid.info.origin.position.x, grid.info.origin.position.y) == (-10.0, -8.0)
        data = np.frombuffer(bytes(grid.data), np.int8)
        assert len(data) == 200 * 100
        # the car ahead, 12 m in front of base_link, is occupied
        assert (data.reshape(100, 200)[40, 108:112] == OCCUPIED).any()   # x 11.7 .. 12.5 m
        scan = scans[-1]
        assert scan.header.frame_id == 'base_link'
        assert (scan.header.stamp.sec, scan.header.stamp.nanosec) in sent
        ahead = int((0.0 - scan.angle_min) / scan.angle_increment)
        assert abs(scan.ranges[ahead] - 12.0) <= 0.3
        wait_camera(peer, diags, 'side', lambda v, s: v['fresh'] == 'True', 'side fresh')
        # 'side' stops: it drops out (counted), 'front' keeps the grid coming
        since = len(grids)
        publish_until(lambda: len(grids) > since + 5, ['front'], 'grids from front alone')
        publish_until(lambda: any(
            s.name == '/freespace: camera side' and
            {kv.key: kv.value for kv in s.values}['stale_dropouts'] == '1'
            for a in diags for s in a.status), ['front'], 'side counted stale')
        assert "camera 'side'" in node.log() and 'left out' in node.log()
        # ... and comes back
        del diags[:]
        publish_until(lambda: any(
            s.name == '/freespace: camera side' and
            {kv.key: kv.value for kv in s.values}['fresh'] == 'True'
            for a in diags for s in a.status), None, 'side fresh again')
    finally:
        assert node.stop() == 0, node.log()


def test_own_classes_without_obstacle_classes_warn_that_nothing_is_occupied(tmp_path):
    (tmp_path / 'classes.yaml').write_text(
        'name: warehouse\nclasses:\n  - {name: floor, color: [128, 64, 128], drivable: true}\n'
        '  - {name: rack, color: [70, 70, 70]}\n')
    node = NodeProcess(tmp_path, *ros_args(cameras=['front'],
                                           label_set=str(tmp_path / 'classes.yaml')),
                       executable='freespace_node')
    try:
        deadline = time.monotonic() + 60
        while 'obstacle_classes is empty' not in node.log() and time.monotonic() < deadline:
            assert node.proc.poll() is None, node.log()
            time.sleep(0.2)
        assert ("obstacle_classes is empty (label set 'warehouse' has no default obstacles): "
                'the grid marks no cell occupied') in node.log()
        assert 'classes: floor, rack' in node.log()
    finally:
        assert node.stop() == 0, node.log()


@pytest.mark.parametrize('params,expected', [
    ({}, 'cameras is empty'),
    ({'cameras': ['front'], 'grid_resolution': 0.0}, 'grid_resolution 0.0 must be positive'),
    ({'cameras': ['front'], 'front.pose': [1.0, 2.0]}, 'parameter front.pose: '),
    ({'cameras': ['front'], 'obstacle_classes': ['cars']}, "'cars' is not a class"),
    ({'cameras': ['front'], 'label_set': 'warehouse'},
     "label_set 'warehouse' is neither one of ['cityscapes', 'camvid'] nor a file"),
    # a classes YAML (as train reads it) is loaded: its classes decide what is valid
    ({'cameras': ['front'], 'label_set': '{tmp}/classes.yaml', 'obstacle_classes': ['car']},
     "'car' is not a class of label set 'warehouse'"),
])
def test_config_errors_exit_2_with_one_fatal_line(tmp_path, params, expected):
    (tmp_path / 'classes.yaml').write_text(
        'name: warehouse\nclasses:\n  - {name: floor, color: [128, 64, 128], drivable: true}\n'
        '  - {name: rack, color: [70, 70, 70]}\n')
    params = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in params.items()}
    node = NodeProcess(tmp_path, *ros_args(**params), executable='freespace_node')
    assert node.wait(timeout=60) == 2
    node.stop()
    fatal = [line for line in node.log().splitlines() if 'FATAL' in line]
    assert len(fatal) == 1 and expected in fatal[0], node.log()


# -- in-process: injected tf, bad input ----------------------------------------------------------

class TransformTable:
    """tf2_ros.Buffer.lookup_transform's signature over fixed real TransformStamped messages."""

    def __init__(self):
        self.transforms = {}
        self.calls = 0

    def add(self, target, source, cam):
        rot = cam.pose.matrix
        # quaternion of the rotation matrix (w > 0 branch is enough for these poses)
        w = math.sqrt(max(0.0, 1 + rot[0, 0] + rot[1, 1] + rot[2, 2])) / 2
        msg = TransformStamped()
        msg.header.frame_id, msg.child_frame_id = target, source
        t = msg.transform.translation
        t.x, t.y, t.z = cam.pose.translation
        q = msg.transform.rotation
        q.w = w
        q.x = (rot[2, 1] - rot[1, 2]) / (4 * w)
        q.y = (rot[0, 2] - rot[2, 0]) / (4 * w)
        q.z = (rot[1, 0] - rot[0, 1]) / (4 * w)
        self.transforms[(target, source)] = msg

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        self.calls += 1
        try:
            return self.transforms[(target_frame, source_frame)]
        except KeyError:
            raise LookupError(f'"{target_frame}" passed to lookupTransform argument '
                              f'target_frame does not exist') from None


class InProcess:
    """A context with the node under test and a peer node in one executor."""

    def __init__(self, make):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = make(self.context)
        self.peer = rclpy.create_node('freespace_peer', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)

    def spin_until(self, predicate, timeout=60.0, what='condition'):
        RosPeer.spin_until(self, predicate, timeout, what)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.try_shutdown(context=self.context)


def fusion(tf, **params):
    overrides = [Parameter(k, value=v) for k, v in dict(GRID_ARGS, **params).items()]

    def make(context):
        return FreespaceNode(tf_buffer=tf, context=context, parameter_overrides=overrides)
    return InProcess(make)


def test_tf_pose_and_bad_input_leave_cameras_out_with_counted_warnings():
    tf = TransformTable()
    tf.add('base_link', 'front_opt', FRONT)
    run = fusion(tf, cameras=['front', 'side', 'rear', 'low'], max_age=5.0,
                 **{'low.pose': [0.0, 0.0, -0.3, 0.0, 0.2, 0.0]})
    try:
        peer = run.peer
        grids = []
        peer.create_subscription(OccupancyGrid, '/freespace/freespace_grid', grids.append, 10)
        pubs = {n: peer.create_publisher(type(label_msg(FRONT, np.zeros((1, 1), np.uint8),
                                                        (0, 0))), f'/{n}/regseg/labels', 10)
                for n in ('front', 'side', 'rear', 'low')}
        infos = {n: peer.create_publisher(CameraInfo, f'/{n}/camera_info', 10)
                 for n in ('front', 'side', 'rear', 'low')}
        labels = render(FRONT)
        cams = run.node.cameras

        def send():
            stamp = peer.get_clock().now().to_msg()
            st = (stamp.sec, stamp.nanosec)
            infos['front'].publish(camera_info(FRONT))
            infos['side'].publish(camera_info(FRONT, k=[0.0] * 9))          # zero K
            infos['rear'].publish(camera_info(FRONT, model='kannala_brandt'))
            infos['low'].publish(camera_info(FRONT))
            pubs['front'].publish(label_msg(FRONT, labels, st, 'front_opt'))
            pubs['side'].publish(label_msg(FRONT, labels, st, 'side_opt'))
            pubs['rear'].publish(label_msg(FRONT, labels, st, 'rear_opt'))
            pubs['low'].publish(label_msg(FRONT, labels, st, 'low_opt'))

        def problems_counted():
            c = {n: cams[n].source.counts for n in cams}
            return (grids and c['side']['missing_intrinsics'] and c['rear']['missing_intrinsics']
                    and c['low']['bad_input'])
        sender = peer.create_timer(0.5, send)
        try:
            run.spin_until(problems_counted, 90.0, 'grids and counted problems')
        except AssertionError:
            raise AssertionError(str({n: (cams[n].counts, cams[n].source.counts,
                                          cams[n].source.last_problem) for n in cams})
                                 + f' grids {len(grids)}') from None
        peer.destroy_timer(sender)
        assert tf.calls > 0
        # front came through tf and sees the car 12 m ahead
        data = np.frombuffer(bytes(grids[-1].data), np.int8).reshape(100, 200)
        assert (data[40, 108:112] == OCCUPIED).any()
        assert cams['front'].fresh and cams['front'].source.mapper.builds == 1
        side = cams['side'].source.last_problem
        assert "camera 'side'" in side and 'zero K' in side
        rear = cams['rear'].source.last_problem
        assert "camera 'rear'" in rear and "unknown distortion_model 'kannala_brandt'" in rear
        low = cams['low'].source.last_problem
        assert "camera 'low' is at z=-0.300 m, not above the ground" in low
        # a missing transform: 'side' gets a good camera_info, but no transform exists
        good_info = camera_info(FRONT)

        def send_good_side():
            infos['side'].publish(good_info)
            pubs['side'].publish(label_msg(FRONT, labels, (1, 0), 'side_opt'))
        sender = peer.create_timer(0.5, send_good_side)
        run.spin_until(lambda: cams['side'].source.counts['missing_pose'] > 0, 60.0,
                       'side counted without a transform')
        peer.destroy_timer(sender)
        assert "no transform base_link <- 'side_opt'" in cams['side'].source.last_problem
        status = {s.name: s for s in run.node.diagnostic_statuses()}
        values = {kv.key: kv.value for kv in status['/freespace: camera side'].values}
        assert int(values['missing_pose']) >= 1 and int(values['missing_intrinsics']) >= 1
        # the node keeps serving: more grids come while the bad cameras stay out
        count = len(grids)
        peer.create_timer(0.5, send)
        run.spin_until(lambda: len(grids) > count + 2, 60.0, 'more grids')
    finally:
        run.close()


def test_startup_error_in_process_names_the_parameter():
    with pytest.raises(StartupError, match='max_age 0.0 must be positive'):
        fusion(None, cameras=['front'], max_age=0.0)


# -- the one-camera publisher in any node ------------------------------------------------------

def test_freespace_publisher_in_a_node_publishes_grid_and_scan():
    overrides = [Parameter('freespace.enabled', value=True),
                 Parameter('freespace.pose', value=pose_param(FRONT)),
                 Parameter('freespace.grid_resolution', value=0.2),
                 Parameter('freespace.publish_points', value=True)]

    def make(context):
        node = Node('seg', context=context, parameter_overrides=overrides)
        node.fs = FreespacePublisher(node, CITYSCAPES, image_topic='/cam/image_raw')
        return node
    run = InProcess(make)
    try:
        assert run.node.fs.source.camera_info_topic == '/cam/camera_info'
        grids, scans, points = [], [], []
        run.peer.create_subscription(OccupancyGrid, '/seg/freespace_grid', grids.append, 10)
        run.peer.create_subscription(PointCloud2, '/seg/freespace_points', points.append, 10)
        run.peer.create_subscription(LaserScan, '/seg/freespace_scan', scans.append, 10)
        info = run.peer.create_publisher(CameraInfo, '/cam/camera_info', 10)
        labels = render(FRONT)
        header = label_msg(FRONT, labels, (42, 7)).header
        # no camera_info yet: left out, counted
        assert not run.node.fs.update(header, labels)
        assert run.node.fs.source.counts['missing_intrinsics'] == 1

        def publish():
            info.publish(camera_info(FRONT))
            run.node.fs.update(header, labels)
        run.peer.create_timer(0.5, publish)
        run.spin_until(lambda: grids and scans and points, 60.0, 'grid, scan and points')
        assert grids[-1].header.frame_id == 'base_link'
        assert (grids[-1].header.stamp.sec, grids[-1].header.stamp.nanosec) == (42, 7)
        assert (grids[-1].info.width, grids[-1].info.height) == (400, 200)
        assert (scans[-1].header.stamp.sec, scans[-1].header.stamp.nanosec) == (42, 7)
        # the boundary points are the occupied cells' centres on the ground
        data = np.frombuffer(bytes(grids[-1].data), np.int8)
        cloud = points[-1]
        assert cloud.header.frame_id == 'base_link'
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z']
        xyz = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 3)
        assert cloud.width == len(xyz) == (data == OCCUPIED).sum() > 5
        assert np.all(np.abs(xyz[:, 0] - 12.0) < 0.5) and np.all(xyz[:, 2] == 0.0)
        assert run.node.fs.required_outputs() == {'labels'}
        keys = {kv.key for kv in run.node.fs.diagnostic_values()}
        assert {'freespace_missing_intrinsics', 'freespace_published'} <= keys
    finally:
        run.close()


def test_freespace_publisher_is_off_by_default():
    def make(context):
        node = Node('seg_off', context=context)
        node.fs = FreespacePublisher(node, CITYSCAPES)
        return node
    run = InProcess(make)
    try:
        assert not run.node.fs.enabled
        assert not run.node.fs.update(None, np.zeros((4, 4), np.uint8))
        assert run.node.fs.required_outputs() == set()
        assert not run.node.has_parameter('freespace.pose')
        topics = [name for name, _types in
                  run.node.get_publisher_names_and_types_by_node('seg_off', '/')
                  + run.node.get_subscriber_names_and_types_by_node('seg_off', '/')]
        assert not [t for t in topics if 'freespace' in t or 'camera_info' in t], topics
    finally:
        run.close()
