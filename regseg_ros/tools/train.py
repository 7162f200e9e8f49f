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
``train``: fine-tune RegSeg on labelled images with the authors' recipe.

One process: ``train DATASET --output runs/mine``. Several GPUs or machines:
``torchrun --nproc_per_node 4 $(which train) DATASET --output runs/mine`` (DDP, a
DistributedSampler per process; ``--batch-size`` is the batch of all processes together).
Writes ``last.pth`` (for ``--resume``), ``best.pth`` (best val mIoU) and ``history.json``;
the checkpoints carry the label set, so the node, ``segment_bag`` and ``evaluate`` take class
names, colours and drivable classes from them.
"""

import argparse
import dataclasses
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence
import warnings

from regseg_ros.core.errors import RegsegError
from regseg_ros.tools.cli import ArgumentParser, err, parse_size


def make_parser() -> argparse.ArgumentParser:
    """Build the ``train`` argument parser."""
    from regseg_ros.model import VARIANTS
    from regseg_ros.train.datasets import LAYOUTS
    from regseg_ros.train.recipe import add_recipe_arguments
    parser = ArgumentParser(
        prog='train',
        description="Fine-tune RegSeg on a labelled dataset with the authors' recipe (SGD, poly "
        'schedule with warm-up, random resize + crop + flip + reduced RandAugment, mixed '
        'precision on CUDA), evaluating val mIoU while training. Under torchrun it trains on '
        'several GPUs (or CPU processes with gloo).')
    parser.add_argument('dataset', metavar='DATASET_DIR', help='dataset root folder')
    parser.add_argument('--output', required=True, metavar='DIR',
                        help='folder for last.pth, best.pth and history.json')
    parser.add_argument('--layout', default='auto', choices=('auto',) + LAYOUTS,
                        help='dataset layout (default: detected; generic = classes.yaml + '
                        'images/<split>/ + labels/<split>/)')
    parser.add_argument('--classes', default=None, metavar='YAML',
                        help='classes YAML (default: DATASET_DIR/classes.yaml for generic, the '
                        "layout's own label set otherwise)")
    parser.add_argument('--train-split', default='train', help='(default: %(default)s)')
    parser.add_argument('--val-split', default='val', help='(default: %(default)s)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: cpu; '
                        'under torchrun cuda means cuda:LOCAL_RANK)')
    parser.add_argument('--resume', default=None, metavar='LAST_PTH',
                        help='continue the run saved in this last.pth (same dataset and recipe)')
    parser.add_argument('--stop-after', type=int, default=0, metavar='ITER',
                        help="stop after this iteration, keeping the whole run's schedule "
                        '(continue later with --resume); 0: run to the end')
    parser.add_argument('--cache-dir', default=None,
                        help='where downloaded weights are kept (default: ~/.cache/regseg_ros)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    add_recipe_arguments(parser, parse_size)
    parser.set_defaults(_variants=sorted(VARIANTS))
    return parser


def explicit_recipe_flags(argv: Optional[Sequence[str]]) -> List[str]:
    """Return the recipe fields the command line gives (not left at their defaults)."""
    from regseg_ros.train.recipe import Recipe
    names = {field.name for field in dataclasses.fields(Recipe)}
    parser = make_parser()
    for action in parser._actions:
        if action.dest in names:
            action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    return sorted(name for name in names if name in given)


def saved_recipe(resume: str) -> Dict[str, object]:
    """Return the recipe a ``last.pth`` was trained with (its own error when it has none)."""
    from regseg_ros.model.weights import META_KEY, read_training_dict
    meta = read_training_dict(resume).get(META_KEY)
    if not isinstance(meta, dict) or not isinstance(meta.get('recipe'), dict):
        raise RegsegError(f'--resume {resume!r} is not a last.pth written by train (it carries '
                          'no recipe): pass OUTPUT/last.pth, or start a new run with --weights')
    return meta['recipe']


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``train``; return 0 on success, 2 on a usage error, 1 on any other error."""
    parser = make_parser()
    args = parser.parse_or_code(argv)
    if isinstance(args, int):
        return args
    from regseg_ros.core.errors import RegsegWarning
    from regseg_ros.train.recipe import recipe_from_args, resumed_recipe
    from regseg_ros.train.trainer import train
    try:
        if args.model not in args._variants:
            raise RegsegError(f'--model {args.model!r}: choose one of {args._variants}')
        if args.stop_after < 0:
            raise RegsegError(f'--stop-after {args.stop_after} must be 0 or more')
        recipe = recipe_from_args(args)
        if args.resume:
            recipe = resumed_recipe(saved_recipe(args.resume), recipe,
                                    explicit_recipe_flags(argv))
        with warnings.catch_warnings():
            warnings.simplefilter('always', RegsegWarning)
            warnings.showwarning = lambda message, *_a, **_k: err(f'train: warning: {message}')
            summary = train(args.dataset, args.output, recipe, layout=args.layout,
                            classes=args.classes, train_split=args.train_split,
                            val_split=args.val_split, device=args.device, resume=args.resume,
                            stop_after=args.stop_after, cache_dir=args.cache_dir,
                            progress=not args.no_progress,
                            log=lambda m: err(f'train: {m}'))
    except RegsegError as exc:
        err(f'train: error: {exc}')
        return 1
    except KeyboardInterrupt:
        last = Path(args.output) / 'last.pth'
        err('train: interrupted; ' + (f'{last} is the last complete checkpoint: continue with '
                                      f'--resume {last}' if last.is_file() else
                                      'no checkpoint was written yet'))
        return 1
    import os
    if int(os.environ.get('RANK', '0')) == 0:
        best = summary['best_miou']
        print(f'trained {summary["iterations"]} of {summary["total_iterations"]} iterations '
              f'({summary["images_per_second"]:.2f} images/s)'
              + (f'; best val mIoU {100 * best:.2f} %' if best is not None else '')
              + f'; checkpoints in {summary["output"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
