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
The ``regseg`` node: camera images in; labels, drivable mask and RViz images out.

A thin ROS shell over :class:`regseg_ros.segmenter.Segmenter`. The subscription callback keeps
only the newest frame; one worker thread segments and publishes, so latency stays one inference
plus a little, however fast the camera is. ``multi_camera_node`` runs the same pipeline for
several cameras with one model (:mod:`regseg_ros.ros.camera_pipeline`).
"""

import sys
import threading

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from regseg_ros.ros import node_main, params as P
from regseg_ros.ros.camera_pipeline import BatchWorker, CameraPipeline
from regseg_ros.ros.freespace_ros import FreespacePublisher
from regseg_ros.segmenter import OUTPUTS

CONFIG_ERROR = P.CONFIG_ERROR


class SegmentationNode(Node):
    """RegSeg semantic segmentation of one camera."""

    def __init__(self, **kwargs):
        super().__init__('regseg', **kwargs)
        self.worker = None
        P.startup(self, self._setup)

    def _setup(self) -> None:
        label_set = P.declare_model_parameters(self)
        p = P.node_params(self)
        P.check_choices(p)
        self.segmenter = P.build_segmenter(self, p, label_set)
        self.backend = self.segmenter.backend
        # image_transport's naming: `image` remapped, then /compressed. rclpy releases without
        # Node.resolve_topic_name get the relative name (remap `image/compressed` there).
        resolve = getattr(self, 'resolve_topic_name', lambda name: name)
        # freespace.* (freespace.enabled false by default) with the classes of the model, declared
        # before the check for parameters this node does not have.
        self.freespace = FreespacePublisher(self, self.segmenter.label_set, resolve('image'))
        P.warn_unknown(self)
        self.settings = {'max_rate_hz': p['max_rate_hz'],
                         'max_input_pixels': p['max_input_pixels']}
        self._cond = cond = threading.Condition()
        topic = resolve('image') + ('/compressed' if p['input_transport'] == 'compressed'
                                    else '')
        self.camera = CameraPipeline(
            self, '', topic, p['input_transport'], {name: f'~/{name}' for name in OUTPUTS},
            P.qos(p['input_qos'], 1), P.qos(p['output_qos'], p['output_qos_depth']), cond,
            self.settings)
        if self.freespace.enabled:
            self.camera.on_published = self.freespace.update
            self.camera.required = self.freespace.required_outputs()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        node_main.publish_diagnostics(self, lambda: [self.diagnostic_status()])
        self.worker = BatchWorker(self, self.segmenter, [self.camera], cond, self.settings)
        self.worker.start()
        info = self.backend.describe()
        self.get_logger().info(
            f'segmenting {topic} ({p["input_transport"]}, {p["input_qos"]}) with '
            f'{info["backend"]}/{info["device"]}/{info["precision"]}; outputs under '
            f'{self.get_fully_qualified_name()}/')

    def _on_set_parameters(self, params):
        with self._cond:  # the worker reads the settings under it
            return P.apply_runtime(self.segmenter, self.settings, params)

    def diagnostic_status(self) -> DiagnosticStatus:
        """Summarise rates, latency and counters; the level is for what is new since last call."""
        status = self.camera.diagnostic_status(
            f'{self.get_fully_qualified_name()}: segmentation', self.backend.describe())
        status.values += self.freespace.diagnostic_values()
        return status

    def stop(self) -> None:
        """Stop the worker after the frame in hand and release the backend."""
        if self.worker is not None:
            self.worker.stop()


def usage() -> str:
    """Return ``--help`` text: how to run the node and every parameter with its default."""
    return '\n'.join([
        'usage: ros2 run regseg_ros segmentation_node [--ros-args -p NAME:=VALUE '
        '--params-file FILE -r image:=TOPIC ...]',
        '',
        'RegSeg semantic segmentation of one camera. Subscribes to `image` (sensor_msgs/Image) '
        'or `<image>/compressed`;',
        'publishes ~/labels, ~/drivable_mask, ~/color, ~/overlay, ~/confidence and /diagnostics;',
        'with freespace.enabled also ~/freespace_grid and ~/freespace_scan (freespace.* '
        'parameters: see the README).',
        'Exit status: 0 on SIGINT/SIGTERM, 2 on a configuration error at start-up (one FATAL '
        'line says why).',
        '',
        'parameters (default; * = changeable at run time):',
    ] + P.usage_rows())


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (exit 0) or a start-up configuration error (exit 2)."""
    return P.run(SegmentationNode, 'regseg', usage, args)


if __name__ == '__main__':
    sys.exit(main())
