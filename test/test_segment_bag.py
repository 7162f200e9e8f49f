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

"""segment_bag end to end: bags written here, segmented in-process, read back with rosbags."""

import os
from pathlib import Path
import re
import subprocess
import sys

from bag_mcap import check_crcs, chunk_spans, official_messages, official_summary
from bombs import jpeg_bomb, png_bomb
import cv2
import numpy as np
import pytest
from regseg_ros.bag_io import BagWriter
from regseg_ros.core import imaging
from regseg_ros.tools.segment_bag import (
    BagSegmenter, build_segmenter, DEFAULT_QOS, main, make_parser, output_base)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.metadata import dump_qos_v8, parse_qos
from rosbags.typesys import get_typestore, Stores

STORE = get_typestore(Stores.ROS2_HUMBLE)
Header = STORE.types['std_msgs/msg/Header']
Time = STORE.types['builtin_interfaces/msg/Time']
Image = STORE.types['sensor_msgs/msg/Image']
CompressedImage = STORE.types['sensor_msgs/msg/CompressedImage']
String = STORE.types['std_msgs/msg/String']

H, W = 48, 80
RAW, JPEG, OTHER = '/front/image_raw', '/side/image_raw/compressed', '/chatter'
FRAMES = 4
CORRUPT = 2        # index of the JPEG frame replaced by garbage
TRUNCATED = 3      # index of the raw frame whose serialised message is cut short
NET = ['--allow-untrained', '--network-size', '64x32', '--no-progress']  # WxH


def frame(i):
    """Return a deterministic RGB test frame."""
    rng = np.random.default_rng(i)
    img = np.zeros((H, W, 3), np.uint8)
    img[:H // 2] = (70, 130, 180)
    img[H // 2:] = (128, 64, 128)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


def stamp_ns(i, topic):
    """Return the bag timestamp of frame ``i`` on ``topic`` (the topics interleave)."""
    return 1_700_000_000_000_000_000 + i * 100_000_000 + (0 if topic == RAW else 50_000_000)


def seconds(ns):
    """Format nanoseconds as the tool does: seconds with nine decimals."""
    return f'{ns // 10**9}.{ns % 10**9:09d}'


def header(i, frame_id):
    ns = 1_600_000_000_000_000_000 + i * 33_000_000
    return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame_id)


def make_bag(path, storage):
    """Write FRAMES raw rgb8 frames, FRAMES JPEG frames (one corrupt) and a String topic."""
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        raw = writer.add_connection(RAW, Image.__msgtype__, typestore=STORE)
        jpg = writer.add_connection(JPEG, CompressedImage.__msgtype__, typestore=STORE)
        txt = writer.add_connection(OTHER, String.__msgtype__, typestore=STORE)
        for i in range(FRAMES):
            img = frame(i)
            msg = Image(header=header(i, 'front_cam'), height=H, width=W, encoding='rgb8',
                        is_bigendian=0, step=W * 3, data=img.reshape(-1))
            data = bytes(STORE.serialize_cdr(msg, Image.__msgtype__))
            if i == TRUNCATED:
                data = data[:len(data) // 2]
            writer.write(raw, stamp_ns(i, RAW), data)
            ok, enc = cv2.imencode('.jpg', img[..., ::-1])
            payload = np.frombuffer(b'\xff\xd8 this is not a JPEG', np.uint8) \
                if i == CORRUPT else enc.reshape(-1)
            msg = CompressedImage(header=header(i, 'side_cam'), format='jpeg', data=payload)
            writer.write(jpg, stamp_ns(i, JPEG), bytes(STORE.serialize_cdr(
                msg, CompressedImage.__msgtype__)))
            writer.write(txt, stamp_ns(i, RAW) + 1, bytes(STORE.serialize_cdr(
                String(data=f'hello {i}'), String.__msgtype__)))


def read_bag(path):
    """Return {topic: [(timestamp, msgtype, raw bytes)]} and the storage of a bag."""
    out = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, conn.msgtype, bytes(raw)))
        assert reader.message_count == sum(len(v) for v in out.values())
    return out


