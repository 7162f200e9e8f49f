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
ROS side of freespace: message conversions, parameters and one camera's grid and scan.

:class:`FreespacePublisher` lets any node (the ``regseg`` segmentation node too) publish
``~/freespace_grid`` and ``~/freespace_scan`` for the one camera it segments; the
``freespace`` fusion node (:mod:`regseg_ros.ros.freespace_node`) uses :class:`CameraSource`
per camera and fuses them.
"""

import array
import math
import threading
import time
from typing import Dict, List, Optional, Sequence

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import KeyValue
from nav_msgs.msg import OccupancyGrid
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.freespace import (
    boundary_points, CameraCells, CameraMapper, default_obstacles, fuse, Semantics, VirtualScan)
from regseg_ros.core.labels import LabelSet
from regseg_ros.core.projection import (
    CameraModel, CameraPose, check_above_ground, GridSpec)
from sensor_msgs.msg import CameraInfo, LaserScan, PointCloud2, PointField

THROTTLE_S = 5.0
POSE_EPS_M, POSE_EPS_ROT = 1e-3, 1e-4   # smaller pose changes (tf jitter) keep the lookup

# Shared by the fusion node and the in-node publisher: name, default, description.
# A default of None is an array parameter declared by type: unset means "take it from ROS".
GLOBAL_PARAMS = (
    ('base_frame', 'base_link', 'Frame of the grid and the scan (REP-105 base_link)'),
    ('min_confidence', 0.0, 'Pixels below this confidence (0..1) end the free run as unknown; '
     '0 = off'),
    ('grid_resolution', 0.1, 'Grid cell size in metres'),
    ('grid_forward', 40.0, 'Grid extent ahead of base_frame in metres'),
    ('grid_back', 40.0, 'Grid extent behind base_frame in metres'),
    ('grid_left', 20.0, 'Grid extent to the left in metres'),
    ('grid_right', 20.0, 'Grid extent to the right in metres'),
    ('ground_height', 0.0, 'Height of the ground plane in base_frame in metres'),
    ('max_range', 40.0, 'Cells farther than this from a camera (on the ground) are not used; '
     'also the scan range_max'),
    ('scan_angle_increment', math.radians(0.5), 'Scan bin width in radians'),
    ('publish_points', False, 'Also publish ~/freespace_points (PointCloud2 of boundary '
     'cells)'),
)
# Per camera (prefix NAME. in the fusion node, freespace. in a segmentation node).
CAMERA_PARAMS = (
    ('pose', None, '[x, y, z, roll, pitch, yaw] of the camera body frame (x along the optical '
     'axis, y left, z up) in base_frame, metres/radians; unset or [] = tf2 with the image '
     'frame_id (the optical frame)'),
    ('K', None, 'Override of camera_info K (9 doubles, row-major); unset = from camera_info'),
    ('D', None, 'Override of camera_info D; used with K'),
    ('distortion_model', '', 'Override: plumb_bob, rational_polynomial or equidistant'),
    ('width', 0, 'Override of the camera_info width (0 = from camera_info)'),
    ('height', 0, 'Override of the camera_info height (0 = from camera_info)'),
)


def output_qos() -> QoSProfile:
    """Return the outputs' QoS: reliable, keep last 1, volatile (like the segmentation outputs)."""
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def sibling_topic(image_topic: str, name: str = 'camera_info') -> str:
    """image_transport's sibling: /cam/image_raw -> /cam/camera_info; image -> camera_info."""
    head, _sep, _tail = image_topic.rpartition('/')
    return f'{head}/{name}' if head or image_topic.startswith('/') else name


# -- parameters --------------------------------------------------------------------------------

def declare(node, name: str, default, description: str):
    """Declare a parameter; an array default of None is declared by type (unset allowed)."""
    descriptor = ParameterDescriptor(description=description)
    if default is None:
        return node.declare_parameter(name, Parameter.Type.DOUBLE_ARRAY, descriptor)
    return node.declare_parameter(name, default, descriptor)


