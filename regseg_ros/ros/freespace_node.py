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
The ``freespace`` node: several cameras' labels in; one fused grid and virtual scan out.

Per camera NAME (parameter ``cameras``) it subscribes to ``NAME.labels_topic`` (mono8 class
ids from a regseg node), ``NAME.camera_info_topic`` and, with ``min_confidence`` > 0,
``NAME.confidence_topic``; the pose comes from ``NAME.pose`` or tf2. Each camera's newest mask
no older than ``max_age`` is fused: occupied where any camera says occupied, else free where
any says free, else unknown. Outputs in ``base_frame``: ``~/freespace_grid``
(nav_msgs/OccupancyGrid), ``~/freespace_scan`` (sensor_msgs/LaserScan) and optionally
``~/freespace_points`` (sensor_msgs/PointCloud2).
"""

import os
import sys
import time
from typing import Dict, List

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException, InvalidTopicNameException, ParameterException)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.labels import get_label_set, LABEL_SETS, LabelSet, load_label_set
from regseg_ros.core.stats import SampleWindow
from regseg_ros.ros import node_main
from regseg_ros.ros.freespace_ros import (
    CameraSource, declare, declare_camera_params, declare_global_params, GridPublisher,
    make_tf_buffer, Problem, Settings, stamp_ns, Throttle, value)
from sensor_msgs.msg import Image

FUSION_PARAMS = (
    ('label_set', 'cityscapes', f'Classes of the labels: one of {", ".join(LABEL_SETS)}, a '
     'classes YAML (as for train) or a checkpoint written by train'),
    ('max_age', 0.5, "A camera's newest mask older than this (s) drops out of the fusion"),
    ('publish_rate', 0.0, 'Publish at this rate in Hz; 0 = on every new mask'),
)


def label_set_named(text: str) -> LabelSet:
    """Return the label set ``text`` names: built-in, a classes YAML or a train checkpoint."""
    if text in LABEL_SETS:
        return get_label_set(text)
    if not os.path.isfile(text):
        raise RegsegError(f'label_set {text!r} is neither one of {list(LABEL_SETS)} nor a file: '
                          'name a built-in set, a classes YAML or a checkpoint written by train')
    if text.endswith(('.yaml', '.yml')):
        return load_label_set(text)
    from regseg_ros.model.weights import checkpoint_label_set  # torch: only for checkpoints
    carried = checkpoint_label_set(text)
    if carried is None:
        raise RegsegError(f'label_set {text!r} is a checkpoint without a label set (a released '
                          f'one?): use one of {list(LABEL_SETS)} for it')
    return carried


class Camera:
    """What the node keeps of one camera: its source, newest cells and counters."""

    def __init__(self, source: CameraSource):
        self.source = source
        self.cells = None
        self.stamp = None          # builtin_interfaces/Time of the newest used mask
        self.received_at = None    # steady time of its arrival
        self.fresh = False
        self.counts = {'masks': 0, 'stale_dropouts': 0}
        self.pending_labels = None
        self.pending_confidence = None


class FreespaceNode(Node):
    """Fuse several cameras' label images into a bird's-eye grid and a virtual scan."""

    def __init__(self, tf_buffer=None, **kwargs):
        super().__init__('freespace', **kwargs)
        try:
            self._setup(tf_buffer)
        except (RegsegError, ParameterException, InvalidParameterTypeException,
                InvalidTopicNameException) as exc:
            raise node_main.StartupError(str(exc), self.get_logger()) from None
        self.throttle = Throttle(self.get_logger())
        self.published = 0
        self._update_time = SampleWindow()
        self._newest_stamp = None
        if self.publish_rate > 0:
            self.create_timer(1.0 / self.publish_rate, self._publish)
        node_main.publish_diagnostics(self, self.diagnostic_statuses)
        self.get_logger().info(
            f'fusing {len(self.cameras)} cameras ({", ".join(self.cameras)}) into a '
            f'{self.settings.grid.width}x{self.settings.grid.height} grid at '
            f'{self.settings.grid.resolution} m in {self.settings.base_frame}; outputs under '
            f'{self.get_fully_qualified_name()}/')

    def _setup(self, tf_buffer) -> None:
        for name, default, doc in FUSION_PARAMS:
            declare(self, name, default, doc)
        self.declare_parameter('cameras', Parameter.Type.STRING_ARRAY, ParameterDescriptor(
            description='Camera names, e.g. [front, left, right, rear]'))
        names = [str(n).strip() for n in (value(self, 'cameras') or [])]
        if not names or not all(names):
            raise RegsegError('cameras is empty: name the cameras, e.g. '
                              "-p cameras:='[front, rear]'")
        if len(set(names)) != len(names):
            raise RegsegError(f'cameras {names} names a camera twice')
        label_set = label_set_named(value(self, 'label_set'))
        declare_global_params(self, '', label_set)
        self.settings = Settings(self, '', label_set)
        self.max_age = float(value(self, 'max_age'))
        self.publish_rate = float(value(self, 'publish_rate'))
        if not self.max_age > 0:
            raise RegsegError(f'max_age {self.max_age} must be positive (seconds, e.g. 0.5)')
        if self.publish_rate < 0:
            raise RegsegError(f'publish_rate {self.publish_rate} must be >= 0 (0 = on every '
                              'new mask)')
        self.use_confidence = self.settings.semantics.min_confidence > 0
        for name in names:
            declare_camera_params(self, f'{name}.')
            for topic, default in (('labels_topic', f'/{name}/regseg/labels'),
                                   ('confidence_topic', f'/{name}/regseg/confidence'),
                                   ('camera_info_topic', f'/{name}/camera_info')):
                declare(self, f'{name}.{topic}', default, f'{name}: {topic}')
        if tf_buffer is None and any(not value(self, f'{n}.pose') for n in names):
            tf_buffer = make_tf_buffer(self)
            if tf_buffer is None:
                self.get_logger().warning(
                    'tf2_ros is not installed: cameras without a pose parameter are left out')
        self.cameras: Dict[str, Camera] = {}
        self.publisher = GridPublisher(self, self.settings)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        for name in names:
            source = CameraSource(self, name, f'{name}.',
                                  value(self, f'{name}.camera_info_topic'), self.settings,
                                  tf_buffer)
            self.cameras[name] = Camera(source)
            self.create_subscription(Image, value(self, f'{name}.labels_topic'),
                                     lambda msg, n=name: self._on_labels(n, msg), qos)
            if self.use_confidence:
                self.create_subscription(Image, value(self, f'{name}.confidence_topic'),
                                         lambda msg, n=name: self._on_confidence(n, msg), qos)

    # -- masks --------------------------------------------------------------------------------

    def _on_labels(self, name: str, msg: Image) -> None:
        cam = self.cameras[name]
        cam.counts['masks'] += 1
        cam.pending_labels = msg
        self._consume(cam)

    def _on_confidence(self, name: str, msg: Image) -> None:
        cam = self.cameras[name]
        cam.pending_confidence = msg
        self._consume(cam)

    def _consume(self, cam: Camera) -> None:
        labels, conf = cam.pending_labels, cam.pending_confidence
        if labels is None:
            return
        if self.use_confidence:
            if conf is None or stamp_ns(conf.header.stamp) != stamp_ns(labels.header.stamp):
                return   # wait for the confidence image of the same frame
        cam.pending_labels = cam.pending_confidence = None
        t0 = time.monotonic()
        try:
            cells = cam.source.cells(labels, conf)
        except Problem as problem:
            cam.source.count(problem)
            self.throttle.warn(f'{cam.source.name}/{problem.kind}',
                               f'{problem}; camera {cam.source.name!r} left out')
            return
        self._update_time.add(time.monotonic() - t0)
        cam.cells, cam.stamp, cam.received_at = cells, labels.header.stamp, time.monotonic()
        if self.publish_rate == 0:
            self._publish()

    def _fresh(self) -> List[Camera]:
        """Cameras whose newest mask arrived within max_age and is within max_age of the newest."""
        now = time.monotonic()
        stamps = [stamp_ns(c.stamp) for c in self.cameras.values() if c.stamp is not None]
        newest = max(stamps) if stamps else 0
        fresh = []
        for name, cam in self.cameras.items():
            if cam.cells is None:
                continue
            age = now - cam.received_at
            lag = (newest - stamp_ns(cam.stamp)) / 1e9
            ok = age <= self.max_age and lag <= self.max_age
            if not ok and cam.fresh:
                cam.counts['stale_dropouts'] += 1
            if not ok:
                self.throttle.warn(f'{name}/stale', (
                    f'camera {name!r}: newest mask arrived {age:.2f} s ago and is {lag:.2f} s '
                    f"older than the newest camera's (max_age {self.max_age} s): left out"))
            cam.fresh = ok
            if ok:
                fresh.append(cam)
        return fresh

    def _publish(self) -> None:
        fresh = self._fresh()
        if not fresh:
            return
        stamp = max((c.stamp for c in fresh), key=stamp_ns)
        self.publisher.publish(stamp, [c.cells for c in fresh])
        self.published += 1

    # -- diagnostics --------------------------------------------------------------------------

    def diagnostic_statuses(self) -> List[DiagnosticStatus]:
        """One status for the fusion, one per camera."""
        fqn = self.get_fully_qualified_name()
        self._fresh()
        fresh = [n for n, c in self.cameras.items() if c.fresh]
        level = DiagnosticStatus.OK if fresh else DiagnosticStatus.ERROR
        message = (f'fusing {len(fresh)} of {len(self.cameras)} cameras' if fresh
                   else 'no camera has a fresh mask')
        statuses = [DiagnosticStatus(
            level=level, name=f'{fqn}: freespace', message=message, hardware_id='freespace',
            values=[KeyValue(key='published', value=str(self.published)),
                    KeyValue(key='fresh_cameras', value=','.join(fresh)),
                    KeyValue(key='update_ms_mean',
                             value=f'{self._update_time.mean() * 1e3:.2f}')])]
        for name, cam in self.cameras.items():
            counts = dict(cam.counts, **cam.source.counts)
            if cam.fresh:
                lvl, msg = DiagnosticStatus.OK, 'fresh'
            elif cam.source.last_problem and cam.cells is None:
                lvl, msg = DiagnosticStatus.WARN, cam.source.last_problem
            elif cam.cells is None:
                lvl, msg = DiagnosticStatus.WARN, 'no mask yet'
            else:
                lvl, msg = DiagnosticStatus.WARN, f'stale (max_age {self.max_age} s)'
            values = [KeyValue(key=k, value=str(v)) for k, v in counts.items()]
            values += [KeyValue(key='fresh', value=str(cam.fresh)),
                       KeyValue(key='lookup_builds', value=str(cam.source.mapper.builds)),
                       KeyValue(key='last_problem', value=cam.source.last_problem)]
            statuses.append(DiagnosticStatus(level=lvl, name=f'{fqn}: camera {name}',
                                             message=msg, hardware_id=name, values=values))
        return statuses


def usage() -> str:
    """Return ``--help`` text."""
    return '\n'.join([
        "usage: ros2 run regseg_ros freespace_node --ros-args -p cameras:='[front, rear]' "
        '[-p NAME:=VALUE --params-file FILE ...]',
        '',
        'Fuses the label images of several regseg nodes into ~/freespace_grid '
        '(nav_msgs/OccupancyGrid),',
        '~/freespace_scan (sensor_msgs/LaserScan) and optionally ~/freespace_points, in '
        'base_frame. Exit status 2 on a',
        'configuration error at start-up (one FATAL line says why). Parameters: '
        'config/freespace.yaml lists them.',
    ])


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (exit 0) or a start-up configuration error (exit 2)."""
    return node_main.run(FreespaceNode, 'freespace', usage, args)


if __name__ == '__main__':
    sys.exit(main())