def test_output_topic_names():
    assert output_base('/cam/image_raw/compressed', 'sensor_msgs/msg/CompressedImage') == \
        '/cam/image_raw'
    assert output_base('/cam/image_raw', 'sensor_msgs/msg/Image') == '/cam/image_raw'
    assert output_base('/compressed', 'sensor_msgs/msg/CompressedImage') == '/compressed'


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_is_segmented_and_originals_kept(storage, tmp_path, capsys):
    src, dst = tmp_path / 'in', tmp_path / 'out'
    make_bag(src, storage)
    assert main([str(src), str(dst), '--overlay', '--batch', '2'] + NET) == 0
    out, err = capsys.readouterr()
    assert (f'skipping frame on {JPEG} at bag time '
            f'{seconds(stamp_ns(CORRUPT, JPEG))} s: compressed image of 21 bytes with format '
            "'jpeg' has no JPEG or PNG header") in err
    assert (f'skipping frame on {RAW} at bag time '
            f'{seconds(stamp_ns(TRUNCATED, RAW))} s: cannot deserialise') in err

    assert (dst / 'metadata.yaml').exists()
    suffix = '.mcap' if storage == 'mcap' else '.db3'
    assert list(dst.glob('*' + suffix))
    before, after = read_bag(src), read_bag(dst)
    # every original message, byte for byte, with its timestamp
    for topic, msgs in before.items():
        assert after[topic] == msgs
    raw_ok = [i for i in range(FRAMES) if i != TRUNCATED]
    jpg_ok = [i for i in range(FRAMES) if i != CORRUPT]
    expected = {
        '/front/image_raw/labels': (raw_ok, RAW, 'front_cam', 'mono8'),
        '/front/image_raw/drivable_mask': (raw_ok, RAW, 'front_cam', 'mono8'),
        '/front/image_raw/overlay': (raw_ok, RAW, 'front_cam', 'rgb8'),
        '/side/image_raw/labels': (jpg_ok, JPEG, 'side_cam', 'mono8'),
        '/side/image_raw/drivable_mask': (jpg_ok, JPEG, 'side_cam', 'mono8'),
        '/side/image_raw/overlay': (jpg_ok, JPEG, 'side_cam', 'rgb8'),
    }
    assert set(after) == set(before) | set(expected)
    for topic, (indices, source, frame_id, encoding) in expected.items():
        msgs = after[topic]
        assert [t for t, _, _ in msgs] == [stamp_ns(i, source) for i in indices], topic
        for (_, msgtype, raw), i in zip(msgs, indices):
            assert msgtype == 'sensor_msgs/msg/Image'
            msg = STORE.deserialize_cdr(raw, msgtype)
            assert msg.header.frame_id == frame_id
            want = header(i, frame_id).stamp
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (want.sec, want.nanosec)
            assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
            channels = 3 if encoding == 'rgb8' else 1
            assert msg.step == W * channels and msg.data.size == H * W * channels
            if topic.endswith('/labels'):
                assert msg.data.max() < 19
            elif topic.endswith('/drivable_mask'):
                assert set(np.unique(msg.data)) <= {0, 255}

    assert 'segmented 6 frames on 2 topic(s)' in out
    assert f'skipped 2 frame(s) that could not be decoded ({RAW}: 1, {JPEG}: 1)' in out


def test_outputs_equal_the_segmenters(tmp_path):
    """The bag tool's labels, mask and overlay are what Segmenter.segment gives the node."""
    src = tmp_path / 'in'
    make_bag(src, 'mcap')
    args = make_parser().parse_args(['in', 'out', '--allow-untrained'])
    seg = build_segmenter(args, 'cityscapes', (32, 64), ['road', 'sidewalk'], log=lambda m: None)
    seg.set_overlay_alpha(0.3)
    job = BagSegmenter(src, tmp_path / 'out', topics=[RAW], overlay=True)
    summary = job.run(seg, batch=3, progress=False)
    assert summary.frames == {RAW: FRAMES - 1} and summary.skipped == {RAW: 1}
    after = read_bag(tmp_path / 'out')
    for k, i in enumerate(i for i in range(FRAMES) if i != TRUNCATED):
        want = seg.segment([frame(i)])[0]
        for name in ('labels', 'drivable_mask', 'overlay'):
            _, msgtype, raw = after[f'/front/image_raw/{name}'][k]
            got = STORE.deserialize_cdr(raw, msgtype).data.reshape(want[name].shape)
            np.testing.assert_array_equal(got, want[name], err_msg=f'{name} of frame {i}')