def value(node, name: str, default=None):
    """Return a parameter's value; ``default`` when it was declared by type and never set."""
    try:
        got = node.get_parameter(name).value
    except ParameterUninitializedException:
        return default
    return default if got is None else got


def declare_camera_params(node, prefix: str) -> None:
    for name, default, doc in CAMERA_PARAMS:
        declare(node, prefix + name, default, doc)


def declare_global_params(node, prefix: str, label_set: LabelSet) -> None:
    for name, default, doc in GLOBAL_PARAMS:
        declare(node, prefix + name, default, doc)
    node.declare_parameter(prefix + 'drivable_classes', list(label_set.default_drivable),
                           ParameterDescriptor(description='Classes cells are free on'))
    node.declare_parameter(
        prefix + 'obstacle_classes', list(default_obstacles(label_set)) or [''],
        ParameterDescriptor(description='Non-drivable classes whose ground contact is '
                            'occupied (others only end the free run)'))


class Settings:
    """The global parameters read and checked; errors name the parameter."""

    def __init__(self, node, prefix: str, label_set: LabelSet):
        def get(name):
            return value(node, prefix + name)
        self.grid = GridSpec(get('grid_resolution'), get('grid_forward'), get('grid_back'),
                             get('grid_left'), get('grid_right'), get('ground_height'))
        obstacles = [c for c in get('obstacle_classes') if c]
        for name, names in (('drivable_classes', get('drivable_classes')),
                            ('obstacle_classes', obstacles)):
            try:
                label_set.class_ids(names)
            except RegsegError as exc:
                raise RegsegError(f'parameter {prefix}{name}: {exc}') from None
        try:
            self.semantics = Semantics.from_names(label_set, get('drivable_classes'),
                                                  obstacles, get('min_confidence'))
        except RegsegError as exc:
            raise RegsegError(f'{exc} (parameters {prefix}drivable_classes, '
                              f'{prefix}obstacle_classes, {prefix}min_confidence)') from None
        if not obstacles:
            node.get_logger().warning(
                f'{prefix}obstacle_classes is empty (label set {label_set.name!r} has no default '
                'obstacles): the grid marks no cell occupied and the scan no obstacle; name the '
                f'classes that stand on the ground, e.g. -p {prefix}obstacle_classes:="[...]" '
                f'(classes: {", ".join(label_set.classes)})')
        self.scan = VirtualScan(self.grid, get('scan_angle_increment'), get('max_range'))
        self.base_frame = get('base_frame')
        if not self.base_frame:
            raise RegsegError(f'{prefix}base_frame is empty: name the vehicle frame, e.g. '
                              'base_link')
        self.max_range = float(get('max_range'))
        self.publish_points = bool(get('publish_points'))


# -- conversions -------------------------------------------------------------------------------

def camera_model(name: str, info: Optional[CameraInfo], overrides: Dict) -> CameraModel:
    """
    Return the camera model from a CameraInfo and parameter overrides (empty/0 = from CameraInfo).

    Raises RegsegError naming the camera for no CameraInfo, a zero K, an unknown distortion
    model or a size that does not fit.
    """
    k = overrides.get('K') or (list(info.k) if info is not None else None)
    width = overrides.get('width') or (info.width if info is not None else 0)
    height = overrides.get('height') or (info.height if info is not None else 0)
    if k is None or not width or not height:
        raise RegsegError(f'camera {name!r}: no camera_info received yet and no K/width/height '
                          'parameters: publish camera_info or set the intrinsics')
    if overrides.get('K'):
        model_name = overrides.get('distortion_model') or 'plumb_bob'
        d = overrides.get('D') or []
    else:
        model_name = overrides.get('distortion_model') or info.distortion_model or 'plumb_bob'
        d = overrides.get('D') or list(info.d)
    model = CameraModel(tuple(k), tuple(d), model_name, int(width), int(height), name)
    fx, cx, cy = model.K[0], model.K[2], model.K[5]
    if not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5) or fx > 100 * width:
        raise RegsegError(f'camera {name!r}: K (cx={cx:g}, cy={cy:g}, fx={fx:g}) does not fit '
                          f'a {width}x{height} image: camera_info size and K disagree')
    return model


