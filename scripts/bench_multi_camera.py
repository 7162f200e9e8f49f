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
Benchmark one multi_camera_node against one segmentation_node per camera, and print the figures.

N cameras (default 4) of WIDTHxHEIGHT rgb8 (default 2048x1024) publish at RATE Hz each (default
10) over loopback DDS; a peer subscribes to every camera's labels (what a planner takes). For
each setup the script measures, after a warm-up, the total processed frames/s (labels received
per second, all cameras) and the total resident memory (VmRSS, summed over the node
processes, largest value seen). Setups:

- ``multi``: one multi_camera_node, cpu_threads 0 (torch: one thread per core), max_batch N,
  exact_batch true (what vehicle_cameras.launch.py starts by default);
- ``multi_fast``: the same with exact_batch false (the network batched even where batch N
  logits differ from batch 1 in the last bits);
- ``single``: N segmentation_node processes, cpu_threads cores // N each (at least 1), as
  vehicle_cameras.launch.py process_per_camera:=true starts them on the CPU.

``SETUP@T`` runs a multi setup with cpu_threads T (e.g. ``multi@1``): on a loaded machine two
OpenMP threads that wait for each other at every layer lose to one thread.

On a machine shared with other work, the scheduler gives four processes more CPU than one, so
frames/s then favours ``single``; the script also prints the CPU the nodes used (from
/proc/PID/stat) and frames per CPU-second, which the other load does not skew, and the load
average before each run. ``--repeat R`` runs the setups R times in turn (A/B back to back, under
the same load) and compares the medians.