def test_topics_storage_and_overwrite(tmp_path, capsys):
    src, dst = tmp_path / 'in', tmp_path / 'out'
    make_bag(src, 'sqlite3')
    args = [str(src), str(dst), '--topics', JPEG, '--storage', 'mcap'] + NET
    assert main(args) == 0
    topics = read_bag(dst)
    assert list(dst.glob('*.mcap'))
    assert '/front/image_raw/labels' not in topics
    assert len(topics['/side/image_raw/labels']) == FRAMES - 1
    assert len(topics[RAW]) == FRAMES  # not segmented, still copied
    capsys.readouterr()

    # OUT exists: refused without --overwrite, and nothing is touched
    stamp = (dst / 'metadata.yaml').stat().st_mtime_ns
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"output '{dst}' exists already: pass --overwrite to replace it" in err
    assert (dst / 'metadata.yaml').stat().st_mtime_ns == stamp
    assert main(args + ['--overwrite']) == 0
    assert len(read_bag(dst)['/side/image_raw/labels']) == FRAMES - 1

    # --overwrite deletes only a folder of bag files
    other = tmp_path / 'notes'
    other.mkdir()
    (other / 'thesis.tex').write_text('keep me')
    assert main([str(src), str(other), '--overwrite'] + NET) == 1
    assert '--overwrite refuses to delete' in capsys.readouterr().err
    assert (other / 'thesis.tex').exists()


def test_single_mcap_file_input(tmp_path):
    src = tmp_path / 'in'
    make_bag(src, 'mcap')
    assert main([str(src / 'in.mcap'), str(tmp_path / 'out'), '--topics', RAW] + NET) == 0
    topics = read_bag(tmp_path / 'out')
    assert list((tmp_path / 'out').glob('*.mcap'))
    assert len(topics['/front/image_raw/labels']) == FRAMES - 1


def test_jpeg_half_size_decode_keeps_outputs_at_frame_size(tmp_path):
    # 96x160 JPEG frames and a 32x64 network (at most half): the half-size decode path runs
    src = tmp_path / 'big'
    with Writer(src, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(JPEG, CompressedImage.__msgtype__, typestore=STORE)
        for i in range(2):
            big = cv2.resize(frame(i), (160, 96))
            ok, enc = cv2.imencode('.jpg', big[..., ::-1])
            msg = CompressedImage(header=header(i, 'side_cam'), format='jpeg',
                                  data=enc.reshape(-1))
            writer.write(conn, stamp_ns(i, JPEG),
                         bytes(STORE.serialize_cdr(msg, CompressedImage.__msgtype__)))
    assert main([str(src), str(tmp_path / 'out')] + NET) == 0
    after = read_bag(tmp_path / 'out')
    labels = after['/side/image_raw/labels']
    masks = after['/side/image_raw/drivable_mask']
    assert len(labels) == len(masks) == 2
    for (_, msgtype, raw_labels), (_, _, raw_mask) in zip(labels, masks):
        lab = STORE.deserialize_cdr(raw_labels, msgtype)
        mask = STORE.deserialize_cdr(raw_mask, msgtype)
        assert (lab.height, lab.width) == (96, 160) and (mask.height, mask.width) == (96, 160)
        assert np.array_equal(mask.data, np.where(lab.data == 0, 255, 0))  # road only


@pytest.mark.parametrize('args,code,message', [
    (['{tmp}/missing', '{tmp}/out'], 1, "input bag '{tmp}/missing' does not exist"),
    (['{src}', '{tmp}/out', '--topics', '/nope'], 1, "topic '/nope' is not in"),
    (['{src}', '{tmp}/out', '--topics', OTHER], 1, "carries ['std_msgs/msg/String'], not"),
    (['{src}', '{tmp}/out', '--network-size', 'big'], 2, "'big' is not WIDTHxHEIGHT"),
    (['{src}', '{tmp}/out', '--drivable-classes', 'road,lava'], 1, "'lava' is not a class"),
    (['{src}', '{tmp}/out', '--batch', '0'], 2, '--batch 0 must be at least 1'),
    (['{src}', '{src}'], 1, 'overlaps the input bag'),
    (['{src}/metadata.yaml', '{tmp}/out'], 1, "cannot read input bag '{src}/metadata.yaml'"),
])
def test_errors_exit_with_a_message(tmp_path, capsys, args, code, message):
    """Usage errors exit 2, runtime errors 1; neither leaves OUT or a temporary output."""
    src = tmp_path / 'in'
    make_bag(src, 'mcap')
    fill = {'tmp': tmp_path, 'src': src}
    argv = [a.format(**fill) for a in args] + NET
    assert main(argv) == code
    assert message.format(**fill) in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
    assert not list(tmp_path.glob('out.partial-*'))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_full_disk_is_an_error_and_leaves_no_output(storage, tmp_path, capsys):
    # A file size limit makes the kernel refuse writes past it (EFBIG), as a full disk would;
    # Python ignores the SIGXFSZ that comes with it.
    resource = pytest.importorskip('resource')
    src, dst = tmp_path / 'in', tmp_path / 'out'
    make_bag(src, storage)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, limits[1]))
    try:
        code = main([str(src), str(dst)] + NET)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert code == 1
    err = capsys.readouterr().err
    assert f"segment_bag: error: cannot write '{dst}'" in err
    assert 'Traceback' not in err
    assert not dst.exists()


