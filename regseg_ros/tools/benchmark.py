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

r"""
Time a backend: model only, and the full path from a uint8 camera frame to uint8 labels.

::

    ros2 run regseg_ros benchmark --backend tensorrt --device cuda --precision fp16 \
        --network-size 2048x1024 --camera-size 1920x1080 [--json out.json]

*Model only* is the network on a prepared input (see ``model_only_output`` in the report for
what the backend's network ends at). *Full path* is what the node pays per frame: upload or
resize of the camera frame, normalisation, the network, argmax and the labels resized back to
the camera size and copied to the CPU. Latencies in milliseconds; FPS = 1000 / mean latency.
Weights do not change the speed, so random weights are used unless ``--weights`` is given.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from regseg_ros.core.errors import RegsegError
from regseg_ros.tools.cli import parse_size

SAMPLE_FRAME = Path(__file__).resolve().parent.parent / 'data' / 'sample' / 'frame_000.jpg'


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    from regseg_ros.backends import CHOICES
    from regseg_ros.core.labels import LABEL_SETS
    from regseg_ros.model import VARIANTS
    parser = argparse.ArgumentParser(prog='benchmark', description='Time a RegSeg backend.')
    parser.add_argument('--backend', default='torch', choices=CHOICES,
                        help='backend to time (default: %(default)s)')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda or cuda:N (default: cuda when available, else cpu)')
    parser.add_argument('--precision', default=None, choices=('fp32', 'fp16', 'int8'),
                        help='default: fp16 on CUDA, fp32 on the CPU (int8: tensorrt only)')
    parser.add_argument('--network-size', type=parse_size, default=(1024, 2048), metavar='WxH',
                        help='network input size, width x height (default: 2048x1024, as in the '
                        'paper)')
    parser.add_argument('--camera-size', type=parse_size, default=(1080, 1920), metavar='WxH',
                        help='camera frame size, width x height, for the full path (default: '
                        '1920x1080)')
    parser.add_argument('--warmup', type=int, default=10, metavar='N',
                        help='untimed iterations first (default: %(default)s)')
    parser.add_argument('--iterations', type=int, default=100, metavar='N',
                        help='timed iterations of each measurement (default: %(default)s)')
    parser.add_argument('--model', default='exp48_decoder26', choices=sorted(VARIANTS),
                        help='RegSeg variant (default: %(default)s)')
    parser.add_argument('--weights', default='',
                        help='checkpoint to load (default: none, random weights: same speed)')
    parser.add_argument('--label-set', default=None, choices=sorted(LABEL_SETS),
                        help='classes the checkpoint predicts (default: those a checkpoint '
                        'written by train carries, else cityscapes)')
    parser.add_argument('--confidence', action='store_true',
                        help='compute the confidence image too in the full path')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch CPU threads (default: 0, torch decides)')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='torch on CUDA: capture the network in a CUDA graph')
    parser.add_argument('--workspace-mb', type=int, default=None, metavar='N',
                        help='tensorrt: cap the engine-build workspace')
    parser.add_argument('--engine-path', default=None, metavar='PATH',
                        help='tensorrt: use this prebuilt engine')
    parser.add_argument('--cache-dir', default=None,
                        help='where weights and engines are kept (default: ~/.cache/regseg_ros)')
    parser.add_argument('--json', nargs='?', const='-', default=None, metavar='PATH',
                        help='write the results as JSON to PATH (no PATH or -: to stdout, '
                        'instead of the text report)')
    return parser


def summarize(times_s: Sequence[float]) -> Dict[str, float]:
    """Mean, p50, p99, min and max latency in ms, and FPS (1000 / mean)."""
    ms = sorted(t * 1e3 for t in times_s)

    def pct(q: float) -> float:
        if len(ms) == 1:
            return ms[0]
        pos = (len(ms) - 1) * q / 100.0
        lo = int(pos)
        hi = min(lo + 1, len(ms) - 1)
        return ms[lo] + (ms[hi] - ms[lo]) * (pos - lo)

    mean = statistics.fmean(ms)
    return {'mean_ms': mean, 'p50_ms': pct(50), 'p99_ms': pct(99), 'min_ms': ms[0],
            'max_ms': ms[-1], 'fps': 1e3 / mean if mean > 0 else float('inf'),
            'iterations': len(ms)}


def time_calls(fn: Callable[[], object], iterations: int) -> List[float]:
    """Call ``fn`` ``iterations`` times; return each call's wall time in seconds."""
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cpu_name() -> str:
    """Return the processor's model name."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.lower().startswith(('model name', 'hardware')):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tensorrt_version() -> str:
    """Return TensorRT's version without importing it unless it is already imported."""
    module = sys.modules.get('tensorrt')
    if module is not None:
        return getattr(module, '__version__', 'unknown')
    for dist in ('tensorrt', 'tensorrt-cu12', 'tensorrt-cu11', 'tensorrt-cu13'):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if importlib.util.find_spec('tensorrt') is not None:
        return 'installed (version not read)'
    return 'not installed'


