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
The ``multi_camera`` node: every camera of a vehicle through one model, in batches.

One process, one backend (one CUDA context, one TensorRT engine): a worker takes the newest
frame of each camera that has a fresh one and segments them as one batch (1..max_batch). Each
camera's outputs go to ``/<namespace>/regseg/<output>``, the topics a ``regseg`` node in that
namespace would publish, so RViz, planners and the freespace node see no difference.
"""

import re
import sys
import threading
from typing import Dict, List

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from regseg_ros.core.errors import RegsegError
from regseg_ros.ros import node_main, params as P
from regseg_ros.ros.camera_pipeline import BatchWorker, CameraPipeline, COUNTERS
from regseg_ros.segmenter import OUTPUTS

NODE_NAME = 'multi_camera'
OUTPUT_NODE = 'regseg'   # outputs as the regseg node's: /<namespace>/regseg/<output>
TRANSPORTS = ('raw', 'compressed')
_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')
_NAMESPACE = re.compile(r'[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*')
# per camera NAME: NAME.<key> -> (default or None when required, description)
CAMERA_PARAMS = {
    'topic': (None, 'Image topic of the camera (sensor_msgs/Image; with transport compressed '
                    'the node subscribes <topic>/compressed)'),
    'transport': ('raw', 'raw or compressed'),
    'namespace': ('', 'Outputs go to /<namespace>/regseg/<output> (default: the camera name)'),
}


class MultiCameraNode(Node):
    """RegSeg semantic segmentation of several cameras with one model, batched."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.worker = None
        P.startup(self, self._setup)

    def _setup(self) -> None:
        label_set = P.declare_model_parameters(self)
        cameras = self._declare_cameras()
        names = list(cameras)
        P.warn_unknown(self, tuple(f'{name}.' for name in names))
        p = P.node_params(self)
        P.check_choices(p)
        max_batch = min(p['max_batch'], len(names))
        self.segmenter = P.build_segmenter(self, p, label_set, max_batch=max_batch)
        self.backend = self.segmenter.backend
        self.settings = {'max_rate_hz': p['max_rate_hz'],
                         'max_input_pixels': p['max_input_pixels']}
        self._cond = threading.Condition()
        in_qos = P.qos(p['input_qos'], 1)
        out_qos = P.qos(p['output_qos'], p['output_qos_depth'])
        self.cameras: List[CameraPipeline] = []
        for name in names:
            topic, transport, namespace = (cameras[name][key] for key in CAMERA_PARAMS)
            prefix = f'/{namespace}/'
            outputs = {out: f'{prefix}{OUTPUT_NODE}/{out}' for out in OUTPUTS}
            if transport == 'compressed':
                topic += '/compressed'
            self.cameras.append(CameraPipeline(self, name, topic, transport, outputs, in_qos,
                                               out_qos, self._cond, self.settings))
            self.get_logger().info(f'camera {name}: {topic} ({transport}) -> '
                                   f'{prefix}{OUTPUT_NODE}/*')
        self.add_on_set_parameters_callback(self._on_set_parameters)
        node_main.publish_diagnostics(self, self.diagnostic_statuses)
        self.worker = BatchWorker(self, self.segmenter, self.cameras, self._cond, self.settings,
                                  max_batch=max_batch)
        self.worker.start()
        info = self.backend.describe()
        how = (f'frame by frame in {self.worker.lanes} lanes side by side' if self.worker.lanes
               else f'in batches of up to {self.worker.max_batch}')
        self.get_logger().info(
            f'segmenting {len(names)} camera(s) {how} with {info["backend"]}/{info["device"]}/'
            f'{info["precision"]}' + (f' ({info["forward"]} forward)' if 'forward' in info
                                      else ''))

    def _declare_cameras(self) -> Dict[str, Dict[str, str]]:
        """Declare ``cameras`` and each camera's parameters; return them by name (checked)."""
        self.declare_parameter('cameras', [''], P.descriptor(
            'Camera names; per camera NAME: NAME.topic (required), NAME.transport (raw or '
            'compressed), NAME.namespace (default NAME)', read_only=True))
        names = [n for n in self.get_parameter('cameras').value if n]
        if not names:
            raise RegsegError("parameter 'cameras' is empty: list the camera names, e.g. "
                              'cameras: [front, rear], with front.topic: '
                              '/front_camera/image_raw')
        namespaces, cameras = {}, {}
        for name in names:
            if not _NAME.fullmatch(name):
                raise RegsegError(f'camera name {name!r} in parameter cameras: use letters, '
                                  'digits and _ starting with a letter, e.g. front')
            if names.count(name) > 1:
                raise RegsegError(f'camera {name!r} is listed twice in parameter cameras: list '
                                  'each camera once')
            for key, (default, doc) in CAMERA_PARAMS.items():
                self.declare_parameter(f'{name}.{key}', default if default is not None else '',
                                       P.descriptor(f'camera {name}: {doc}', read_only=True))
            p = {key: self.get_parameter(f'{name}.{key}').value for key in CAMERA_PARAMS}
            if not isinstance(p['topic'], str) or not p['topic'].strip():
                raise RegsegError(f'parameter {name}.topic is not set: give the image topic of '
                                  f'camera {name}, e.g. {name}.topic: /{name}_camera/image_raw')
            if p['transport'] not in TRANSPORTS:
                raise RegsegError(f'parameter {name}.transport is {p["transport"]!r}: set it to '
                                  f'one of {list(TRANSPORTS)}')
            namespace = (p['namespace'] or name).strip('/')
            if not _NAMESPACE.fullmatch(namespace):
                raise RegsegError(f'parameter {name}.namespace is {p["namespace"]!r}: use '
                                  'letters, digits and _ in /-separated tokens, e.g. front')
            if namespace in namespaces:
                raise RegsegError(
                    f'cameras {namespaces[namespace]!r} and {name!r} both have namespace '
                    f'{namespace!r}: their outputs would collide; set {name}.namespace')
            namespaces[namespace] = name
            cameras[name] = dict(p, topic=p['topic'].strip(), namespace=namespace)
        return cameras

    def _on_set_parameters(self, params):
        with self._cond:  # the worker reads the settings under it
            return P.apply_runtime(self.segmenter, self.settings, params)

    def diagnostic_statuses(self) -> List[DiagnosticStatus]:
        """One status per camera and one for the node in total."""
        info = self.backend.describe()
        fqn = self.get_fully_qualified_name()
        statuses = [cam.diagnostic_status(f'{fqn}: {cam.name} segmentation', info,
                                          batched=True) for cam in self.cameras]
        totals: Dict[str, int] = {key: sum(cam.counts[key] for cam in self.cameras)
                                  for key in COUNTERS}
        worst = max(s.level for s in statuses)
        bad = [f'{cam.name}: {s.message}' for cam, s in zip(self.cameras, statuses)
               if s.level != DiagnosticStatus.OK]
        kv = [KeyValue(key=k, value=str(v)) for k, v in info.items()]
        kv.append(KeyValue(key='cameras', value=str(len(self.cameras))))
        kv += [KeyValue(key=f'frames_{k}', value=str(v)) for k, v in totals.items()]
        statuses.append(DiagnosticStatus(
            level=worst, name=f'{fqn}: total', message='; '.join(bad) or 'segmenting',
            hardware_id=f'{info["backend"]}/{info["device"]}', values=kv))
        return statuses

    def stop(self) -> None:
        """Stop the worker after the batch in hand and release the backend."""
        if self.worker is not None:
            self.worker.stop()