def test_benchmark_script_prints_both_figures(tmp_path):
    # scripts/bench_segment_bag.py is how the README's throughput figures are made.
    script = Path(__file__).resolve().parent.parent / 'scripts' / 'bench_segment_bag.py'
    out = subprocess.run(
        [sys.executable, str(script), '--frames', '2', '--size', '128x64', '--network-size',
         '64x32', '--format', 'raw', 'jpeg', '--repeat', '2', '--allow-untrained'],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for fmt in ('raw ', 'jpeg'):
        runs = [line for line in out.stdout.splitlines() if line.startswith(f'{fmt} run ')]
        assert len(runs) == 2 and all('segment_bag' in line and 'CPU ms/frame' in line
                                      for line in runs)
        assert any(line.startswith(f'{fmt} (') and 'per-run ratios' in line and 'median' in line
                   for line in out.stdout.splitlines())


# -- issue #13/#14: what OUT keeps of IN ------------------------------------------------------

# sensor_msgs/msg/Image as rosbag2 stores it: the .msg text with its comments, then each type it
# uses. segment_bag must copy this text as it is, not regenerate it from a type store.
IMAGE_SCHEMA = '\n'.join([
    '# An uncompressed image; (0, 0) is the top-left corner.',
    '',
    'std_msgs/Header header # acquisition time and camera frame',
    '',
    'uint32 height                # rows',
    'uint32 width                 # columns',
    '',
    '# Pixel layout, channel order and size; see sensor_msgs/image_encodings.hpp.',
    'string encoding',
    '',
    'uint8 is_bigendian    # whether the data is big-endian',
    'uint32 step           # row length in bytes',
    'uint8[] data          # step * rows bytes',
    '',
    '=' * 80,
    'MSG: std_msgs/Header',
    '# Timestamp and frame of data in a particular coordinate frame.',
    'builtin_interfaces/Time stamp',
    '# The frame the data is associated with.',
    'string frame_id',
    '',
    '=' * 80,
    'MSG: builtin_interfaces/Time',
    '# Time since the epoch.',
    'int32 sec',
    '# Nanoseconds, [0, 1e9).',
    'uint32 nanosec',
    ''])
CAMERA_QOS = [{'history': 1, 'depth': 5, 'reliability': 2, 'durability': 2,
               'deadline': {'sec': 0, 'nsec': 0}, 'lifespan': {'sec': 0, 'nsec': 0},
               'liveliness': 1, 'liveliness_lease_duration': {'sec': 0, 'nsec': 0},
               'avoid_ros_namespace_conventions': False}]


def make_rosbag2_mcap(path):
    """
    Write a bare .mcap as rosbag2 (Jazzy) does, with the official writer.

    Returns the messages [(topic, log, publish, sequence, data)]. The raw camera has QoS and
    a type hash in its channel metadata, the compressed one neither.
    """
    from mcap.writer import Writer as McapWriter
    image_hash = STORE.hash_rihs01(Image.__msgtype__)
    msgs = []
    with open(path, 'wb') as f:
        writer = McapWriter(f)
        writer.start(profile='ros2', library='mcap-cpp-test')
        raw_schema = writer.register_schema(Image.__msgtype__, 'ros2msg', IMAGE_SCHEMA.encode())
        jpg_def, _ = STORE.generate_msgdef(CompressedImage.__msgtype__, ros_version=2)
        jpg_schema = writer.register_schema(CompressedImage.__msgtype__, 'ros2msg',
                                            jpg_def.encode())
        raw = writer.register_channel(RAW, 'cdr', raw_schema, metadata={
            'offered_qos_profiles': dump_qos_v8(parse_qos(CAMERA_QOS)),
            'topic_type_hash': image_hash})
        jpg = writer.register_channel(JPEG, 'cdr', jpg_schema, metadata={})
        for i in range(3):
            img = frame(i)
            data = bytes(STORE.serialize_cdr(Image(
                header=header(i, 'front_cam'), height=H, width=W, encoding='rgb8',
                is_bigendian=0, step=W * 3, data=img.reshape(-1)), Image.__msgtype__))
            t = stamp_ns(i, RAW)
            writer.add_message(raw, log_time=t, data=data, publish_time=t - 5000 - i,
                               sequence=100 + 7 * i)
            msgs.append((RAW, t, t - 5000 - i, 100 + 7 * i, data))
            ok, enc = cv2.imencode('.jpg', img[..., ::-1])
            data = bytes(STORE.serialize_cdr(CompressedImage(
                header=header(i, 'side_cam'), format='jpeg', data=enc.reshape(-1)),
                CompressedImage.__msgtype__))
            t = stamp_ns(i, JPEG)
            writer.add_message(jpg, log_time=t, data=data, publish_time=t - 1, sequence=0)
            msgs.append((JPEG, t, t - 1, 0, data))
        writer.add_metadata('rosbag2', {
            'serialized_metadata': 'version: 9\nros_distro: jazzy\nstorage_identifier: mcap\n'})
        writer.finish()
    return msgs


def test_bare_mcap_keeps_schema_times_sequence_distro_qos_and_type_hash(tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_DISTRO', 'humble')  # the input's own distribution wins
    src, dst = tmp_path / 'in.mcap', tmp_path / 'out'
    msgs = make_rosbag2_mcap(src)
    assert main([str(src), str(dst)] + NET) == 0
    out_file = dst / 'out.mcap'
    assert sorted(p.name for p in dst.iterdir()) == ['metadata.yaml', 'out.mcap']
    assert not list(tmp_path.glob('out.partial-*'))
    check_crcs(out_file)
    got = official_messages(out_file)
    # copied messages: log time, publish time, sequence and bytes exactly as recorded
    assert [m for m in got if m[0] in (RAW, JPEG)] == sorted(msgs, key=lambda m: m[1])
    # the tool's own messages: sequence 1, 2, ... per channel, publish time = log time
    for base, source in (('/front/image_raw', RAW), ('/side/image_raw', JPEG)):
        for name in ('labels', 'drivable_mask'):
            mine = [m for m in got if m[0] == f'{base}/{name}']
            assert [m[3] for m in mine] == [1, 2, 3], name
            assert [m[1] for m in mine] == [m[2] for m in mine] == [
                stamp_ns(i, source) for i in range(3)]
    head, summary, metadata = official_summary(out_file)
    assert head.profile == 'ros2'
    schemas = {s.name: s for s in summary.schemas.values()}
    assert schemas[Image.__msgtype__].data == IMAGE_SCHEMA.encode()  # the input's text
    channels = {c.topic: c for c in summary.channels.values()}
    image_hash = STORE.hash_rihs01(Image.__msgtype__)
    assert image_hash.startswith('RIHS01_')
    for topic in (RAW, '/front/image_raw/labels', '/side/image_raw/drivable_mask'):
        assert channels[topic].metadata['topic_type_hash'] == image_hash, topic
    assert channels[JPEG].metadata['topic_type_hash'] == STORE.hash_rihs01(
        CompressedImage.__msgtype__)
    # new topics: the camera's offered QoS, or rclcpp's default where the camera has none
    assert parse_qos(channels['/front/image_raw/labels'].metadata['offered_qos_profiles']) == \
        parse_qos(CAMERA_QOS)
    assert parse_qos(channels['/side/image_raw/labels'].metadata['offered_qos_profiles']) == \
        parse_qos([DEFAULT_QOS])
    # the input's ROS distribution, in the MCAP metadata record and metadata.yaml
    record = next(m for m in metadata if m.name == 'rosbag2')
    assert record.metadata['ROS_DISTRO'] == 'jazzy'
    assert 'ros_distro: jazzy' in record.metadata['serialized_metadata']
    yaml_text = (dst / 'metadata.yaml').read_text()
    assert 'ros_distro: jazzy' in yaml_text and 'path: out.mcap' in yaml_text
    assert yaml_text.count(f'type_description_hash: {image_hash}') == 1 + 4


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_ros_distro_is_the_running_one_when_the_input_has_none(storage, tmp_path, monkeypatch):
    import sqlite3
    monkeypatch.setenv('ROS_DISTRO', 'kilted')
    src, dst = tmp_path / 'in', tmp_path / 'out'
    make_bag(src, storage)  # rosbags writes 'rosbags', which is no ROS distribution
    assert 'ros_distro: rosbags' in (src / 'metadata.yaml').read_text()
    assert main([str(src), str(dst), '--topics', RAW] + NET) == 0
    assert 'ros_distro: kilted' in (dst / 'metadata.yaml').read_text()
    if storage == 'sqlite3':
        db = sqlite3.connect(dst / 'out.db3')
        assert db.execute('SELECT ros_distro FROM schema').fetchall() == [('kilted',)]
        assert 'ros_distro: kilted' in db.execute('SELECT metadata FROM metadata').fetchone()[0]
        db.close()
    else:
        record = next(m for m in official_summary(dst / 'out.mcap')[2] if m.name == 'rosbag2')
        assert record.metadata['ROS_DISTRO'] == 'kilted'


def test_labels_do_not_depend_on_the_outputs_asked_for(tmp_path):
    """A JPEG's labels: the same with and without --overlay, and as the live node makes them."""
    src = tmp_path / 'big'
    with Writer(src, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(JPEG, CompressedImage.__msgtype__, typestore=STORE)
        for i in range(2):  # 160x96 frames: at least twice the 64x32 network, half-size decode
            ok, enc = cv2.imencode('.jpg', cv2.resize(frame(i), (160, 96))[..., ::-1])
            msg = CompressedImage(header=header(i, 'side_cam'), format='jpeg',
                                  data=enc.reshape(-1))
            writer.write(conn, stamp_ns(i, JPEG),
                         bytes(STORE.serialize_cdr(msg, CompressedImage.__msgtype__)))
    labels = {}
    for overlay in (False, True):
        dst = tmp_path / f'out_{overlay}'
        assert main([str(src), str(dst)] + (['--overlay'] if overlay else []) + NET) == 0
        labels[overlay] = [STORE.deserialize_cdr(raw, t).data.copy()
                           for _, t, raw in read_bag(dst)['/side/image_raw/labels']]
        if overlay:
            overlays = [STORE.deserialize_cdr(raw, t)
                        for _, t, raw in read_bag(dst)['/side/image_raw/overlay']]
            assert [(o.height, o.width) for o in overlays] == [(96, 160)] * 2
    args = make_parser().parse_args(['in', 'out', '--allow-untrained'])
    seg = build_segmenter(args, 'cityscapes', (32, 64), log=lambda m: None)
    for i, (_, msgtype, raw) in enumerate(read_bag(src)[JPEG]):
        msg = STORE.deserialize_cdr(raw, msgtype)
        rgb, size = imaging.decode_compressed(msg.format, msg.data,
                                              network_size=seg.backend.config.input_size)
        assert rgb.shape[:2] == (48, 80) and size == (96, 160)  # decoded at half size
        want = seg.segment([rgb], ['labels'], frame_sizes=[size])[0]['labels']
        np.testing.assert_array_equal(labels[False][i], want.reshape(-1))
        np.testing.assert_array_equal(labels[True][i], want.reshape(-1))


def make_crc_bag(path, frames=12, height=240, width=320):
    """Write raw frames (230 KB: ~5 a chunk) and strings with bag_io's writer (CRCs)."""
    with BagWriter(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        raw = writer.add_connection(RAW, Image.__msgtype__, typestore=STORE)
        txt = writer.add_connection(OTHER, String.__msgtype__, typestore=STORE)
        for i in range(frames):
            img = cv2.resize(frame(i), (width, height))
            writer.write(raw, stamp_ns(i, RAW), bytes(STORE.serialize_cdr(Image(
                header=header(i, 'front_cam'), height=height, width=width, encoding='rgb8',
                is_bigendian=0, step=width * 3, data=img.reshape(-1)), Image.__msgtype__)),
                publish_time=stamp_ns(i, RAW) - 3, sequence=10 + i)
            writer.write(txt, stamp_ns(i, RAW) + 1, bytes(STORE.serialize_cdr(
                String(data=f'hello {i}'), String.__msgtype__)))
    return path / f'{path.name}.mcap'


def copied(path, topics=(RAW, OTHER)):
    """Return the original topics' messages of a bag, as the official reader reads them."""
    return sorted(m for m in official_messages(path) if m[0] in topics)


def test_file_cut_inside_its_first_chunk_says_it_is_damaged(tmp_path, capsys):
    whole = make_crc_bag(tmp_path / 'rec')
    _topics, spans = chunk_spans(whole)
    first_start, first_end, _ = spans[0]
    src = tmp_path / 'early.mcap'
    src.write_bytes(whole.read_bytes()[:(first_start + first_end) // 2])
    assert main([str(src), str(tmp_path / 'out')] + NET) == 1
    err = capsys.readouterr().err
    assert 'has no sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage topics: nothing to ' \
           'segment; the file is damaged: the file ends ' in err, err
    assert f'at offset {first_start}' in err


@pytest.mark.parametrize('where', ['mid-chunk', 'mid-record', 'summary'])
def test_truncated_mcap_is_salvaged_or_refused_with_strict(tmp_path, capsys, where):
    whole = make_crc_bag(tmp_path / 'rec')
    topics, spans = chunk_spans(whole)
    assert len(spans) >= 3
    blob = whole.read_bytes()
    second_start, second_end, _ = spans[1]
    cut = {'mid-chunk': (second_start + second_end) // 2, 'mid-record': second_end + 5,
           'summary': len(blob) - 30}[where]
    src = tmp_path / 'crashed.mcap'
    src.write_bytes(blob[:cut])  # what a recorder killed while writing leaves
    complete = [m for start, end, msgs in spans if end <= cut for m in msgs]
    expected = sorted((topics[c], t, p, q, d) for c, t, p, q, d in complete)

    dst = tmp_path / 'out'
    assert main([str(src), str(dst), '--strict'] + NET) == 1
    err = capsys.readouterr().err
    record_start = {'mid-chunk': second_start, 'mid-record': second_end}.get(where)
    assert f'segment_bag: error: {src}: ' in err and '--strict refuses damaged input' in err
    if record_start is not None:
        assert f'the file ends {cut - record_start} bytes into a ' in err
        assert f'at offset {record_start}:' in err
    else:
        assert 'the summary or footer after the data section is missing or invalid' in err
    assert not dst.exists() and not list(tmp_path.glob('out.partial-*'))

    assert main([str(src), str(dst)] + NET) == 0
    out, err = capsys.readouterr()
    assert 'File end magic is invalid' not in err
    assert copied(dst / 'out.mcap') == expected  # every message of the complete chunks
    frames = sum(1 for m in expected if m[0] == RAW)
    assert len(read_bag(dst)['/front/image_raw/labels']) == frames
    assert f'salvaged {len(expected)} of ~' in out
    if where == 'mid-chunk':
        assert f'into a Chunk record of {second_end - second_start} bytes' in err
        assert '1 chunk(s) skipped' in out
        # lost: the messages whose records begin before the cut (at least one, at most all)
        match = re.search(rf'salvaged {len(expected)} of ~(\d+) messages', out)
        assert match and 1 <= int(match[1]) - len(expected) <= len(spans[1][2]), out
        assert f'skipped ~{int(match[1]) - len(expected)} message(s) (' in err
    else:
        assert '0 chunk(s) skipped' in out
        assert f'salvaged {len(expected)} of ~{len(expected)} messages' in out


def test_chunk_with_a_bad_crc_is_skipped_and_counted(tmp_path, capsys):
    src = make_crc_bag(tmp_path / 'rec')
    topics, spans = chunk_spans(src)
    start, end, lost = spans[1]
    blob = bytearray(src.read_bytes())
    blob[(start + end) // 2] ^= 0xFF  # one flipped bit pattern inside the chunk's records
    src.write_bytes(bytes(blob))
    dst = tmp_path / 'out'
    assert main([str(src), str(dst), '--strict'] + NET) == 1
    err = capsys.readouterr().err
    assert f'{src}: chunk CRC mismatch (stored 0x' in err and f'at offset {start}:' in err
    assert not dst.exists()

    assert main([str(src), str(dst)] + NET) == 0
    out, err = capsys.readouterr()
    per_topic = {}
    for c, *_ in lost:
        per_topic[topics[c]] = per_topic.get(topics[c], 0) + 1
    parts = ', '.join(f'{t}: {n}' for t, n in sorted(per_topic.items()))
    assert (f'segment_bag: warning: {src}: chunk CRC mismatch (stored 0x') in err
    assert f'at offset {start}: skipped {len(lost)} message(s) ({parts})' in err
    kept = [(topics[c], t, p, q, d) for s, e, msgs in spans if s != start
            for c, t, p, q, d in msgs]
    assert copied(dst / 'out.mcap') == sorted(kept)
    total = sum(len(m) for _, _, m in spans)
    assert f'salvaged {len(kept)} of ~{total} messages' in out and '1 chunk(s) skipped' in out
    check_crcs(dst / 'out.mcap')


def test_kill_9_leaves_only_a_temporary_output_that_a_rerun_removes(tmp_path, capsys):
    src, dst = tmp_path / 'in', tmp_path / 'out'
    make_crc_bag(src, frames=150)
    cmd = [sys.executable, '-m', 'regseg_ros.tools.segment_bag', str(src), str(dst),
           '--allow-untrained', '--network-size', '512x256', '--no-progress',
           '--decode-threads', '1']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = tmp_path / f'out.partial-{proc.pid}'
    try:
        # wait for the condition (the output has started to grow), not for a time
        while proc.poll() is None:
            files = list(partial.glob('*.mcap')) if partial.exists() else []
            if files and files[0].stat().st_size > 4 * 2**20:
                break
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not dst.exists()
    assert partial.is_dir() and list(partial.glob('*.mcap'))
    assert not (partial / 'metadata.yaml').exists()

    assert main([str(src), str(dst)] + NET) == 0
    err = capsys.readouterr().err
    assert 'exists already' not in err
    assert (f"segment_bag: removed '{partial}', the unfinished output of an earlier run "
            f'(process {proc.pid}, no longer running)') in err
    assert not partial.exists() and not list(tmp_path.glob('out.partial-*'))
    assert len(read_bag(dst)['/front/image_raw/labels']) == 150


CHILD = """
import sys
from regseg_ros.tools.segment_bag import main
code = main(sys.argv[1:])
peak = [l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1]
print('VMPEAK', int(peak) * 1024, flush=True)
sys.exit(code)
"""


def run_limited(argv, limit=None):
    """Run segment_bag in a child (under an address-space limit); return (code, out, maxrss)."""
    resource = pytest.importorskip('resource')

    def cap():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    env = dict(os.environ, MALLOC_ARENA_MAX='2', OMP_NUM_THREADS='2')
    proc = subprocess.Popen([sys.executable, '-c', CHILD] + argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=cap, env=env)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out, usage.ru_maxrss * 1024


@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='needs /proc (Linux)')
def test_decompression_bombs_are_skipped_within_100_mb_of_a_normal_run(tmp_path):
    src, bombs = tmp_path / 'in', tmp_path / 'bombs'
    payloads = []
    for path, extra in ((src, []), (bombs, [('jpeg', jpeg_bomb()), ('png', png_bomb())])):
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            conn = writer.add_connection(JPEG, CompressedImage.__msgtype__, typestore=STORE)
            items = [('jpeg', cv2.imencode('.jpg', frame(i)[..., ::-1])[1].tobytes())
                     for i in range(2)] + extra
            for i, (fmt, data) in enumerate(items):
                payloads.append(len(data))
                msg = CompressedImage(header=header(i, 'side_cam'), format=fmt,
                                      data=np.frombuffer(data, np.uint8))
                writer.write(conn, stamp_ns(i, JPEG),
                             bytes(STORE.serialize_cdr(msg, CompressedImage.__msgtype__)))
    assert max(payloads[-2:]) < 2048  # the bombs are small
    code, out, normal_rss = run_limited([str(src), str(tmp_path / 'o1')] + NET)
    assert code == 0, out
    normal_peak = int(out.split('VMPEAK ')[1].split()[0])
    # 100 MB more address space than the normal run needed: a bomb decoded for real (2.7 GB)
    # fails here instead of taking the machine down
    code, out, bomb_rss = run_limited([str(bombs), str(tmp_path / 'o2')] + NET,
                                      limit=normal_peak + 100 * 2**20)
    assert code == 0, out
    for fmt in ('jpeg', 'png'):
        assert (f"compressed image ('{fmt}') of 30000x30000 = 900.0 MP exceeds "
                'max_input_pixels = 64000000') in out
    assert 'skipped 2 frame(s) that could not be decoded' in out
    assert bomb_rss <= normal_rss + 100 * 2**20, (bomb_rss, normal_rss)