def environment(device: str) -> Dict[str, str]:
    """Device name and versions of python, torch, CUDA, cuDNN and TensorRT."""
    import torch
    env = {'python': platform.python_version(), 'torch': torch.__version__,
           'cuda': torch.version.cuda or 'none (CPU build)',
           'cudnn': str(torch.backends.cudnn.version()) if torch.cuda.is_available() else 'none',
           'tensorrt': tensorrt_version(), 'cpu': cpu_name(),
           'cpu_threads': str(torch.get_num_threads())}
    if device.startswith('cuda') and torch.cuda.is_available():
        index = torch.device(device).index or 0
        env['device'] = torch.cuda.get_device_name(index)
        env['compute_capability'] = '.'.join(map(str, torch.cuda.get_device_capability(index)))
    else:
        env['device'] = f'CPU: {env["cpu"]} ({env["cpu_threads"]} threads)'
    return env


def camera_frame(height: int, width: int):
    """Return a uint8 RGB frame of the camera size: the bundled sample drive's first frame."""
    import cv2
    import numpy as np
    bgr = cv2.imread(str(SAMPLE_FRAME), cv2.IMREAD_COLOR)
    if bgr is None:  # an install without the sample data: a smooth synthetic frame
        y, x = np.mgrid[0:height, 0:width]
        return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                         (x + y) % 256], -1).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (width, height)),
                                             cv2.COLOR_BGR2RGB))


