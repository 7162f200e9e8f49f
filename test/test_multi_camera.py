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

"""multi_camera_node as a process over real rclpy/DDS: per-camera outputs, batching, drops."""

import signal
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from ros_harness import as_array, make_image, NodeProcess, RosPeer, stamp_of
from sensor_msgs.msg import CompressedImage, Image
from test_node import scene, wait_outputs, wait_status

pytestmark = pytest.mark.ros

NODE = '/multi_camera'
OUTPUTS = ('labels', 'drivable_mask', 'color', 'overlay', 'confidence')
MODEL = """/**:
  ros__parameters:
    allow_untrained: true
    network_height: 128
    network_width: 256
"""
# Two torch threads: frame by frame (exact_batch) the node runs two frames side by side with one
# thread each, and a frame's labels are those of a regseg node with cpu_threads 1.
CAMERAS = MODEL + """    max_batch: 4
    cpu_threads: 2
    cameras: [front, rear, left]
    front.topic: /mc_front/image_raw
    rear.topic: /mc_rear/image_raw
    rear.transport: compressed
    rear.namespace: vehicle/back
    left.topic: /mc_left/image_raw
"""
# camera -> (input topic, message type, output namespace)
INPUTS = {'front': ('/mc_front/image_raw', Image, '/front'),
          'rear': ('/mc_rear/image_raw/compressed', CompressedImage, '/vehicle/back'),
          'left': ('/mc_left/image_raw', Image, '/left')}


def png(array, stamp, frame_id):
    ok, buf = cv2.imencode('.png', cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format='png', data=buf.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    return msg


@pytest.fixture(scope='module')
def peer():
    p = RosPeer('regseg_multi_test')
    yield p
    p.close()


@pytest.fixture(scope='module')
def multi(tmp_path_factory, peer):
    """Start the multi-camera node (front, rear; left stays silent) and a single node."""
    tmp = tmp_path_factory.mktemp('multi')
    (tmp / 'cameras.yaml').write_text(CAMERAS)
    (tmp / 'single.yaml').write_text(MODEL + '    cpu_threads: 1\n')
    proc = NodeProcess(tmp, '--params-file', str(tmp / 'cameras.yaml'),
                       executable='multi_camera_node')
    single = NodeProcess(tmp, '--params-file', str(tmp / 'single.yaml'), '-r', '__ns:=/single',
                         '-r', 'image:=/single_cam/image_raw')
    outs = {cam: {name: peer.collect(Image, f'{ns}/regseg/{name}') for name in OUTPUTS}
            for cam, (_topic, _type, ns) in INPUTS.items()}
    outs['single'] = {'labels': peer.collect(Image, '/single/regseg/labels')}
    pubs = {cam: peer.publisher(msg_type, topic) for cam, (topic, msg_type, _ns)
            in INPUTS.items()}
    pubs['single'] = peer.publisher(Image, '/single_cam/image_raw')
    diags = peer.collect(DiagnosticArray, '/diagnostics')
    peer.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 90,
                    'both nodes to subscribe')
    yield proc, pubs, outs, diags
    single_code = single.stop()
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, proc.log()
    assert 'Traceback' not in proc.log(), proc.log()
    assert single_code == 0, single.log()


def test_each_camera_gets_its_own_outputs_with_its_header_and_size(multi, peer):
    _proc, pubs, outs, _diags = multi
    front = make_image(scene(240, 320, seed=1), 'rgb8', (100, 1), 'front_optical')
    rear = png(scene(360, 480, seed=2), (100, 2), 'rear_optical')

    def both():
        return all(any(stamp_of(m) == stamp_of(msg) for m in outs[cam][name])
                   for cam, msg in (('front', front), ('rear', rear)) for name in OUTPUTS)
    for _ in range(60):
        pubs['front'].publish(front)
        pubs['rear'].publish(rear)
        try:
            peer.spin_until(both, 1.0)
            break
        except AssertionError:
            pass
    assert both(), 'no outputs for both cameras'
    for cam, msg, size in (('front', front, (240, 320)), ('rear', rear, (360, 480))):
        for name in OUTPUTS:
            mine = [m for m in outs[cam][name] if stamp_of(m)[0] == 100]
            # never another camera's frame in a camera's outputs
            assert all(m.header.frame_id == msg.header.frame_id for m in mine), (cam, name)
            assert all(stamp_of(m) == stamp_of(msg) for m in mine), (cam, name)
            assert (mine[0].height, mine[0].width) == size
    assert not any(outs['left'][name] for name in OUTPUTS)


