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
The training recipe: the authors' defaults (``configs/cityscapes_1000epochs.yaml``) as a dataclass.

Every field is a command-line flag (``lr`` -> ``--lr``, ``crop_size`` -> ``--crop-size``), made
by :func:`add_recipe_arguments`; the recipe used is saved inside each checkpoint.
"""

import argparse
import dataclasses
import os
from typing import Dict, Mapping, Sequence, Tuple

from regseg_ros.core.errors import RegsegError

AUGMENTATIONS = ('randaug_reduced', 'flip', 'none')
LOSSES = ('ce', 'bootstrapped')


def _field(default, doc: str, **kw):
    return dataclasses.field(default=default, metadata={'doc': doc, **kw})


@dataclasses.dataclass
class Recipe:
    """Training settings; the defaults are the authors' Cityscapes recipe."""

    model: str = _field('exp48_decoder26', 'RegSeg variant')
    weights: str = _field('cityscapes_exp48_trainval',
                          "start from this checkpoint (path, URL or released name; '' = random "
                          'init); a classifier of another class count is re-initialised')
    epochs: int = _field(1000, 'passes over the training set')
    iterations: int = _field(0, 'optimizer steps in all; > 0 overrides --epochs')
    batch_size: int = _field(8, 'GLOBAL batch (all processes together; each takes an equal '
                             'share)')
    lr: float = _field(0.05, 'peak learning rate (SGD)')
    momentum: float = _field(0.9, 'SGD momentum')
    weight_decay: float = _field(1e-4, 'weight decay (none on BatchNorm parameters)')
    poly_power: float = _field(0.9, 'poly schedule power, per iteration')
    warmup_iterations: int = _field(3000, 'linear warm-up iterations')
    warmup_factor: float = _field(0.1, 'learning-rate factor at the start of the warm-up')
    crop_size: Tuple[int, int] = _field((768, 768), 'training crop WIDTHxHEIGHT', size=True)
    scale_min: int = _field(400, 'random resize: shortest short side, pixels')
    scale_max: int = _field(1600, 'random resize: longest short side, pixels')
    augment: str = _field('randaug_reduced', 'randaug_reduced (flip + 2 mild ops), flip or none',
                          choices=AUGMENTATIONS)
    randaug_ops: int = _field(2, 'ops per image drawn by randaug_reduced')
    class_uniform: float = _field(0.5, 'fraction of crops centred on a pixel of a random class '
                                  'present in the image')
    loss: str = _field('ce', 'ce (cross entropy, ignore 255) or bootstrapped', choices=LOSSES)
    bootstrap_threshold: float = _field(0.3, 'bootstrapped CE: keep pixels with loss above this '
                                        '(at least batch*crop/16 pixels)')
    amp: bool = _field(True, 'mixed precision (fp16 autocast) on CUDA')
    sync_bn: bool = _field(False, 'SyncBatchNorm across processes')
    eval_every: int = _field(10, 'evaluate (val mIoU) every N epochs, and at the end')
    eval_short_side: int = _field(0, "evaluate with the short side resized to this (0 = images' "
                                  'own size; the authors use 1024 on Cityscapes)')
    workers: int = _field(min(4, os.cpu_count() or 1),
                          'data-loading worker processes per training process (at most one '
                          'per core; 0 loads in the training process)')
    seed: int = _field(0, 'seed of initialisation, sampling and augmentation')

    def validate(self) -> 'Recipe':
        """Raise one RegsegError naming the flag of an impossible value."""
        def need(ok, flag, value, rule):
            if not ok:
                raise RegsegError(f'--{flag} {value}: {rule}')
        need(self.epochs >= 1, 'epochs', self.epochs, 'must be at least 1')
        need(self.iterations >= 0, 'iterations', self.iterations, 'must be 0 or more')
        need(self.batch_size >= 1, 'batch-size', self.batch_size, 'must be at least 1')
        need(self.lr > 0, 'lr', self.lr, 'must be greater than 0')
        need(0 <= self.momentum < 1, 'momentum', self.momentum, 'must be in [0, 1)')
        need(self.weight_decay >= 0, 'weight-decay', self.weight_decay, 'must be 0 or more')
        need(self.warmup_iterations >= 0, 'warmup-iterations', self.warmup_iterations,
             'must be 0 or more')
        need(0 < self.warmup_factor <= 1, 'warmup-factor', self.warmup_factor,
             'must be in (0, 1]')
        need(1 <= self.scale_min <= self.scale_max, 'scale-min', self.scale_min,
             f'must be at least 1 and at most --scale-max ({self.scale_max})')
        need(0 <= self.class_uniform <= 1, 'class-uniform', self.class_uniform,
             'must be in [0, 1]')
        need(self.eval_every >= 1, 'eval-every', self.eval_every, 'must be at least 1')
        need(self.workers >= 0, 'workers', self.workers, 'must be 0 or more')
        need(self.randaug_ops >= 0, 'randaug-ops', self.randaug_ops, 'must be 0 or more')
        return self

    def to_dict(self) -> Dict[str, object]:
        """Plain values (stored in checkpoints)."""
        data = dataclasses.asdict(self)
        data['crop_size'] = list(self.crop_size)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> 'Recipe':
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if 'crop_size' in values:
            values['crop_size'] = tuple(values['crop_size'])
        return cls(**values)