Run: . scripts/ros_env.sh && python scripts/bench_multi_camera.py [--seconds 60]
"""

import argparse
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regseg_ros.tools.benchmark import cpu_name
from regseg_ros.tools.cli import ArgumentParser, parse_size
from regseg_ros.tools.demo import confine_dds, load_frames, node_command, SAMPLE_DIR
from sensor_msgs.msg import Image


def machine() -> str:
    """Name the CPU (the /proc/cpuinfo model name) and the core count."""
    return f'{cpu_name()}, {os.cpu_count()} cores'


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system, all threads) process ``pid`` has used."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return 0.0


def image(array: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    msg.height, msg.width = array.shape[:2]
    msg.encoding = 'rgb8'
    msg.step = array.shape[1] * 3
    msg.data = array.tobytes()
    return msg


def start(setup: str, cameras, net, tmp: Path):
    """Start the node processes of ``setup``; return them."""
    h, w = net
    model = ['-p', 'allow_untrained:=true', '-p', f'network_height:={h}',
             '-p', f'network_width:={w}']
    procs = []
    log = open(tmp / f'{setup}.log', 'w')
    if setup.startswith('multi'):
        kind, _at, threads = setup.partition('@')
        lines = ['/**:', '  ros__parameters:', f'    cameras: [{", ".join(cameras)}]',
                 f'    max_batch: {len(cameras)}', f'    cpu_threads: {threads or 0}',
                 f'    exact_batch: {"false" if kind == "multi_fast" else "true"}']
        lines += [f'    {cam}.topic: /bench_{cam}/image_raw' for cam in cameras]
        (tmp / 'multi.yaml').write_text('\n'.join(lines) + '\n')
        procs.append(subprocess.Popen(
            node_command('multi_camera_node') + ['--ros-args', '--params-file',
                                                 str(tmp / 'multi.yaml')] + model,
            stdout=log, stderr=subprocess.STDOUT))
    else:
        threads = max(1, (os.cpu_count() or 1) // len(cameras))
        for cam in cameras:
            procs.append(subprocess.Popen(
                node_command('segmentation_node') + [
                    '--ros-args', '-r', f'__ns:=/{cam}', '-r', f'image:=/bench_{cam}/image_raw',
                    '-p', f'cpu_threads:={threads}'] + model,
                stdout=log, stderr=subprocess.STDOUT))
    return procs


def run_setup(setup, cameras, frames, net, rate, seconds, warmup, tmp):
    """Run one setup; return (frames/s total, per-camera fps, RSS MB total)."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f'bench_{setup.replace("@", "_t")}', context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    got = {cam: [] for cam in cameras}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for cam in cameras:
        node.create_subscription(Image, f'/{cam}/regseg/labels',
                                 lambda m, cam=cam: got[cam].append(time.monotonic()), qos)
    pubs = {cam: node.create_publisher(Image, f'/bench_{cam}/image_raw', 1) for cam in cameras}
    received = {}   # diagnostics status -> frames_received (what reached the nodes over DDS)

    def on_diagnostics(msg):
        for status in msg.status:
            for kv in status.values:
                if kv.key == 'frames_received' and not status.name.endswith('total'):
                    received[status.name] = int(kv.value)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    procs = start(setup, cameras, net, tmp)
    stop = threading.Event()
    peak = [0.0]

    def publish():
        period = 1.0 / rate
        nxt = time.monotonic()
        i = 0
        while not stop.is_set():
            for k, cam in enumerate(cameras):
                pubs[cam].publish(image(frames[(i + k) % len(frames)], time.time_ns(), cam))
            i += 1
            nxt += period
            stop.wait(max(0.0, nxt - time.monotonic()))
    try:
        deadline = time.monotonic() + 300
        while not all(p.get_subscription_count() for p in pubs.values()):
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f'{setup}: nodes did not come up; see {tmp}/{setup}.log')
        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        t0 = time.monotonic()
        while time.monotonic() < t0 + warmup + seconds:
            executor.spin_once(timeout_sec=0.05)
            peak[0] = max(peak[0], sum(rss_mb(p.pid) for p in procs))
            if time.monotonic() >= t0 + warmup and 'start' not in received:
                received['start'] = sum(received.values())
                cpu_start = sum(cpu_s(p.pid) for p in procs)
        cpu_used = sum(cpu_s(p.pid) for p in procs) - cpu_start
        stop.set()
        thread.join()
        start_t, end_t = t0 + warmup, t0 + warmup + seconds
        per_cam = {cam: sum(start_t <= t < end_t for t in got[cam]) / seconds for cam in cameras}
        arrived = (sum(v for k, v in received.items() if k != 'start')
                   - received.get('start', 0)) / seconds
        return sum(per_cam.values()), per_cam, peak[0], arrived, cpu_used / seconds
    finally:
        stop.set()
        for p in procs:
            p.send_signal(2)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.strip().rsplit('\n\nRun:', 1)[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cameras', type=int, default=4, help='cameras (default 4)')
    parser.add_argument('--camera-size', type=parse_size, default='2048x1024', metavar='WxH',
                        help='camera frames, rgb8 (default 2048x1024)')
    parser.add_argument('--network-size', type=parse_size, default='1024x512', metavar='WxH',
                        help='network input of every node (default 1024x512)')
    parser.add_argument('--rate', type=float, default=10.0, help='Hz per camera (default 10)')
    parser.add_argument('--seconds', type=float, default=60.0,
                        help='measured time per setup (default 60)')
    parser.add_argument('--warmup', type=float, default=15.0,
                        help='seconds before measuring (default 15)')
    parser.add_argument('--setups', default='single,multi,multi_fast,multi@1,multi_fast@1',
                        help='comma-separated setups, above (default: all five); each takes '
                        'warmup + seconds plus start-up')
    parser.add_argument('--repeat', type=int, default=1,
                        help='run the setups this many times in turn; compare the medians')
    args = parser.parse_args(argv)
    confine_dds(os.environ)
    ch, cw = args.camera_size
    nh, nw = args.network_size
    base = load_frames(SAMPLE_DIR, cw)
    frames = [np.ascontiguousarray(np.resize(f, (ch, cw, 3))) if f.shape[:2] != (ch, cw)
              else f for f in base]
    cameras = [f'cam{i}' for i in range(args.cameras)]
    print(f'machine: {machine()}; python {platform.python_version()}')
    print(f'{args.cameras} cameras {cw}x{ch} rgb8 at {args.rate:g} Hz each, network {nw}x{nh}, '
          f'{args.warmup:g} s warm-up then {args.seconds:g} s measured per setup; labels only')
    runs = {}   # setup -> [(frames/s, RSS MB, frames per CPU-second)]
    with tempfile.TemporaryDirectory(prefix='regseg-bench-multi-') as tmp:
        for _ in range(max(1, args.repeat)):
            for setup in args.setups.split(','):
                load = os.getloadavg()[0]
                fps, per_cam, rss, arrived, cores = run_setup(
                    setup, cameras, frames, (nh, nw), args.rate, args.seconds, args.warmup,
                    Path(tmp))
                eff = fps / cores if cores else float('nan')
                runs.setdefault(setup, []).append((fps, rss, eff))
                print(f'{setup:12s} processed {fps:6.2f} frames/s total '
                      f'({", ".join(f"{c} {v:.2f}" for c, v in per_cam.items())}); '
                      f'RSS total {rss:7.0f} MB; frames reaching the nodes ~{arrived:.1f}/s '
                      f'(sent {args.rate * args.cameras:g}/s); CPU {cores:.2f} cores busy = '
                      f'{eff:.2f} frames per CPU-second; load average before {load:.2f}',
                      flush=True)
    results = {setup: tuple(statistics.median(r[i] for r in rs) for i in range(3))
               for setup, rs in runs.items()}
    if args.repeat > 1:
        for setup, (fps, rss, eff) in results.items():
            print(f'{setup:12s} median of {len(runs[setup])}: {fps:.2f} frames/s, RSS {rss:.0f} '
                  f'MB, {eff:.2f} frames per CPU-second')
    if 'single' in results:
        fps1, rss1, eff1 = results['single']
        for setup, (fps, rss, eff) in results.items():
            if setup != 'single':
                print(f'{setup} vs single: RSS {rss / rss1:.2f}x (goal <= 0.4x), frames/s '
                      f'{fps / fps1 if fps1 else float("nan"):.2f}x (goal >= 1.0x), frames per '
                      f'CPU-second {eff / eff1 if eff1 else float("nan"):.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