def test_labels_bit_equal_to_the_single_camera_node_in_a_batch(multi, peer):
    _proc, pubs, outs, diags = multi
    frames = {'front': scene(240, 320, seed=11), 'rear': scene(480, 640, seed=12)}
    single = {cam: as_array(wait_outputs(
        peer, pubs['single'], outs['single'], make_image(frame, 'rgb8', (200 + i, 0)),
        ['labels'])['labels']) for i, (cam, frame) in enumerate(frames.items())}
    # front raw, rear PNG (lossless): the same pixels the single node got
    msgs = {'front': make_image(frames['front'], 'rgb8', (210, 0), 'front'),
            'rear': png(frames['rear'], (210, 1), 'rear')}

    def answered():
        return all(any(stamp_of(m) == stamp_of(msgs[cam]) for m in outs[cam]['labels'])
                   for cam in msgs)

    def batched():
        return [s for a in diags for s in a.status if s.name.startswith(NODE) and float(
            {kv.key: kv.value for kv in s.values}.get('batch_size_mean', 0)) > 1.0]
    # Both cameras at once, again until the node has segmented them as one batch (on a busy
    # machine one camera's frame may arrive after the worker took the other's).
    deadline = time.monotonic() + 120
    while not (answered() and batched()) and time.monotonic() < deadline:
        for cam, msg in msgs.items():
            pubs[cam].publish(msg)
        try:
            peer.spin_until(lambda: answered() and batched(), 1.0)
        except AssertionError:
            pass
    assert answered(), 'no labels from the multi-camera node'
    assert batched(), 'the multi-camera node never segmented both cameras in one batch'
    for cam, msg in msgs.items():
        for got in (m for m in outs[cam]['labels'] if stamp_of(m) == stamp_of(msg)):
            assert np.array_equal(as_array(got), single[cam]), cam
    values = {kv.key: kv.value for kv in batched()[-1].values}
    assert values['backend'] == 'torch'
    # the single node's thread count: the frames of the batch ran side by side, one thread each
    assert values['threads'] == '1', values
    assert values['batch_forward'] == 'per_frame, 2 in parallel of 1 thread(s)', values


def test_a_flooded_camera_drops_its_own_frames_and_the_others_keep_up(multi, peer):
    _proc, pubs, outs, diags = multi
    big = scene(960, 1280, seed=6)
    sent = []
    rear = png(scene(240, 320, seed=7), (301, 0), 'rear_optical')
    for i in range(30):
        msg = make_image(big, 'rgb8', (300, i), 'front_optical')
        pubs['front'].publish(msg)
        sent.append(stamp_of(msg))
        peer.executor.spin_once(timeout_sec=0.005)
    peer.publish_until(pubs['rear'], rear,
                       lambda: any(stamp_of(m) == (301, 0) for m in outs['rear']['labels']),
                       what='the rear camera served during the flood')
    last = sent[-1]
    peer.spin_until(lambda: any(stamp_of(m) == last for m in outs['front']['labels']), 60,
                    'the newest frame of the burst')
    served = [stamp_of(m) for m in outs['front']['labels'] if stamp_of(m)[0] == 300]
    assert len(served) < len(sent) // 2, served
    assert served == sorted(served)

    def front_dropped(v, s):
        return s.name == f'{NODE}: front segmentation' and int(v['frames_dropped']) >= 15
    wait_status(peer, diags, front_dropped, 'front drops in diagnostics', node=NODE)
    since = len(diags)
    values, _s = wait_status(peer, diags, lambda v, s: s.name == f'{NODE}: rear segmentation',
                             'the rear status', node=NODE, since=since)
    assert int(values['frames_dropped']) < 5, values
    totals, _s = wait_status(peer, diags, lambda v, s: s.name == f'{NODE}: total',
                             'the total status', node=NODE, since=since)
    assert int(totals['frames_dropped']) >= 15 and totals['cameras'] == '3'


def test_a_silent_camera_is_reported_and_stalls_nobody(multi, peer):
    _proc, pubs, outs, diags = multi
    for i in range(3):
        wait_outputs(peer, pubs['front'], outs['front'],
                     make_image(scene(seed=20 + i), 'rgb8', (400, i)), ['labels'])
    since = len(diags)
    _v, status = wait_status(peer, diags, lambda v, s: s.name == f'{NODE}: left segmentation',
                             'the left camera status', node=NODE, since=since)
    assert status.level == status.WARN and status.message == 'no input frames yet'
    _v, total = wait_status(peer, diags, lambda v, s: s.name == f'{NODE}: total',
                            'the total status', node=NODE, since=since)
    assert 'left: no input frames yet' in total.message


@pytest.mark.parametrize('extra,expected', [
    ('', "parameter 'cameras' is empty"),
    ('    cameras: [front]\n', 'parameter front.topic is not set'),
    ('    cameras: [front]\n    front.topic: /a\n    front.transport: jpeg\n',
     "parameter front.transport is 'jpeg': set it to one of ['raw', 'compressed']"),
    ('    cameras: [a, b]\n    a.topic: /a\n    b.topic: /b\n    b.namespace: a\n',
     "cameras 'a' and 'b' both have namespace 'a'"),
])
def test_camera_configuration_errors_exit_2_naming_the_parameter(tmp_path, extra, expected):
    (tmp_path / 'p.yaml').write_text(MODEL + extra)
    proc = NodeProcess(tmp_path, '--params-file', str(tmp_path / 'p.yaml'),
                       executable='multi_camera_node')
    assert proc.wait(timeout=90) == 2, proc.log()
    fatal = [line for line in proc.log().splitlines() if 'cannot start' in line]
    assert len(fatal) == 1 and expected in fatal[0], proc.log()