def pose_from_transform(transform) -> CameraPose:
    """Return the CameraPose of a geometry_msgs/TransformStamped base_frame <- optical frame."""
    t, q = transform.transform.translation, transform.transform.rotation
    return CameraPose.from_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def labels_array(msg, what: str = 'labels') -> np.ndarray:
    """Return the pixels of a mono8 sensor_msgs/Image (class ids or confidence) as (H, W) uint8."""
    if msg.encoding not in ('mono8', '8UC1'):
        raise RegsegError(f'{what} image has encoding {msg.encoding!r}: expected mono8 class '
                          'ids (subscribe to the labels output of the regseg node)')
    h, w, step = msg.height, msg.width, msg.step
    if not h or not w or step < w or len(msg.data) < step * h:
        raise RegsegError(f'{what} image {w}x{h} (step {step}) holds {len(msg.data)} bytes: '
                          'truncated or malformed')
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray))
                         else msg.data, np.uint8, count=step * h)
    return data.reshape(h, step)[:, :w]


def _array(typecode: str, values: np.ndarray) -> array.array:
    """
    Return an array.array of the values' bytes: what every rosidl sequence setter takes fast.

    Humble's setters reject numpy arrays and check bytes element by element.
    """
    out = array.array(typecode)
    out.frombytes(np.ascontiguousarray(values).tobytes())
    return out


def grid_msg(stamp, frame_id: str, grid: GridSpec, data: np.ndarray) -> OccupancyGrid:
    msg = OccupancyGrid()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.info.map_load_time = stamp
    msg.info.resolution = float(grid.resolution)
    msg.info.width, msg.info.height = grid.width, grid.height
    ox, oy, oz = grid.origin
    msg.info.origin.position.x, msg.info.origin.position.y = float(ox), float(oy)
    msg.info.origin.position.z = float(oz)
    msg.info.origin.orientation.w = 1.0
    msg.data = _array('b', data.astype(np.int8, copy=False))
    return msg


def scan_msg(stamp, frame_id: str, scan: VirtualScan, ranges: np.ndarray) -> LaserScan:
    msg = LaserScan()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.angle_min = float(scan.angle_min + 0.5 * scan.angle_increment)   # bin centres
    msg.angle_increment = float(scan.angle_increment)
    msg.angle_max = float(msg.angle_min + (scan.bins - 1) * scan.angle_increment)
    msg.range_min = 0.0
    msg.range_max = float(scan.max_range)
    msg.ranges = _array('f', ranges.astype(np.float32, copy=False))
    return msg


def points_msg(stamp, frame_id: str, points: np.ndarray) -> PointCloud2:
    msg = PointCloud2()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.height, msg.width = 1, len(points)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate('xyz')]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = 12, 12 * len(points)
    msg.is_dense = True
    msg.data = _array('B', np.ascontiguousarray(points, np.float32))
    return msg


def stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


# -- one camera --------------------------------------------------------------------------------

