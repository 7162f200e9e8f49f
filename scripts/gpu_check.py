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
GPU checks of batched inference, to run as ONE script when a GPU is lent; prints figures.

1. torch on CUDA, fp32: labels of 4 camera frames segmented as one batch against one at a time
   (cuDNN may pick other kernels per batch size: the differing pixels are counted, at most
   0.01 % pass), and frames/s of batch 4 against 4x batch 1 (fp16);
2. TensorRT (when it imports): an engine with the optimisation profile batch 1..4 builds (in a
   temporary cache), its batch-4 labels against batch 1, frames/s of batch 4 against 4x batch 1
   (the goal of issue 16: at least 2x).

Exit 0 when every check passes (or, without CUDA, after one SKIP line), 1 when one fails.
Run: python scripts/gpu_check.py [--network-size 1024x512] [--seconds 5]
"""

import sys
import tempfile
import time

import numpy as np
from regseg_ros.backends import BackendConfig, create_backend
from regseg_ros.core.errors import RegsegError
from regseg_ros.tools.cli import ArgumentParser, parse_size

BATCH = 4
MAX_DIFFERING = 1e-4   # share of pixels that may differ between batch 4 and batch 1 on a GPU


def camera_frames(n=BATCH, size=(1024, 2048)):
    """Return smooth random RGB frames (class regions, not noise), different per frame."""
    import cv2
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        small = rng.integers(0, 255, (size[0] // 64, size[1] // 64, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC))
    return out


def fps(run, frames_per_call, seconds):
    """Return frames per second of ``run()`` over about ``seconds`` (after two warm-up calls)."""
    run()
    run()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * frames_per_call / (time.perf_counter() - start)


def compare(backend, images, seconds, what):
    """Check batch vs single labels of ``backend``; return (ok, speed-up of batch over singles)."""
    sizes = [img.shape[:2] for img in images]
    alone = [backend.infer([img], [size])[0].labels for img, size in zip(images, sizes)]
    together = [p.labels for p in backend.infer(images, sizes)]
    differing = sum(int((a != b).sum()) for a, b in zip(alone, together))
    share = differing / sum(a.size for a in alone)
    ok = share <= MAX_DIFFERING
    print(f'{what}: batch {len(images)} vs batch 1 labels: {differing} pixels differ '
          f'({100 * share:.4f} %, at most {100 * MAX_DIFFERING:.2f} %) -> '
          f'{"ok" if ok else "FAIL"}{" (bit-equal)" if differing == 0 else ""}')
    single = fps(lambda: [backend.infer([img], [s]) for img, s in zip(images, sizes)],
                 len(images), seconds)
    batched = fps(lambda: backend.infer(images, sizes), len(images), seconds)
    print(f'{what}: {single:.1f} frames/s as {len(images)}x batch 1, {batched:.1f} frames/s as '
          f'batch {len(images)} ({batched / single:.2f}x)')
    return ok, batched / single


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--network-size', type=parse_size, default='1024x512', metavar='WxH')
    parser.add_argument('--seconds', type=float, default=5.0, help='timing per figure')
    args = parser.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print(f'SKIP: no CUDA GPU visible to torch {torch.__version__} (CUDA build: '
              f'{torch.version.cuda}); nothing checked')
        return 0
    print(f'GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA '
          f'{torch.version.cuda}; network {args.network_size[1]}x{args.network_size[0]}, '
          f'camera frames 2048x1024, batch {BATCH}')
    images = camera_frames()
    failures = []
    for precision in ('fp32', 'fp16'):
        backend = create_backend('torch', BackendConfig(
            allow_untrained=True, device='cuda', precision=precision,
            input_size=args.network_size, options={'max_batch': BATCH}), log=print)
        ok, _speed = compare(backend, images, args.seconds, f'torch cuda {precision}')
        if not ok and precision == 'fp32':
            failures.append('torch fp32 batch labels')
        backend.close()
    try:
        with tempfile.TemporaryDirectory(prefix='regseg-gpu-check-') as cache:
            start = time.monotonic()
            backend = create_backend('tensorrt', BackendConfig(
                allow_untrained=True, device='cuda', precision='fp16',
                input_size=args.network_size, cache_dir=cache,
                options={'max_batch': BATCH}), log=print)
            print(f'tensorrt: engine with profile batch 1..{BATCH} ready in '
                  f'{time.monotonic() - start:.0f} s (engine batch {backend.engine_batch})')
            if backend.engine_batch != BATCH:
                failures.append(f'TensorRT engine batch {backend.engine_batch}, not {BATCH}')
            ok, speed = compare(backend, images, args.seconds, 'tensorrt fp16')
            if not ok:
                failures.append('TensorRT batch labels')
            print(f'tensorrt: batch {BATCH} speed-up {speed:.2f}x (goal >= 2x) -> '
                  f'{"ok" if speed >= 2.0 else "GOAL NOT MET"}')
            if speed < 2.0:
                failures.append(f'TensorRT batch {BATCH} only {speed:.2f}x of {BATCH}x batch 1')
            backend.close()
    except RegsegError as exc:
        print(f'tensorrt: FAIL: {exc}')
        failures.append('TensorRT engine')
    print('ALL CHECKS PASSED' if not failures else f'FAILED: {"; ".join(failures)}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
