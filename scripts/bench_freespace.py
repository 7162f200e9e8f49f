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
Benchmark the freespace grid on this machine and print the figures.

Four cameras (front and rear pinhole, left and right equidistant fisheye) with 1024x2048 label
images fill an 80 m x 40 m grid at 0.1 m (800x400 cells). Printed: the lookup build time per
camera (once per intrinsics/pose/grid), the per-frame update per camera (boundary scan and the
lookup applied), the fusion and the virtual scan, each the median of --frames runs.

Run: python scripts/bench_freespace.py [--frames 50] [--size 1024x2048]
"""

import math
import os
import platform
import statistics
import time

import numpy as np
from regseg_ros.core.freespace import camera_cells, fuse, Semantics, VirtualScan
from regseg_ros.core.labels import CITYSCAPES
from regseg_ros.core.projection import build_lookup, CameraModel, CameraPose, GridSpec
from regseg_ros.tools.benchmark import cpu_name
from regseg_ros.tools.cli import ArgumentParser, parse_size

ROAD, CAR, SKY, TERRAIN = CITYSCAPES.class_ids(('road', 'car', 'sky', 'terrain'))


def machine() -> str:
    """Return the CPU model and core count."""
    return f'{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}'


def cameras(height: int, width: int):
    """Return (model, pose) of the four cameras of a car, for WIDTHxHEIGHT images."""
    pin = (width / 2.0, 0.0, width / 2 - 0.5, 0.0, width / 2.0, height / 2 - 0.5, 0.0, 0.0, 1.0)
    fish = (width / 6.0, 0.0, width / 2 - 0.5, 0.0, width / 6.0, height / 2 - 0.5,
            0.0, 0.0, 1.0)
    d_pin, d_fish = (-0.05, 0.01, 0.0, 0.0, 0.0), (0.04, -0.01, 0.002, -0.0005)
    return [
        (CameraModel(pin, d_pin, 'plumb_bob', width, height, 'front'),
         CameraPose.from_body(1.8, 0.0, 1.5, 0.0, math.radians(10), 0.0)),
        (CameraModel(fish, d_fish, 'equidistant', width, height, 'left'),
         CameraPose.from_body(1.0, 0.9, 1.0, 0.0, math.radians(25), math.pi / 2)),
        (CameraModel(fish, d_fish, 'equidistant', width, height, 'right'),
         CameraPose.from_body(1.0, -0.9, 1.0, 0.0, math.radians(25), -math.pi / 2)),
        (CameraModel(pin, d_pin, 'plumb_bob', width, height, 'rear'),
         CameraPose.from_body(-0.9, 0.0, 1.2, 0.0, math.radians(15), math.pi)),
    ]


def labels_image(height: int, width: int, seed: int) -> np.ndarray:
    """Road below a wavy boundary with cars on it, terrain and sky above (a busy street)."""
    rng = np.random.default_rng(seed)
    labels = np.full((height, width), SKY, np.uint8)
    cols = np.arange(width)
    boundary = (0.58 * height + 0.05 * height * np.sin(cols / width * 9 + seed)).astype(int)
    rows = np.arange(height)[:, None]
    labels[rows >= boundary[None, :]] = ROAD
    labels[(rows < boundary[None, :]) & (rows > 0.5 * height)] = TERRAIN
    for _ in range(6):
        c0 = int(rng.integers(0, width - 200))
        r0 = int(rng.integers(int(0.55 * height), int(0.8 * height)))
        labels[r0 - 120:r0, c0:c0 + 200] = CAR
    return labels


def main(argv=None) -> int:
    """Print the figures."""
    parser = ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=50, help='frames per camera (default 50)')
    parser.add_argument('--size', type=parse_size, default=(1024, 2048),
                        help='label image size WIDTHxHEIGHT (default 2048x1024)')
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f'--frames {args.frames} must be at least 1')
    height, width = args.size
    grid = GridSpec(0.1, 40.0, 40.0, 20.0, 20.0)
    semantics = Semantics.from_names(CITYSCAPES, ['road'])
    print(f'machine: {machine()}; load average {os.getloadavg()[0]:.2f} (other work on the '
          'cores inflates the figures)')
    print(f'grid: {grid.width}x{grid.height} cells at {grid.resolution} m (80 m x 40 m); '
          f'labels {width}x{height}; 4 cameras; median of {args.frames} frames')
    lookups, images = [], []
    for i, (model, pose) in enumerate(cameras(height, width)):
        t0 = time.perf_counter()
        lookup = build_lookup(model, pose, grid, max_range=40.0)
        build = time.perf_counter() - t0
        lookups.append(lookup)
        images.append([labels_image(height, width, seed) for seed in range(i * 4, i * 4 + 4)])
        print(f'  lookup {model.name:5s} ({model.distortion_model:11s}): {build * 1e3:7.1f} ms '
              f'build, {lookup.size} cells seen')
    scan = VirtualScan(grid, math.radians(0.5), 40.0)
    per_camera = [[] for _ in lookups]
    cpu = [[] for _ in lookups]   # this thread's CPU time: what other processes cannot inflate
    fusion, scanning, total = [], [], []
    out = None
    for frame in range(args.frames):
        t_all = time.perf_counter()
        cells = []
        for i, lookup in enumerate(lookups):
            t0, c0 = time.perf_counter(), time.thread_time()
            cells.append(camera_cells(lookup, semantics, images[i][frame % 4]))
            per_camera[i].append(time.perf_counter() - t0)
            cpu[i].append(time.thread_time() - c0)
        t0 = time.perf_counter()
        out = fuse(grid, cells, out)
        fusion.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scan.ranges(out)
        scanning.append(time.perf_counter() - t0)
        total.append(time.perf_counter() - t_all)
    for (model, _pose), times, cpu_times in zip(cameras(height, width), per_camera, cpu):
        print(f'  update {model.name:5s}: {statistics.median(times) * 1e3:6.2f} ms per frame '
              f'(best {min(times) * 1e3:5.2f}, p95 {np.percentile(times, 95) * 1e3:6.2f} ms; '
              f'CPU time {statistics.median(cpu_times) * 1e3:5.2f} ms)')
    worst = max(statistics.median(t) for t in per_camera)
    worst_cpu = max(statistics.median(t) for t in cpu)
    print(f'  fusion of 4 cameras: {statistics.median(fusion) * 1e3:6.2f} ms; virtual scan '
          f'({scan.bins} bins): {statistics.median(scanning) * 1e3:6.2f} ms')
    print(f'  all 4 cameras + fusion + scan: {statistics.median(total) * 1e3:6.2f} ms per frame')
    print(f'goal <= 5 ms per camera: {"met" if worst <= 5e-3 else "NOT met"} '
          f'(slowest camera median {worst * 1e3:.2f} ms wall, {worst_cpu * 1e3:.2f} ms CPU)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