# Fields a resumed run may change: they do not change what is learnt.
RESUME_MAY_CHANGE = frozenset(('workers',))


def resumed_recipe(saved: Mapping, current: 'Recipe', explicit: Sequence[str]) -> 'Recipe':
    """
    Return the recipe a resumed run continues with: the run's own (saved in its ``last.pth``).

    ``explicit`` names the recipe fields given on the command line: one that differs from the
    run's value is an error naming the flag (a resumed run keeps its recipe), except
    ``RESUME_MAY_CHANGE``, which are taken from the command line.
    """
    recipe = Recipe.from_dict(saved)
    changed = []
    for name in explicit:
        ours, theirs = getattr(current, name), getattr(recipe, name)
        if name in RESUME_MAY_CHANGE:
            recipe = dataclasses.replace(recipe, **{name: ours})
        elif ours != theirs:
            changed.append(f'{flag(name)} {_shown(name, ours)} '
                           f'(the run has {_shown(name, theirs)})')
    if changed:
        raise RegsegError(f'--resume continues a run with its own recipe: {"; ".join(changed)}. '
                          'Drop these flags, or start a new run (another --output) to change them')
    return recipe.validate()


def _shown(name: str, value) -> str:
    return f'{value[0]}x{value[1]}' if name == 'crop_size' else str(value)


def flag(name: str) -> str:
    """Command-line flag of a recipe field: ``crop_size`` -> ``--crop-size``."""
    return '--' + name.replace('_', '-')


def add_recipe_arguments(parser: argparse.ArgumentParser, parse_size) -> None:
    """Add one flag per recipe field (defaults shown); ``parse_size`` reads WIDTHxHEIGHT."""
    group = parser.add_argument_group("recipe (defaults: the authors' Cityscapes recipe)")
    for field in dataclasses.fields(Recipe):
        meta, default = field.metadata, field.default
        help_text = meta['doc'] + ' (default: %(default)s)'
        if field.type in (bool, 'bool'):
            group.add_argument(flag(field.name), dest=field.name,
                               action=argparse.BooleanOptionalAction, default=default,
                               help=meta['doc'] + f' (default: {"on" if default else "off"})')
        elif meta.get('size'):
            group.add_argument(flag(field.name), dest=field.name, type=parse_size,
                               default=(default[1], default[0]), metavar='WxH',
                               help=meta['doc'] + f' (default: {default[0]}x{default[1]})')
        else:
            kind = type(default)
            group.add_argument(flag(field.name), dest=field.name, type=kind, default=default,
                               choices=meta.get('choices'), help=help_text)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """Build the recipe from parsed flags (``crop_size`` arrives as (height, width))."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)}
    height, width = values['crop_size']
    values['crop_size'] = (width, height)
    return Recipe(**values).validate()
