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

"""The segmentation node as a process: real rclpy over loopback DDS, driven with --ros-args."""

import signal
import time

from bombs import jpeg_bomb, png_bomb
import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from regseg_ros.core.labels import CITYSCAPES
from ros_harness import as_array, make_image, NodeProcess, RosPeer, stamp_of
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

pytestmark = pytest.mark.ros

NS = '/vehicle/front'
NODE = f'{NS}/regseg'
OUTPUTS = {'labels': 'mono8', 'drivable_mask': 'mono8', 'color': 'rgb8', 'overlay': 'rgb8',
           'confidence': 'mono8'}
PARAMS = """/**:
  ros__parameters:
    allow_untrained: true
    network_height: 128
    network_width: 256
    drivable_classes: [road, sidewalk]
    overlay_alpha: 0.5
"""


def scene(height=240, width=320, seed=0):
    """Draw a synthetic street: sky, buildings, a road, some cars and noise, RGB uint8."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:height // 3] = (70, 130, 180)
    img[height // 3:height // 2] = (90, 90, 90)
    img[height // 2:] = (128, 64, 128)
    for _ in range(4):
        x, y = rng.integers(0, width - 40), rng.integers(height // 2, height - 20)
        img[y:y + 20, x:x + 40] = rng.integers(0, 255, 3)
    noise = rng.integers(-20, 20, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def peer():
    p = RosPeer()
    yield p
    p.close()


@pytest.fixture(scope='module')
def node(tmp_path_factory, peer):
    tmp = tmp_path_factory.mktemp('node')
    (tmp / 'params.yaml').write_text(PARAMS)
    proc = NodeProcess(tmp, '--params-file', str(tmp / 'params.yaml'),
                       '-r', '__ns:=' + NS, '-r', 'image:=/cam_front/image_raw',
                       '-p', 'use_sim_time:=false')
    outs = {name: peer.collect(Image, f'{NODE}/{name}') for name in OUTPUTS}
    diags = peer.collect(DiagnosticArray, '/diagnostics')
    pub = peer.publisher(Image, '/cam_front/image_raw')
    peer.spin_until(lambda: pub.get_subscription_count() > 0, 60, 'the node to subscribe')
    yield proc, pub, outs, diags
    assert proc.stop() == 0, proc.log()


def wait_outputs(peer, pub, outs, msg, names=OUTPUTS):
    stamp = stamp_of(msg)

    def answered():
        return all(any(stamp_of(m) == stamp for m in outs[n]) for n in names)
    peer.publish_until(pub, msg, answered, what=f'outputs for stamp {stamp}')
    return {n: next(m for m in outs[n] if stamp_of(m) == stamp) for n in names}


def call(peer, srv_type, name, request):
    client = peer.node.create_client(srv_type, name)
    peer.spin_until(client.service_is_ready, 30, f'service {name}')
    future = client.call_async(request)
    peer.spin_until(future.done, 30, f'answer from {name}')
    peer.node.destroy_client(client)
    return future.result()


def set_param(peer, name, value, kind):
    field = {ParameterType.PARAMETER_STRING_ARRAY: 'string_array_value',
             ParameterType.PARAMETER_DOUBLE: 'double_value',
             ParameterType.PARAMETER_STRING: 'string_value'}[kind]
    pv = ParameterValue(type=kind, **{field: value})
    return call(peer, SetParameters, f'{NODE}/set_parameters',
                SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])).results[0]


def wait_status(peer, diags, predicate, what, node=NODE, since=0, timeout=60.0):
    """
    Spin until a diagnostics status of ``node`` received after ``since`` satisfies predicate.

    Return ``(values, status)`` of the first one that does. Diagnostics tick at 1 Hz and a WARN
    is reported for what is new since the previous tick, so the test looks at every status that
    arrives, not at whichever happens to be the latest.
    """
    found = []

    def match():
        for array in diags[since:]:
            for status in array.status:
                if not status.name.startswith(f'{node}: '):
                    continue
                values = {kv.key: kv.value for kv in status.values}
                if predicate(values, status):
                    found.append((values, status))
                    return True
        return False
    peer.spin_until(match, timeout, what)
    return found[0]


def test_outputs_carry_header_size_and_encoding(node, peer):
    _proc, pub, outs, _diags = node
    msg = make_image(scene(), 'rgb8', stamp=(1700000000, 123456789), frame_id='cam_front')
    got = wait_outputs(peer, pub, outs, msg)
    for name, encoding in OUTPUTS.items():
        out = got[name]
        assert out.header.frame_id == 'cam_front'
        assert stamp_of(out) == (1700000000, 123456789)
        assert (out.height, out.width, out.encoding) == (240, 320, encoding)
        assert out.step == 320 * (3 if encoding == 'rgb8' else 1)
        assert len(out.data) == out.step * out.height


def test_mask_colour_and_overlay_follow_the_labels(node, peer):
    _proc, pub, outs, _diags = node
    frame = scene(seed=1)
    got = wait_outputs(peer, pub, outs, make_image(frame, 'rgb8', stamp=(5, 0)))
    labels = as_array(got['labels'])
    assert labels.max() < CITYSCAPES.num_classes
    drivable = np.isin(labels, [0, 1])  # road, sidewalk from the params file
    assert np.array_equal(as_array(got['drivable_mask']), np.where(drivable, 255, 0))
    color = as_array(got['color'])
    assert np.array_equal(color, CITYSCAPES.palette()[labels])
    expected = 0.5 * frame.astype(float) + 0.5 * color
    assert np.abs(as_array(got['overlay']).astype(float) - expected).max() <= 1.0
    conf = as_array(got['confidence'])
    assert conf.min() >= 255 // CITYSCAPES.num_classes - 1  # top probability >= 1/19


def test_encodings_decode_to_the_same_labels(node, peer):
    _proc, pub, outs, _diags = node
    frame = scene(seed=2)
    ref = as_array(wait_outputs(peer, pub, outs, make_image(frame, 'rgb8', (10, 0)),
                                ['labels'])['labels'])
    variants = {
        'bgr8': frame[..., ::-1],
        'rgba8': np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)]),
        'bgra8': np.dstack([frame[..., ::-1], np.zeros(frame.shape[:2], np.uint8)]),
        'rgb16': frame.astype(np.uint16) * 257,
    }
    for i, (encoding, array) in enumerate(variants.items()):
        got = wait_outputs(peer, pub, outs, make_image(array, encoding, (11 + i, 0)), ['labels'])
        assert np.array_equal(as_array(got['labels']), ref), encoding
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    got = wait_outputs(peer, pub, outs, make_image(gray, 'mono8', (20, 0)), ['labels'])
    assert as_array(got['labels']).shape == gray.shape


def test_malformed_frames_are_rejected_and_counted_good_ones_still_served(node, peer):
    _proc, pub, outs, diags = node
    good = make_image(scene(seed=3), 'rgb8', (30, 0))
    truncated = make_image(scene(seed=3), 'rgb8', (31, 0))
    truncated.data = truncated.data[:-100]
    odd = make_image(scene(seed=3), 'rgb8', (32, 0))
    odd.encoding = '32FC1'
    short_step = make_image(scene(seed=3), 'rgb8', (33, 0))
    short_step.step = 100
    empty = make_image(scene(seed=3), 'rgb8', (34, 0))
    empty.height = empty.width = 0
    empty.data = b''
    before = len(diags)

    def rejected_at_least(n):
        return lambda: any(int(kv.value) >= n for d in diags[before:] for s in d.status
                           if s.name.startswith(f'{NODE}: ') for kv in s.values
                           if kv.key == 'frames_rejected')
    base = wait_status(peer, diags, lambda v, s: True, 'a status')[0]
    for i, bad in enumerate((truncated, odd, short_step, empty)):
        # One at a time, re-sent until counted: a frame replaced before it was processed would
        # count as dropped, not rejected.
        peer.publish_until(pub, bad, rejected_at_least(int(base['frames_rejected']) + i + 1),
                           every=2.0, what=f'bad frame {i} to be counted as rejected')
    wait_outputs(peer, pub, outs, good)
    values, status = wait_status(
        peer, diags, lambda v, s: int(v['frames_rejected']) >= 4 and s.level == s.WARN,
        'a WARN status counting the 4 rejected frames', since=before)
    assert 'rejected frame' in status.message
    for n in OUTPUTS:
        assert not any(stamp_of(m) in {(31, 0), (32, 0), (33, 0), (34, 0)} for m in outs[n])


def test_diagnostics_report_rates_latency_and_backend(node, peer):
    _proc, pub, outs, diags = node
    wait_outputs(peer, pub, outs, make_image(scene(), 'rgb8', (40, 0)))
    values, status = wait_status(peer, diags, lambda v, s: float(v['latency_ms_p50']) > 0,
                                 'diagnostics with latency')
    assert status.name == f'{NODE}: segmentation'
    assert status.hardware_id == 'torch/cpu'
    assert values['backend'] == 'torch' and values['precision'] == 'fp32'
    for key in ('input_rate_hz', 'output_rate_hz', 'latency_ms_p95', 'inference_ms_mean',
                'frames_dropped', 'frames_rejected', 'frames_processed'):
        assert key in values
    assert float(values['inference_ms_mean']) > 0
    # the network's own time, so users can tell it from the node's overhead
    assert 0 < float(values['forward_ms_mean']) <= float(values['inference_ms_mean'])


def test_runtime_parameter_changes_take_effect(node, peer):
    _proc, pub, outs, _diags = node
    result = set_param(peer, 'drivable_classes', list(CITYSCAPES.classes),
                       ParameterType.PARAMETER_STRING_ARRAY)
    assert result.successful, result.reason
    got = wait_outputs(peer, pub, outs, make_image(scene(), 'rgb8', (50, 0)), ['drivable_mask'])
    assert (as_array(got['drivable_mask']) == 255).all()

    result = set_param(peer, 'drivable_classes', ['lawn'], ParameterType.PARAMETER_STRING_ARRAY)
    assert not result.successful
    assert "'lawn' is not a class of label set 'cityscapes'" in result.reason

    result = set_param(peer, 'overlay_alpha', 0.0, ParameterType.PARAMETER_DOUBLE)
    assert result.successful
    frame = scene(seed=5)
    got = wait_outputs(peer, pub, outs, make_image(frame, 'rgb8', (51, 0)), ['overlay'])
    assert np.array_equal(as_array(got['overlay']), frame)

    result = set_param(peer, 'overlay_alpha', 1.5, ParameterType.PARAMETER_DOUBLE)
    assert not result.successful

    result = set_param(peer, 'device', 'cuda', ParameterType.PARAMETER_STRING)
    assert not result.successful and 'read-only' in result.reason

    answer = call(peer, GetParameters, f'{NODE}/get_parameters',
                  GetParameters.Request(names=['network_width', 'drivable_classes']))
    assert answer.values[0].integer_value == 256
    assert list(answer.values[1].string_array_value) == list(CITYSCAPES.classes)
    set_param(peer, 'drivable_classes', ['road', 'sidewalk'], ParameterType.PARAMETER_STRING_ARRAY)
    set_param(peer, 'overlay_alpha', 0.5, ParameterType.PARAMETER_DOUBLE)


def test_frames_faster_than_inference_are_dropped_not_queued(node, peer):
    _proc, pub, outs, diags = node
    first = make_image(scene(), 'rgb8', (60, 0))
    wait_outputs(peer, pub, outs, first, ['labels'])
    big = scene(960, 1280, seed=6)  # slower to segment than the burst below takes to send
    sent = []
    for i in range(30):
        msg = make_image(big, 'rgb8', (61, i))
        pub.publish(msg)
        sent.append(stamp_of(msg))
        peer.executor.spin_once(timeout_sec=0.005)
    last = sent[-1]
    peer.spin_until(lambda: any(stamp_of(m) == last for m in outs['labels']), 30,
                    'the newest frame of the burst')
    served = [stamp_of(m) for m in outs['labels'] if stamp_of(m)[0] == 61]
    assert len(served) < len(sent) // 2, served
    assert served == sorted(served)  # newest-first processing never goes back in time
    wait_status(peer, diags, lambda v, s: int(v['frames_dropped']) >= len(sent) // 2,
                'dropped frames in diagnostics')
    # no backlog: nothing more arrives once the newest frame has been answered
    count = len(outs['labels'])
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        peer.executor.spin_once(timeout_sec=0.1)
    assert len(outs['labels']) == count


def test_clean_exit_on_sigterm_and_unknown_parameters_warned(tmp_path, peer):
    proc = NodeProcess(tmp_path, '-p', 'allow_untrained:=true', '-p', 'network_height:=64',
                       '-p', 'network_width:=128', '-r', '__node:=regseg_term',
                       '-p', 'netwrok_width:=256')
    diags = peer.collect(DiagnosticArray, '/diagnostics')
    peer.spin_until(lambda: any(d.status[0].name.startswith('/regseg_term') for d in diags), 60,
                    'the node to come up')
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.log()
    assert "ignoring parameters this node does not have: ['netwrok_width'] (a typo?)" in proc.log()


@pytest.fixture(scope='module')
def compressed_node(tmp_path_factory, peer):
    tmp = tmp_path_factory.mktemp('compressed')
    (tmp / 'params.yaml').write_text(PARAMS)
    proc = NodeProcess(tmp, '--params-file', str(tmp / 'params.yaml'),
                       '-r', '__node:=regseg_c', '-r', 'image:=/cam_c/image_raw',
                       '-p', 'input_transport:=compressed', '-p', 'input_qos:=reliable',
                       '-p', 'use_sim_time:=true')
    outs = {'labels': peer.collect(Image, '/regseg_c/labels')}
    pub = peer.publisher(CompressedImage, '/cam_c/image_raw/compressed')
    peer.spin_until(lambda: pub.get_subscription_count() > 0, 60, 'the node to subscribe')
    yield proc, pub, outs
    assert proc.stop() == 0, proc.log()


def compressed(array, fmt, stamp):
    ext = {'jpeg': '.jpg', 'png': '.png'}[fmt]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt, data=buf.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = 'cam_c'
    return msg


def test_compressed_input_jpeg_png_and_corrupt(compressed_node, peer):
    proc, pub, outs = compressed_node
    frame = scene(seed=7)
    for i, fmt in enumerate(('jpeg', 'png')):
        got = wait_outputs(peer, pub, outs, compressed(frame, fmt, (70 + i, 0)), ['labels'])
        assert (got['labels'].height, got['labels'].width) == frame.shape[:2]
        assert got['labels'].header.frame_id == 'cam_c'
    corrupt = compressed(frame, 'jpeg', (72, 0))
    corrupt.data = corrupt.data[:200]
    peer.publish_until(pub, corrupt, lambda: 'cannot decode compressed image' in proc.log(),
                       what='the corrupt frame to be rejected in the log')
    assert 'rejected frame' in proc.log()
    wait_outputs(peer, pub, outs, compressed(frame, 'jpeg', (73, 0)), ['labels'])
    assert not any(stamp_of(m) == (72, 0) for m in outs['labels'])


def test_sim_time_stamps_diagnostics_with_the_bag_clock(compressed_node, peer):
    _proc, pub, outs = compressed_node
    clock_pub = peer.publisher(Clock, '/clock')
    diags = peer.collect(DiagnosticArray, '/diagnostics')

    def sim_stamped():
        return any(d.status[0].name.startswith('/regseg_c') and 4000 <= d.header.stamp.sec < 4100
                   for d in diags)
    clock = Clock()
    clock.clock.sec = 4000
    deadline = time.monotonic() + 30
    while not sim_stamped() and time.monotonic() < deadline:
        clock.clock.sec += 1
        clock_pub.publish(clock)
        for _ in range(5):
            peer.executor.spin_once(timeout_sec=0.1)
    assert sim_stamped(), 'no diagnostics stamped with the simulated clock'
    got = wait_outputs(peer, pub, outs, compressed(scene(), 'jpeg', (4001, 5)), ['labels'])
    assert stamp_of(got['labels']) == (4001, 5)


@pytest.mark.parametrize('args,expected', [
    ([], 'weights is empty: pass a checkpoint path'),
    (['-p', 'weights:=/nonexistent/regseg.pth'],
     "weights file '/nonexistent/regseg.pth' does not exist"),
    (['-p', 'allow_untrained:=true', '-p', 'device:=cuda'],
     "device 'cuda' asked for, but CUDA is not available"),
    (['-p', 'allow_untrained:=true', '-p', 'model:=exp99'],
     "parameter 'model' is 'exp99': set it to one of ['exp48_decoder26', 'exp53_decoder29']"),
    (['-p', 'allow_untrained:=true', '-p', 'precision:=fp16'],
     "precision 'fp16' needs a CUDA device"),
    (['-p', 'allow_untrained:=true', '-p', 'max_rate_hz:=15'],
     "parameter 'max_rate_hz' to '15' of type 'INTEGER', expecting type 'DOUBLE'"),
    (['-p', 'allow_untrained:=true', '-p', 'overlay_alpha:=2.0'],
     'overlay_alpha'),
    (['-p', 'allow_untrained:=true', '-p', 'network_height:=12.5'],
     "expecting type 'INTEGER': network_height: fix the value in the params file or the -p "
     'override (integer parameters take a whole number without a decimal point, e.g. 512)'),
    (['-p', 'allow_untrained:=true', '-p', 'network_height:=8'],
     'network_height'),
    (['-p', 'allow_untrained:=true', '-r', 'image:=bad topic!'],
     "Couldn't parse remap rule: '-r image:=bad topic!'"),
    (['--params-file', '{tmp}/no_ros_parameters.yaml'],
     "Couldn't parse params file"),
])
def test_startup_errors_exit_2_with_one_line_naming_the_fix(tmp_path, args, expected):
    pytest.importorskip('torch')
    import torch
    if 'device:=cuda' in args and torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    (tmp_path / 'no_ros_parameters.yaml').write_text('regseg:\n  allow_untrained: true\n')
    proc = NodeProcess(tmp_path, *(a.format(tmp=tmp_path) for a in args))
    assert proc.wait(timeout=60) == 2, proc.log()
    log = proc.log()
    assert 'Traceback' not in log, log
    fatal = [line for line in log.splitlines() if 'cannot start' in line]
    assert len(fatal) == 1 and expected in fatal[0], log
    assert '[FATAL]' in fatal[0]
    if 'network_height:=8' in args:  # a range error says so, not the decimal-point hint
        assert 'decimal point' not in fatal[0] and 'range' in fatal[0], fatal[0]


def test_fatal_line_names_the_node_as_launched(tmp_path):
    proc = NodeProcess(tmp_path, '-r', '__ns:=/front', '-r', '__node:=seg',
                       '-p', 'weights:=/nonexistent/regseg.pth')
    assert proc.wait(timeout=60) == 2, proc.log()
    assert "[front.seg]: cannot start: weights file '/nonexistent/regseg.pth'" in proc.log()


def test_help_lists_the_parameters_and_exits_0(tmp_path):
    import subprocess
    from regseg_ros.tools.demo import node_command
    out = subprocess.run(node_command('segmentation_node') + ['--help'], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('usage: ros2 run regseg_ros segmentation_node')
    for name in ('weights', 'max_input_pixels', 'network_width', 'drivable_classes'):
        assert f' {name} ' in out.stdout, name


def test_double_ctrl_c_during_inference_exits_0_without_a_traceback(tmp_path, peer):
    # A network big enough that a frame is almost always in inference when SIGINT comes.
    proc = NodeProcess(tmp_path, '-p', 'allow_untrained:=true', '-p', 'network_height:=512',
                       '-p', 'network_width:=1024', '-r', '__node:=regseg_int',
                       '-r', 'image:=/cam_int/image_raw', '-p', 'input_qos:=reliable')
    labels = peer.collect(Image, '/regseg_int/labels')
    pub = peer.publisher(Image, '/cam_int/image_raw')
    peer.spin_until(lambda: pub.get_subscription_count() > 0, 60, 'the node to subscribe')
    frame = scene(256, 512)
    peer.publish_until(pub, make_image(frame, 'rgb8', (90, 0)), lambda: labels,
                       what='a first output')
    # Keep frames coming, so the worker starts the next inference as soon as one ends.
    for i in range(3):
        pub.publish(make_image(frame, 'rgb8', (91, i)))
        peer.executor.spin_once(timeout_sec=0.05)
    # ros2 launch and the terminal each send SIGINT on Ctrl-C: two, close together.
    proc.signal(signal.SIGINT)
    time.sleep(0.05)
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, proc.log()
    log = proc.log()
    assert 'Traceback' not in log and 'Exception in thread' not in log, log
    assert 'terminate called' not in log, log


def _proc_status(pid, key):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024
    raise AssertionError(f'{key} not in /proc/{pid}/status')


def test_decompression_bombs_are_refused_before_decoding_memory_stays_flat(tmp_path, peer):
    import resource
    proc = NodeProcess(tmp_path, '-p', 'allow_untrained:=true', '-p', 'network_height:=128',
                       '-p', 'network_width:=256', '-r', '__node:=regseg_bomb',
                       '-r', 'image:=/cam_bomb/image_raw', '-p', 'input_transport:=compressed',
                       '-p', 'input_qos:=reliable')
    try:
        labels = peer.collect(Image, '/regseg_bomb/labels')
        diags = peer.collect(DiagnosticArray, '/diagnostics')
        pub = peer.publisher(CompressedImage, '/cam_bomb/image_raw/compressed')
        peer.spin_until(lambda: pub.get_subscription_count() > 0, 60, 'the node to subscribe')
        peer.publish_until(pub, compressed(scene(), 'jpeg', (100, 0)), lambda: labels,
                           what='a normal frame to be segmented')
        pid = proc.proc.pid
        # A regression must not take the machine down: cap the node's address space at what it
        # has now plus 1 GiB (a 30000x30000 decode needs 2.7 GB).
        cap = _proc_status(pid, 'VmSize') + 2**30
        resource.prlimit(pid, resource.RLIMIT_AS, (cap, cap))
        peak = _proc_status(pid, 'VmHWM')
        bombs = [CompressedImage(format='jpeg', data=jpeg_bomb()),
                 CompressedImage(format='png', data=png_bomb())]
        for i, bomb in enumerate(bombs):
            bomb.header.stamp.sec = 101 + i
            peer.publish_until(pub, bomb, lambda: proc.log().count('exceeds max_input_pixels')
                               > i, what=f'bomb {i} to be refused')
        assert ("compressed image ('jpeg') of 30000x30000 = 900.0 MP exceeds max_input_pixels"
                ' = 64000000 (64.0 MP): refused before decoding') in proc.log()
        assert 'rejected frame' in proc.log()
        assert _proc_status(pid, 'VmHWM') - peak < 100 * 2**20
        # Diagnostics say why no frames are coming out: the last one was rejected.
        wait_status(peer, diags, lambda v, s: 'the last one was rejected frame' in s.message
                    and 'max_input_pixels' in s.message, 'diagnostics naming the rejection',
                    node='/regseg_bomb')
        peer.publish_until(pub, compressed(scene(), 'png', (110, 0)),
                           lambda: any(stamp_of(m) == (110, 0) for m in labels),
                           what='a good frame after the bombs')
    finally:
        assert proc.stop() == 0, proc.log()


def test_freespace_inside_the_node_publishes_grid_and_scan_in_base_link(tmp_path, peer):
    """freespace.enabled: the one-camera grid and scan come from the node's own labels."""
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import CameraInfo, LaserScan
    proc = NodeProcess(tmp_path, '-p', 'allow_untrained:=true', '-p', 'network_height:=64',
                       '-p', 'network_width:=128', '-r', '__node:=regseg_fs',
                       '-r', 'image:=/cam_fs/image_raw', '-p', 'freespace.enabled:=true',
                       '-p', 'freespace.pose:=[1.8, 0.0, 1.5, 0.0, 0.17, 0.0]',
                       '-p', 'freespace.grid_forward:=20.0', '-p', 'freespace.grid_back:=5.0',
                       '-p', 'freespace.grid_left:=10.0', '-p', 'freespace.grid_right:=10.0',
                       '-p', 'freespace.grid_resolution:=0.25')
    grids = peer.collect(OccupancyGrid, '/regseg_fs/freespace_grid')
    scans = peer.collect(LaserScan, '/regseg_fs/freespace_scan')
    info_pub = peer.publisher(CameraInfo, '/cam_fs/camera_info')
    pub = peer.publisher(Image, '/cam_fs/image_raw')
    peer.spin_until(lambda: pub.get_subscription_count() > 0 and
                    info_pub.get_subscription_count() > 0, 60, 'the node to subscribe')
    info = CameraInfo(width=320, height=240, distortion_model='plumb_bob',
                      d=[0.0] * 5, k=[200.0, 0.0, 160.0, 0.0, 200.0, 120.0, 0.0, 0.0, 1.0])
    info.header.frame_id = 'cam_fs_optical'
    msg = make_image(scene(), 'rgb8', stamp=(42, 7), frame_id='cam_fs_optical')

    def arrived():
        info_pub.publish(info)
        return any(stamp_of(g) == (42, 7) for g in grids) and any(
            stamp_of(s) == (42, 7) for s in scans)
    peer.publish_until(pub, msg, arrived, what='a freespace grid and scan for stamp 42.7')
    grid = next(g for g in grids if stamp_of(g) == (42, 7))
    assert grid.header.frame_id == 'base_link'
    # OccupancyGrid width runs along base_link x: 25 m (forward + back) by 20 m at 0.25 m
    assert (grid.info.width, grid.info.height) == (100, 80)
    assert grid.info.resolution == pytest.approx(0.25)
    assert (grid.info.origin.position.x, grid.info.origin.position.y) == (-5.0, -10.0)
    cells = np.array(grid.data, np.int8)
    assert set(np.unique(cells)) <= {-1, 0, 100}
    assert (cells != -1).any(), 'the camera sees part of the grid'
    scan = next(s for s in scans if stamp_of(s) == (42, 7))
    assert scan.header.frame_id == 'base_link' and len(scan.ranges) > 0
    assert proc.stop() == 0, proc.log()
