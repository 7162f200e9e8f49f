"""segment_bag end to end: bags written here, segmented in-process, read back with rosbags."""

from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest
from regseg_ros.segment_bag import BagSegmenter, build_segmenter, main, make_parser, output_base
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
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
