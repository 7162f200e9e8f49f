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
Benchmark segment_bag against the backend's raw inference at the same sizes.

Makes a bag of N frames (JPEG ``CompressedImage`` or raw rgb8 ``Image``, from the bundled sample
sequence resized to --size), then alternates, --repeat times:

* raw: ``backend.infer`` on the already decoded frames (same batch, same input and output sizes;
  no bag, no decoding, no writing), before the first and after every segment_bag run, and
* segment_bag: the whole tool on the bag (read, decode, infer, serialise, write labels and
  drivable_mask), with the same loaded backend.

It prints frames/s of each run, the process CPU time per frame of both (user + system, all
threads: the difference is what reading, decoding and writing cost) and the ratio of the best
runs and the per-run ratios (segment_bag against the mean of the raw runs just before and after
it): their median is the figure to quote. Example::

    python scripts/bench_segment_bag.py --frames 24 --size 2048x1024 --format jpeg raw
"""

import argparse
from pathlib import Path
import statistics
import sys
import tempfile
import threading
import time

import cv2
import numpy as np
from regseg_ros.tools.cli import add_model_arguments, build_segmenter, format_size, parse_size
from regseg_ros.tools.segment_bag import BagSegmenter, DEFAULT_NETWORK_SIZE
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

SAMPLES = Path(__file__).resolve().parent.parent / 'regseg_ros' / 'data' / 'sample'
STORE = get_typestore(Stores.ROS2_HUMBLE)


def sample_frames(count, height, width):
    """Return ``count`` RGB frames of the sample sequence at ``height`` x ``width``."""
    files = sorted(SAMPLES.glob('frame_*.jpg'))
    frames = []
    for i in range(count):
        bgr = cv2.imread(str(files[i % len(files)]), cv2.IMREAD_COLOR)
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)
        frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    return frames


def write_bag(path, frames, fmt, storage):
    """Write the frames as one camera topic at 10 Hz; return the topic."""
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    header_t = STORE.types['std_msgs/msg/Header']
    time_t = STORE.types['builtin_interfaces/msg/Time']
    if fmt == 'jpeg':
        msgtype, topic = 'sensor_msgs/msg/CompressedImage', '/cam/image_raw/compressed'
    else:
        msgtype, topic = 'sensor_msgs/msg/Image', '/cam/image_raw'
    cls = STORE.types[msgtype]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=STORE)
        for i, rgb in enumerate(frames):
            ns = 1_700_000_000 * 10**9 + i * 100_000_000
            header = header_t(stamp=time_t(sec=ns // 10**9, nanosec=ns % 10**9), frame_id='cam')
            if fmt == 'jpeg':
                ok, data = cv2.imencode('.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
                msg = cls(header=header, format='jpeg', data=data.reshape(-1))
            else:
                h, w = rgb.shape[:2]
                msg = cls(header=header, height=h, width=w, encoding='rgb8', is_bigendian=0,
                          step=w * 3, data=rgb.reshape(-1))
            writer.write(conn, ns, STORE.serialize_cdr(msg, msgtype))
    return topic


def raw_fps(backend, frames, batch):
    """Frames per second of ``backend.infer`` over the decoded frames."""
    start = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(frames), batch):
        chunk = frames[i:i + batch]
        backend.infer(chunk, [f.shape[:2] for f in chunk], with_confidence=False)
    if backend.config.device.startswith('cuda'):
        import torch
        torch.cuda.synchronize()
    return len(frames) / (time.perf_counter() - start), time.process_time() - cpu


class StageClock:
    """Sum the thread CPU time spent in named methods (decoding, inference, writing)."""

    def __init__(self):
        self.seconds = {}
        self._lock = threading.Lock()

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] = (self.seconds.get(name, 0.0) + time.thread_time()
                                          - start)
        return timed

    def report(self, frames):
        return ', '.join(f'{name} {1000 * s / frames:.1f}' for name, s in self.seconds.items())


def main(argv=None):
    """Run the benchmark; print a table of frames/s."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=24)
    parser.add_argument('--size', type=parse_size, default=(1024, 2048), metavar='WxH',
                        help='camera frame size, width x height (default: 2048x1024)')
    parser.add_argument('--format', nargs='+', choices=('jpeg', 'raw'), default=['jpeg'])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    parser.add_argument('--decode-threads', type=int, default=None)
    parser.add_argument('--profile', action='store_true',
                        help='also print the thread CPU ms per frame of decode, infer, write')
    add_model_arguments(parser, format_size(DEFAULT_NETWORK_SIZE))
    args = parser.parse_args(argv)
    args.allow_untrained = args.allow_untrained or not args.weights
    size = args.network_size or DEFAULT_NETWORK_SIZE
    segmenter = build_segmenter(args, args.label_set or 'cityscapes', size,
                                log=lambda m: print(m, file=sys.stderr))
    backend = segmenter.backend
    frames = sample_frames(args.frames, *args.size)
    info = backend.describe()
    print(f'# {info}')
    print(f'# {args.frames} frames {format_size(args.size)}, network {format_size(size)}, '
          f'batch {args.batch}, storage {args.storage}')
    raw_fps(backend, frames[:max(2, args.batch)], args.batch)  # warm-up at these sizes
    ms = 1000 / args.frames
    clock = StageClock()
    if args.profile:
        BagSegmenter._decode = clock.wrap('decode', BagSegmenter._decode)
        BagSegmenter._write_items = clock.wrap('write', BagSegmenter._write_items)
        backend.infer = clock.wrap('infer', backend.infer)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.format:
            bag = Path(tmp) / f'in_{fmt}'
            write_bag(bag, frames, fmt, args.storage)
            mb = sum(p.stat().st_size for p in bag.iterdir()) / 2**20
            # Raw runs bracket every segment_bag run and each ratio takes the mean of its two
            # neighbours: this VM's speed drifts by tens of percent over minutes.
            raws, pipes, ratios = [raw_fps(backend, frames, args.batch)], [], []
            for run in range(args.repeat):
                clock.seconds.clear()
                job = BagSegmenter(bag, Path(tmp) / 'out', overwrite=True)
                cpu = time.process_time()
                summary = job.run(segmenter, batch=args.batch, progress=False,
                                  decode_threads=args.decode_threads)
                cpu = time.process_time() - cpu
                assert summary.total_frames == args.frames, summary
                pipes.append(summary.fps)
                raws.append(raw_fps(backend, frames, args.batch))
                (before, cpu_before), (after, cpu_after) = raws[-2:]
                raw_cpu = (cpu_before + cpu_after) / 2
                ratios.append(pipes[-1] / ((before + after) / 2))
                print(f'{fmt:4} run {run + 1}: raw infer {before:6.2f} | {after:6.2f} frames/s   '
                      f'segment_bag {pipes[-1]:6.2f} frames/s ({100 * ratios[-1]:5.1f} %)   '
                      f'CPU ms/frame {ms * raw_cpu:.0f} / {ms * cpu:.0f}'
                      + (f'   [thread CPU ms/frame: {clock.report(args.frames)}]'
                         if args.profile else ''))
            fps = [r for r, _ in raws]
            print(f'{fmt:4} ({mb:.0f} MiB bag, {args.repeat} runs): best raw {max(fps):.2f}, best '
                  f'segment_bag {max(pipes):.2f} frames/s -> {100 * max(pipes) / max(fps):.1f} %; '
                  f'per-run ratios {100 * min(ratios):.1f}-{100 * max(ratios):.1f} %, median '
                  f'{100 * statistics.median(ratios):.1f} %')
    return 0


if __name__ == '__main__':
    sys.exit(main())
