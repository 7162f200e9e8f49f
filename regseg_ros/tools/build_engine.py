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
Build the TensorRT engine for one model, precision and network size, once, with progress.

A vehicle runs this once after installing (or after a TensorRT / JetPack upgrade), so the node
starts in seconds instead of building for minutes::

    ros2 run regseg_ros build_engine --weights cityscapes_exp48_trainval --precision fp16 \
        --network-size 2048x1024 [--workspace-mb 1024] [--output /opt/regseg/front.engine]

The engine goes to the engine cache (``~/.cache/regseg_ros/engines``, where the node's
``tensorrt`` backend finds it with the same settings), and is copied to ``--output`` if given
(use it with the backend option ``engine_path``). Exit status 0 on success, 1 on any error.
"""

import argparse
import os
from pathlib import Path
import shutil
import sys
import time
from typing import Optional, Sequence

from regseg_ros.core.errors import RegsegError
from regseg_ros.tools.cli import format_size, parse_size


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    from regseg_ros.core.labels import LABEL_SETS
    from regseg_ros.model import VARIANTS
    parser = argparse.ArgumentParser(
        prog='build_engine', description='Build (or find in the cache) the TensorRT engine of '
        'a RegSeg checkpoint for one precision and network size.')
    parser.add_argument('--model', default='exp48_decoder26', choices=sorted(VARIANTS),
                        help='RegSeg variant of the checkpoint (default: %(default)s)')
    parser.add_argument('--weights', default='',
                        help='checkpoint: a path, an https:// URL or a released checkpoint name')
    parser.add_argument('--allow-untrained', action='store_true',
                        help='build random weights when --weights is empty (benchmarks only)')
    parser.add_argument('--label-set', default=None, choices=sorted(LABEL_SETS),
                        help='classes the checkpoint predicts (default: those a checkpoint '
                        'written by train carries, else cityscapes)')
    parser.add_argument('--precision', default='fp16', choices=('fp32', 'fp16', 'int8'),
                        help='engine precision (default: %(default)s; int8 needs '
                        '--int8-calibration-dir and TensorRT 8.5-10.x)')
    parser.add_argument('--network-size', type=parse_size, default=(1024, 2048),
                        metavar='WxH',
                        help='network input size, width x height (default: 2048x1024)')
    parser.add_argument('--device', default='cuda', help='cuda or cuda:N (default: cuda)')
    parser.add_argument('--workspace-mb', type=int, default=None, metavar='N',
                        help='cap the builder workspace at N MiB (Jetson: e.g. 1024)')
    parser.add_argument('--int8-calibration-dir', default=None, metavar='DIR',
                        help='folder of camera images (jpg/png) for int8 calibration')
    parser.add_argument('--timing-cache', default=None, metavar='PATH',
                        help='TensorRT timing cache file (default: one per TensorRT version '
                        'and GPU in the engine cache)')
    parser.add_argument('--cache-dir', default=None,
                        help='where weights and engines are kept (default: ~/.cache/regseg_ros)')
    parser.add_argument('--output', default=None, metavar='PATH',
                        help='also copy the engine here (plus PATH with .json, its metadata)')
    return parser


def _log(message: str) -> None:
    sys.stderr.write(f'[build_engine] {message}\n')
    sys.stderr.flush()


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f'.{target.name}.tmp')
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build the engine; print where it is. Return 0, or 1 with a message on stderr."""
    args = build_parser().parse_args(argv)
    try:
        from regseg_ros.backends.trt_build import import_tensorrt
        trt = import_tensorrt()  # before loading any weights: fail fast and clearly
        from regseg_ros.backends import BackendConfig, create_backend
        from regseg_ros.model.weights import resolve_label_set
        options = {'workspace_mb': args.workspace_mb,
                   'int8_calibration_dir': args.int8_calibration_dir,
                   'timing_cache': args.timing_cache}
        label_set = resolve_label_set(args.label_set, args.weights, args.cache_dir)
        config = BackendConfig(
            model=args.model, num_classes=label_set.num_classes,
            weights=args.weights, allow_untrained=args.allow_untrained, device=args.device,
            precision=args.precision, input_size=tuple(args.network_size),
            cache_dir=args.cache_dir, options={k: v for k, v in options.items() if v})
        if args.precision == 'int8' and not args.int8_calibration_dir:
            raise RegsegError('--precision int8 needs --int8-calibration-dir (a folder of a '
                              'few hundred camera images), or use --precision fp16')
        _log(f'TensorRT {trt.__version__}: {args.model} {args.precision} '
             f'{format_size(args.network_size)} on {args.device}')
        start = time.monotonic()
        backend = create_backend('tensorrt', config, log=_log)
        try:
            engine = Path(backend.engine_file)
            how = ('built' if backend.engine_source == 'built' else 'already in the cache')
            if args.output:
                target = Path(args.output).expanduser()
                if target.resolve() != engine.resolve():
                    _copy(engine, target)
                    meta = engine.with_suffix('.json')
                    if meta.is_file():
                        _copy(meta, target.with_suffix('.json'))
                    engine = target
        finally:
            backend.close()
    except RegsegError as exc:
        sys.stderr.write(f'build_engine: error: {exc}\n')
        return 1
    except OSError as exc:
        sys.stderr.write(f'build_engine: error: {exc}\n')
        return 1
    print(f'engine: {engine} ({how}, {time.monotonic() - start:.0f} s)')
    if args.output:
        print(f'use it with the backend option engine_path: {engine}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
