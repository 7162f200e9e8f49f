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
The node serves a checkpoint written by ``train`` over DDS, with the checkpoint's classes.

Class count, colours (~/color) and the drivable_classes default (~/drivable_mask) come from the
label set inside the checkpoint when the ``label_set`` parameter is left empty
(``label_set_for`` in regseg_ros/ros/params.py).
"""

import cv2
import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters
from ros_harness import as_array, make_image, NodeProcess, RosPeer, stamp_of
from sensor_msgs.msg import Image
import train_data

pytestmark = pytest.mark.ros

NODE = '/shapes/regseg'
OUTPUTS = ('labels', 'drivable_mask', 'color')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    from regseg_ros.tools import train as train_tool
    root = train_data.write_dataset(tmp_path_factory.mktemp('shapes'))
    out = tmp_path_factory.mktemp('run') / 'out'
    assert train_tool.main([
        str(root), '--output', str(out), '--weights', '', '--crop-size', '64x64',
        '--scale-min', '72', '--scale-max', '120', '--warmup-iterations', '5',
        '--workers', '0', '--no-progress', '--iterations', '24', '--eval-every', '1000']) == 0
    return root, out / 'best.pth'


@pytest.fixture(scope='module')
def served(checkpoint, tmp_path_factory):
    root, weights = checkpoint
    peer = RosPeer('regseg_train_test')
    proc = NodeProcess(tmp_path_factory.mktemp('node'), '-r', '__ns:=/shapes',
                       '-r', 'image:=/shapes/image_raw', '-p', f'weights:={weights}',
                       '-p', 'network_width:=128', '-p', 'network_height:=96')
    outs = {name: peer.collect(Image, f'{NODE}/{name}') for name in OUTPUTS}
    pub = peer.publisher(Image, '/shapes/image_raw')
    try:
        peer.spin_until(lambda: pub.get_subscription_count() > 0 or proc.proc.poll() is not None,
                        120, 'the node to subscribe')
        assert proc.proc.poll() is None, proc.log()
        yield root, peer, proc, pub, outs
    finally:
        code = proc.stop()
        peer.close()
    assert code == 0, proc.log()


def test_node_serves_the_checkpoint_with_its_label_set(served):
    root, peer, proc, pub, outs = served
    names = ', '.join(name for name, _c, _d in train_data.CLASSES)
    said = f'from the checkpoint: 4 classes ({names}), drivable by default: background'
    assert said in proc.log(), proc.log()   # the node says which classes it took
    image = cv2.imread(str(root / 'images' / 'val' / 'shape_0001.png'))[..., ::-1]
    truth = cv2.imread(str(root / 'labels' / 'val' / 'shape_0001.png'), 0)
    msg = make_image(np.ascontiguousarray(image), 'rgb8', stamp=(7, 0), frame_id='cam')

    def answered():
        return all(any(stamp_of(m) == (7, 0) for m in outs[n]) for n in OUTPUTS)
    peer.publish_until(pub, msg, answered, timeout=120, what='outputs of the shapes frame')
    got = {n: as_array(next(m for m in outs[n] if stamp_of(m) == (7, 0))) for n in OUTPUTS}
    labels = got['labels']
    assert labels.max() < 4  # the checkpoint's 4 classes, not Cityscapes' 19
    palette = np.zeros((256, 3), np.uint8)
    palette[:4] = [c for _n, c, _d in train_data.CLASSES]
    assert np.array_equal(got['color'], palette[labels])  # the checkpoint's colours
    assert np.array_equal(got['drivable_mask'], np.where(labels == 0, 255, 0))  # background
    known = truth != 255
    assert (labels[known] == truth[known]).mean() > 0.8  # it serves the fine-tuned weights

    client = peer.node.create_client(GetParameters, f'{NODE}/get_parameters')
    peer.spin_until(client.service_is_ready, 30, 'get_parameters')
    future = client.call_async(GetParameters.Request(names=['drivable_classes']))
    peer.spin_until(future.done, 30, 'the drivable_classes parameter')
    assert list(future.result().values[0].string_array_value) == ['background']