def run(args: argparse.Namespace, log: Callable[[str], None]) -> Dict[str, object]:
    """Load the backend, warm up, time both paths; return the report as a dict."""
    import torch
    from regseg_ros.backends import BackendConfig, create_backend
    from regseg_ros.model.weights import resolve_label_set
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    precision = args.precision or ('fp16' if device.startswith('cuda') else 'fp32')
    if args.warmup < 0 or args.iterations < 1:
        raise RegsegError(f'--warmup {args.warmup} / --iterations {args.iterations}: use '
                          'warmup >= 0 and iterations >= 1')
    options = {}
    if args.cuda_graph:
        options['cuda_graph'] = True
    if args.workspace_mb:
        options['workspace_mb'] = args.workspace_mb
    if args.engine_path:
        options['engine_path'] = args.engine_path
    label_set = resolve_label_set(args.label_set, args.weights, args.cache_dir)
    config = BackendConfig(
        model=args.model, num_classes=label_set.num_classes,
        weights=args.weights, allow_untrained=not args.weights, device=device,
        precision=precision, input_size=tuple(args.network_size), cache_dir=args.cache_dir,
        options=options)
    start = time.perf_counter()
    backend = create_backend(args.backend, config, log=log)
    load_s = time.perf_counter() - start
    try:
        info = backend.describe()
        (nh, nw), (ch, cw) = args.network_size, args.camera_size
        frame = camera_frame(ch, cw)

        def full():
            return backend.infer([frame], [(ch, cw)], with_confidence=args.confidence)

        warm = time_calls(full, args.warmup)
        model_only = summarize(time_calls(backend.forward_only, args.iterations))
        full_path = summarize(time_calls(full, args.iterations))
        labels = full()[0].labels
        if labels.shape != (ch, cw) or labels.dtype.name != 'uint8':
            raise RegsegError(f'labels came back {labels.shape} {labels.dtype}, expected '
                              f'({ch}, {cw}) uint8')
    finally:
        backend.close()
    return {
        'backend': info.get('backend'), 'device': info.get('device'),
        'precision': info.get('precision'), 'model': args.model,
        'weights': args.weights or 'random (speed does not depend on weights)',
        'label_set': label_set.name, 'num_classes': label_set.num_classes,
        'network_size': f'{nw}x{nh}', 'camera_size': f'{cw}x{ch}', 'confidence': args.confidence,
        'cuda_graph': info.get('cuda_graph', 'false') == 'true',
        'engine': info.get('engine', ''),
        'environment': environment(str(info.get('device', device))),
        'load_s': load_s,
        'warmup': {'iterations': len(warm), 'total_s': sum(warm),
                   'first_ms': warm[0] * 1e3 if warm else None},
        'model_only_output': getattr(backend, 'forward_only_output', 'network output'),
        'model_only': model_only, 'full_path': full_path,
    }


def format_report(r: Dict[str, object]) -> str:
    """Return the human-readable report."""
    env = r['environment']
    warm = r['warmup']
    lines = [
        f'RegSeg benchmark: {r["model"]}, weights: {r["weights"]}',
        f'backend {r["backend"]} on {r["device"]} ({r["precision"]})'
        + (', CUDA graph' if r['cuda_graph'] else '') + f'; device: {env["device"]}',
        f'versions: python {env["python"]}, torch {env["torch"]}, CUDA {env["cuda"]}, '
        f'cuDNN {env["cudnn"]}, TensorRT {env["tensorrt"]}',
        f'network {r["network_size"]}; camera frame {r["camera_size"]} uint8 RGB in, same size '
        'uint8 '
        'labels out' + (' (+ confidence)' if r['confidence'] else ''),
    ]
    if r['engine']:
        lines.append(f'engine: {r["engine"]}')
    first = f', first {warm["first_ms"]:.1f} ms' if warm['first_ms'] is not None else ''
    lines += [
        f'load: {r["load_s"]:.2f} s; warm-up: {warm["iterations"]} iterations in '
        f'{warm["total_s"]:.2f} s{first}',
        f'{"":34}{"mean":>9}{"p50":>9}{"p99":>9}{"min":>9}{"FPS":>8}',
    ]
    for label, key in (('model only', 'model_only'), ('full path (frame in, labels out)',
                                                      'full_path')):
        s = r[key]
        lines.append(f'{label:34}{s["mean_ms"]:9.2f}{s["p50_ms"]:9.2f}{s["p99_ms"]:9.2f}'
                     f'{s["min_ms"]:9.2f}{s["fps"]:8.1f}')
    lines.append(f'latency in ms over {r["full_path"]["iterations"]} iterations; model only '
                 f'ends at {r["model_only_output"]}')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; print the report (or JSON). Return 0, or 1 with a message."""
    args = build_parser().parse_args(argv)

    def log(message: str) -> None:
        sys.stderr.write(f'[benchmark] {message}\n')
        sys.stderr.flush()

    try:
        report = run(args, log)
    except RegsegError as exc:
        sys.stderr.write(f'benchmark: error: {exc}\n')
        return 1
    if args.json is None:
        print(format_report(report))
    else:
        text = json.dumps(report, indent=2) + '\n'
        if args.json == '-':
            sys.stdout.write(text)
        else:
            Path(os.path.expanduser(args.json)).write_text(text)
            print(format_report(report))
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
