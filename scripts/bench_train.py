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
Benchmark ``train``: images/s and time to reach a val mIoU on the synthetic shapes dataset.

Writes the dataset of ``test/train_data.py`` (coloured shapes on textured backgrounds, 4
classes, 128x96) to a temporary folder, trains from random weights with the given crop and
batch, evaluating every ``--eval-every`` epochs, and prints the machine (CPU model, cores, GPU),
images/s, the val mIoU after each evaluation and the wall time to reach ``--target``. Example::

    python scripts/bench_train.py --iterations 80 --crop-size 64x64
    python scripts/bench_train.py --device cuda --iterations 300 --crop-size 256x256
    (add --scale-min 288 --scale-max 480 for crops of that size)
"""

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'test'))
sys.path.insert(0, str(ROOT))


def machine(device: str) -> str:
    """Name the CPU (/proc/cpuinfo model name), the core count and the GPU if used."""
    from regseg_ros.tools.benchmark import cpu_name
    text = f'{cpu_name()}, {os.cpu_count()} cores'
    if device.startswith('cuda'):
        import torch
        text += f', GPU {torch.cuda.get_device_name(0)}'
    return text


def main() -> int:
    """Run the benchmark; print the figures (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iterations', type=int, default=80)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop-size', default='64x64')
    parser.add_argument('--scale-min', type=int, default=72)
    parser.add_argument('--scale-max', type=int, default=120)
    parser.add_argument('--eval-every', type=int, default=2, help='epochs (6 iterations each)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--target', type=float, default=0.9)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    import train_data
    from regseg_ros.train.recipe import Recipe
    from regseg_ros.train.trainer import train
    width, height = (int(v) for v in args.crop_size.lower().split('x'))
    with tempfile.TemporaryDirectory() as tmp:
        data = train_data.write_dataset(Path(tmp) / 'shapes')
        recipe = Recipe(weights='', iterations=args.iterations, batch_size=args.batch_size,
                        crop_size=(width, height), scale_min=args.scale_min,
                        scale_max=args.scale_max, warmup_iterations=5, workers=0,
                        eval_every=args.eval_every)
        start = time.monotonic()
        summary = train(data, Path(tmp) / 'out', recipe, device=args.device, progress=False,
                        log=lambda m: None)
        wall = time.monotonic() - start
        history = json.loads((Path(tmp) / 'out' / 'history.json').read_text())
    # wall time at each evaluation, from the per-iteration rate (evaluations are included)
    per_iteration = wall / summary['iterations']
    reached = next((e for e in history['evals'] if e['miou'] >= args.target), None)
    import torch
    print(f'machine: {machine(args.device)}; torch threads {torch.get_num_threads()}')
    print(f'train: exp48_decoder26 from random weights, batch {args.batch_size}, crop '
          f'{width}x{height}, {summary["iterations"]} iterations in {wall:.1f} s: '
          f'{summary["images_per_second"]:.2f} images/s')
    for e in history['evals']:
        print(f'  iteration {e["iteration"]:4d} (~{e["iteration"] * per_iteration:6.1f} s): '
              f'val mIoU {100 * e["miou"]:.2f} %')
    if reached:
        print(f'val mIoU >= {args.target} after {reached["iteration"]} iterations, '
              f'~{reached["iteration"] * per_iteration:.0f} s')
    else:
        print(f'val mIoU never reached {args.target}')
    if args.json:
        print(json.dumps({'machine': machine(args.device), 'seconds': wall,
                          'images_per_second': summary['images_per_second'],
                          'evals': history['evals']}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