class Problem(Exception):
    """A camera left out of this update: ``kind`` is the diagnostics counter it counts in."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class CameraSource:
    """
    One camera's intrinsics (camera_info, parameter overrides) and pose (parameters or tf2).

    ``cells()`` turns a labels message into this camera's cells or raises :class:`Problem`.
    Thread-safe: camera_info may arrive on another thread than the labels.
    """

    KINDS = ('missing_intrinsics', 'missing_pose', 'bad_input')

    def __init__(self, node, name: str, prefix: str, camera_info_topic: str, settings: Settings,
                 tf_buffer=None):
        self.name = name
        self.settings = settings
        self.tf_buffer = tf_buffer
        self._lock = threading.Lock()
        self._info: Optional[CameraInfo] = None
        self.overrides = {key: value(node, prefix + key) for key in
                          ('K', 'D', 'distortion_model', 'width', 'height')}
        if self.overrides['K'] is not None and len(self.overrides['K']) not in (0, 9):
            raise RegsegError(f'{prefix}K has {len(self.overrides["K"])} values: give 9 '
                              '(row-major 3x3) or leave it unset')
        pose = value(node, prefix + 'pose') or []
        try:
            self.param_pose = CameraPose.from_params(pose, name) if pose else None
        except RegsegError as exc:
            raise RegsegError(f'parameter {prefix}pose: {exc}') from None
        self._pose: Optional[CameraPose] = None
        self.mapper = CameraMapper(settings.grid, settings.semantics, settings.max_range)
        self.camera_info_topic = camera_info_topic
        node.create_subscription(CameraInfo, camera_info_topic, self._on_info,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.last_problem = ''

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def model(self) -> CameraModel:
        with self._lock:
            info = self._info
        try:
            return camera_model(self.name, info, self.overrides)
        except RegsegError as exc:
            raise Problem('missing_intrinsics', f'{exc} (camera_info topic '
                          f'{self.camera_info_topic})') from None

    def pose(self, header) -> CameraPose:
        if self.param_pose is not None:
            pose = self.param_pose
        elif self.tf_buffer is None:
            raise Problem('missing_pose', f'camera {self.name!r}: no pose parameter and no tf2 '
                          '(tf2_ros is not installed): set its pose parameter')
        else:
            base = self.settings.base_frame
            try:
                tf = self.tf_buffer.lookup_transform(base, header.frame_id,
                                                     Time.from_msg(header.stamp),
                                                     timeout=Duration(seconds=0.0))
                pose = pose_from_transform(tf)
            except Exception as exc:  # noqa: B902 tf2's lookup errors are many types
                raise Problem('missing_pose', f'camera {self.name!r}: no transform {base} <- '
                              f'{header.frame_id!r}: {type(exc).__name__}: {exc} (publish it '
                              'with tf2, e.g. a static_transform_publisher, or set the pose '
                              'parameter)') from None
            pose = self._steady(pose)
        try:
            check_above_ground(pose, self.settings.grid, self.name)
        except RegsegError as exc:
            raise Problem('bad_input', str(exc)) from None
        return pose

    def _steady(self, pose: CameraPose) -> CameraPose:
        """Keep the previous pose for changes below tf jitter: no lookup rebuild for them."""
        old = self._pose
        if old is not None and (
                np.abs(np.subtract(old.rotation, pose.rotation)).max() < POSE_EPS_ROT
                and np.abs(np.subtract(old.translation, pose.translation)).max() < POSE_EPS_M):
            return old
        self._pose = pose
        return pose

    def cells(self, labels_msg, confidence_msg=None) -> CameraCells:
        model = self.model()
        pose = self.pose(labels_msg.header)
        try:
            labels = labels_array(labels_msg)
            conf = None if confidence_msg is None else labels_array(confidence_msg, 'confidence')
            return self.mapper.cells(model, pose, labels, conf)
        except RegsegError as exc:
            raise Problem('bad_input', f'camera {self.name!r}: {exc}') from None

    def count(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        self.last_problem = str(problem)


class Throttle:
    """Per-key throttled warnings (rclpy throttles per call site, not per camera)."""

    def __init__(self, logger, period: float = THROTTLE_S):
        self.logger, self.period = logger, period
        self._last: Dict[str, float] = {}

    def warn(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) >= self.period:
            self._last[key] = now
            self.logger.warning(text)


class GridPublisher:
    """The grid, scan and optional points publishers of one node."""

    def __init__(self, node, settings: Settings):
        self.settings = settings
        qos = output_qos()
        self.grid = node.create_publisher(OccupancyGrid, '~/freespace_grid', qos)
        self.scan = node.create_publisher(LaserScan, '~/freespace_scan', qos)
        self.points = (node.create_publisher(PointCloud2, '~/freespace_points', qos)
                       if settings.publish_points else None)
        self._fused = None

    def publish(self, stamp: TimeMsg, cameras: Sequence[CameraCells]) -> None:
        s = self.settings
        self._fused = fused = fuse(s.grid, cameras, self._fused)
        self.grid.publish(grid_msg(stamp, s.base_frame, s.grid, fused))
        self.scan.publish(scan_msg(stamp, s.base_frame, s.scan, s.scan.ranges(fused)))
        if self.points is not None:
            self.points.publish(points_msg(stamp, s.base_frame, boundary_points(s.grid, fused)))


class FreespacePublisher:
    """
    Grid and scan of ONE camera, for any node: ``update(header, labels)`` per label image.

    Declares its parameters under ``freespace.`` on the node (``freespace.enabled`` false by
    default: then it declares nothing else and ``update`` does nothing), subscribes to
    ``freespace.camera_info_topic`` (default: the image topic's sibling ``camera_info``) and
    publishes ``~/freespace_grid`` and ``~/freespace_scan``. Raises RegsegError for bad
    parameters at construction (a start-up configuration error for the node).
    """

    PREFIX = 'freespace.'

    def __init__(self, node, label_set: LabelSet, image_topic: str = 'image', tf_buffer=None):
        p = self.PREFIX
        node.declare_parameter(p + 'enabled', False, ParameterDescriptor(
            description='Publish ~/freespace_grid and ~/freespace_scan of this camera'))
        self.enabled = bool(node.get_parameter(p + 'enabled').value)
        if not self.enabled:
            return
        declare_global_params(node, p, label_set)
        declare_camera_params(node, p)
        node.declare_parameter(p + 'camera_info_topic', '', ParameterDescriptor(
            description="CameraInfo topic (empty: the image topic's sibling camera_info)"))
        self.node = node
        self.settings = Settings(node, p, label_set)
        if tf_buffer is None and value(node, p + 'pose') in (None, []):
            tf_buffer = make_tf_buffer(node)
        # rclpy releases without Node.resolve_topic_name: the relative sibling (remap it too)
        resolve = getattr(node, 'resolve_topic_name', lambda name: name)
        info_topic = (node.get_parameter(p + 'camera_info_topic').value
                      or sibling_topic(resolve(image_topic)))
        self.source = CameraSource(node, node.get_name(), p, info_topic, self.settings,
                                   tf_buffer)
        self.out = GridPublisher(node, self.settings)
        self.throttle = Throttle(node.get_logger())
        self.published = 0

    def required_outputs(self) -> set:
        """Return the segmentation outputs ``update`` needs (labels; confidence if used)."""
        if not self.enabled:
            return set()
        return {'labels'} | ({'confidence'} if self.settings.semantics.min_confidence > 0
                             else set())

    def update(self, header, labels: Optional[np.ndarray],
               confidence: Optional[np.ndarray] = None) -> bool:
        """Publish grid and scan for one label image (HxW uint8); False when left out."""
        if not self.enabled or labels is None:
            return False
        try:
            model = self.source.model()
            pose = self.source.pose(header)
            try:
                cells = self.source.mapper.cells(model, pose, labels, confidence)
            except RegsegError as exc:
                raise Problem('bad_input', f'camera {self.source.name!r}: {exc}') from None
        except Problem as problem:
            self.source.count(problem)
            self.throttle.warn(problem.kind, f'freespace: {problem}; camera left out')
            return False
        self.out.publish(header.stamp, [cells])
        self.published += 1
        return True

    def diagnostic_values(self) -> List[KeyValue]:
        """Counters to add to the node's diagnostics."""
        if not self.enabled:
            return []
        s = self.source
        kv = [KeyValue(key=f'freespace_{k}', value=str(v)) for k, v in s.counts.items()]
        kv.append(KeyValue(key='freespace_published', value=str(self.published)))
        kv.append(KeyValue(key='freespace_last_problem', value=s.last_problem))
        return kv


def make_tf_buffer(node):
    """Return a tf2 Buffer with a TransformListener when tf2_ros imports, else None."""
    try:
        import tf2_ros
    except ImportError:
        return None
    buffer = tf2_ros.Buffer()
    node._regseg_tf_listener = tf2_ros.TransformListener(buffer, node)
    return buffer
