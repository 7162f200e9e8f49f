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
Benchmark the segmentation node on this machine and print the figures.

1. Raw model forward at the network size: plain eager NCHW fp32 against the optimised backend
   (BatchNorm folded, channels_last).
2. The node end to end over loopback DDS with camera frames (default 1024x2048): latency p50/p95
   with the camera slower than the model, throughput with the camera faster than it, and the
   node's own overhead (decode, resize, argmax, upsampling, publishing, DDS) as a share of the
   forward time.
3. Node memory (RSS) over a long run (default 1000 frames).

Run: . scripts/ros_env.sh && python scripts/bench_node.py [--frames 1000]
"""

import os
from pathlib import Path
import statistics
import sys
import time

import cv2
import numpy as np
from regseg_ros.backends import BackendConfig, create_backend
from regseg_ros.model import build_model
from regseg_ros.tools.cli import ArgumentParser, parse_size
from regseg_ros.tools.demo import confine_dds, load_frames, NodeSession, SAMPLE_DIR, summary
import torch


def median_ms(fn, runs):
    fn()
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def rss_mb(pid):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def forward_figures(height, width, runs):
    plain = build_model('exp48_decoder26').eval()
    x = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        eager = median_ms(lambda: plain(x), runs)
    backend = create_backend('torch', BackendConfig(allow_untrained=True,
                                                    input_size=(height, width)))
    optimised = median_ms(backend.forward_only, runs)
    return eager, optimised


def main(argv=None):
    parser = ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--network-size', type=parse_size, default='1024x512', metavar='WxH',
                        help='network input, width x height (default: %(default)s)')
    parser.add_argument('--camera-width', type=int, default=2048)
    parser.add_argument('--runs', type=int, default=10, help='forward passes to time')
    parser.add_argument('--frames', type=int, default=1000, help='frames for the memory run')
    parser.add_argument('--outputs', default='labels,drivable_mask',
                        help='outputs subscribed (what a planner takes)')
    args = parser.parse_args(argv)
    confine_dds(os.environ)
    height, width = args.network_size
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{cv2.getNumberOfCPUs()} CPUs; network {width}x{height}')

    eager, optimised = forward_figures(height, width, args.runs)
    print(f'forward eager NCHW fp32        {eager:8.1f} ms')
    print(f'forward optimised (folded, CL) {optimised:8.1f} ms  '
          f'({100 * (1 - optimised / eager):.0f} % faster)')

    frames = load_frames(SAMPLE_DIR, args.camera_width)
    ch, cw = frames[0].shape[:2]
    outputs = tuple(args.outputs.split(','))
    if 'labels' not in outputs:
        outputs = ('labels',) + outputs
    session = NodeSession(['-p', f'network_height:={height}', '-p', f'network_width:={width}',
                           '-p', 'allow_untrained:=true'], outputs=outputs,
                          log_path=Path('/tmp/regseg_bench_node.log'))
    from diagnostic_msgs.msg import DiagnosticArray
    diagnostics = []
    session.node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: diagnostics.append({kv.key: kv.value for kv in m.status[0].values}), 10)
    try:
        session.wait_ready(frames[0])
        slow_rate = 0.5 * 1e3 / optimised
        session.play(frames, slow_rate)
        slow = summary(session, len(frames))
        inside = diagnostics[-1]
        session.reset()
        fast = list(frames) * 2
        session.play(fast, 30.0)
        sat = summary(session, len(fast))
        period = 1e3 / sat['output_rate_hz']
        print(f'camera {cw}x{ch} rgb8 -> outputs {",".join(outputs)}')
        print(f'node latency, camera at {slow_rate:.1f} Hz   p50 {slow["latency_ms_p50"]:.1f} ms  '
              f'p95 {slow["latency_ms_p95"]:.1f} ms  ({slow["frames_dropped"]} dropped)')
        print(f'node throughput, camera at 30 Hz {sat["output_rate_hz"]:.2f} fps  '
              f'(period {period:.1f} ms, latency p50 {sat["latency_ms_p50"]:.1f} ms, '
              f'{sat["frames_dropped"]} of {sat["frames_sent"]} dropped)')
        print(f'node overhead per frame          {period - optimised:.1f} ms = '
              f'{100 * (period - optimised) / optimised:.1f} % of the forward time '
              '(saturated period - forward)')
        print(f'end-to-end overhead at low rate  {slow["latency_ms_p50"] - optimised:.1f} ms = '
              f'{100 * (slow["latency_ms_p50"] - optimised) / optimised:.1f} % '
              '(latency p50 - forward, DDS both ways and the test peer included)')
        node_ms = float(inside['latency_ms_p50'])
        forward_ms = float(inside['forward_ms_mean'])
        print(f'inside the node at low rate      receipt->published p50 {node_ms:.1f} ms, '
              f'segment() mean {float(inside["inference_ms_mean"]):.1f} ms, network forward '
              f'mean {forward_ms:.1f} ms in the same run')
        print(f'node overhead (own work)         {node_ms - forward_ms:.1f} ms = '
              f'{100 * (node_ms - forward_ms) / forward_ms:.1f} % of the forward time; against '
              f'the isolated forward: {100 * (node_ms - optimised) / optimised:.1f} %')

        pid = session.proc.pid
        marks = []
        sent = 0
        frame_ms = max(optimised * 1.05, 1)
        while sent < args.frames:
            batch = min(100, args.frames - sent)
            session.play([frames[(sent + i) % len(frames)] for i in range(batch)],
                         1e3 / frame_ms, settle=0.5)
            sent += batch
            marks.append((sent, rss_mb(pid)))
        first, last = marks[0][1], marks[-1][1]
        print('node RSS over the run (frames: MB) ' +
              ' '.join(f'{n}:{mb:.0f}' for n, mb in marks))
        print(f'node RSS growth from {marks[0][0]} to {marks[-1][0]} frames: '
              f'{last - first:+.1f} MB ({100 * (last - first) / first:+.1f} %)')
    finally:
        session.close()
    return 0


if __name__ == '__main__':
    np.set_printoptions(precision=1)
    sys.exit(main())
