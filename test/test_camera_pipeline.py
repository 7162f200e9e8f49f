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

"""The batch worker in this process over real rclpy/DDS: a slow frame holds up no other camera."""

import threading

import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regseg_ros.backends.base import BackendConfig
from regseg_ros.backends.torch_backend import TorchBackend
from regseg_ros.core.labels import get_label_set
from regseg_ros.ros.camera_pipeline import BatchWorker, CameraPipeline
from regseg_ros.segmenter import OUTPUTS, Segmenter
from ros_harness import make_image, RosPeer, stamp_of
from sensor_msgs.msg import Image
from test_node import scene
import torch

pytestmark = pytest.mark.ros

MARK = (7, 77, 177)   # top-left pixels of a frame the backend holds until the gate opens


class GatedTorchBackend(TorchBackend):
    """
    The torch backend, holding a marked frame until ``gate`` is set.

    Its start-up check finds batch N inexact, as torch 2.13 does on the CPUs measured, so the
    frames of a batch run side by side whatever this CPU gives.
    """

    def __init__(self, config):
        super().__init__(config, log=lambda _message: None)
        self.gate = threading.Event()
        self.holding = threading.Event()

    def batch_is_exact(self, batch):
        return False

    def infer(self, images, output_sizes, with_confidence=False):
        if any(np.array_equal(img[0, 0], MARK) for img in images):
            self.holding.set()
            assert self.gate.wait(300), 'the test never opened the gate'
        return super().infer(images, output_sizes, with_confidence)


@pytest.fixture
def worker():
    """Two cameras (front, rear) on one BatchWorker in a node of this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)   # two frames side by side with one thread each
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('regseg_lanes', context=context)
    backend = GatedTorchBackend(BackendConfig(allow_untrained=True, input_size=(64, 128),
                                              options={'max_batch': 2}))
    backend.load()
    segmenter = Segmenter(backend, get_label_set('cityscapes'))
    cond = threading.Condition()
    settings = {'max_rate_hz': 0.0, 'max_input_pixels': 10**8}
    in_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    cameras = [CameraPipeline(node, name, f'/lanes_{name}/image_raw', 'raw',
                              {out: f'/lanes_{name}/regseg/{out}' for out in OUTPUTS},
                              in_qos, out_qos, cond, settings) for name in ('front', 'rear')]
    batch = BatchWorker(node, segmenter, cameras, cond, settings, max_batch=2)
    batch.start()
    try:
        yield batch, backend
    finally:
        backend.gate.set()
        batch.stop()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        torch.set_num_threads(threads)


def test_a_slow_frame_of_one_camera_holds_up_no_other_camera(worker):
    batch, backend = worker
    peer = RosPeer('regseg_lanes_test')
    try:
        pubs = {cam: peer.publisher(Image, f'/lanes_{cam}/image_raw') for cam in ('front', 'rear')}
        labels = {cam: peer.collect(Image, f'/lanes_{cam}/regseg/labels')
                  for cam in ('front', 'rear')}
        peer.spin_until(lambda: all(p.get_subscription_count() for p in pubs.values()), 60,
                        'the worker to subscribe')
        held = scene(120, 160, seed=3)
        held[:2, :2] = MARK
        rear = make_image(held, 'rgb8', (500, 0), 'rear')
        peer.publish_until(pubs['rear'], rear, backend.holding.is_set,
                           what='the rear frame held in the backend')
        # The rear frame is in the network and stays there: the front camera is served anyway.
        front = scene(120, 160, seed=4)
        sent = []

        def served():
            return len({stamp_of(m) for m in labels['front']} & set(sent)) >= 3
        for i in range(600):
            msg = make_image(front, 'rgb8', (501, i), 'front')
            pubs['front'].publish(msg)
            sent.append(stamp_of(msg))
            try:
                peer.spin_until(served, 0.2)
                break
            except AssertionError:
                pass
        assert served(), ('the front camera got no labels while the rear frame was held: '
                          f'{len(labels["front"])} messages')
        assert not labels['rear']
        got = [stamp_of(m) for m in labels['front']]
        assert got == sorted(got) and all(m.header.frame_id == 'front' for m in labels['front'])
        backend.gate.set()
        peer.spin_until(lambda: any(stamp_of(m) == (500, 0) for m in labels['rear']), 60,
                        'the held rear frame once released')
        assert all(m.header.frame_id == 'rear' for m in labels['rear'])
    finally:
        peer.close()