def usage() -> str:
    """Return ``--help`` text: how to run the node and every parameter with its default."""
    extra = [('cameras', "['']", 'Camera names (required)')]
    extra += [(f'NAME.{key}', repr(default) if default is not None else '(required)', doc)
              for key, (default, doc) in CAMERA_PARAMS.items()]
    return '\n'.join([
        'usage: ros2 run regseg_ros multi_camera_node --ros-args --params-file FILE '
        '[-p NAME:=VALUE ...]',
        '',
        'RegSeg semantic segmentation of several cameras with one model, batched. Per camera '
        'NAME: subscribes to',
        'NAME.topic (sensor_msgs/Image, or <topic>/compressed) and publishes '
        '/<NAME.namespace>/regseg/labels, drivable_mask,',
        'color, overlay and confidence, as a regseg node in that namespace would; /diagnostics '
        'has one status per camera and a total.',
        'Exit status: 0 on SIGINT/SIGTERM, 2 on a configuration error at start-up (one FATAL '
        'line says why).',
        '',
        'parameters (default; * = changeable at run time):',
    ] + P.usage_rows(extra))


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (exit 0) or a start-up configuration error (exit 2)."""
    return P.run(MultiCameraNode, NODE_NAME, usage, args)


if __name__ == '__main__':
    sys.exit(main())
