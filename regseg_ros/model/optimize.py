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

"""Inference-time rewrites of a loaded RegSeg: BatchNorm folding."""

import copy

from regseg_ros.model.regseg import DBlock, DilatedConv, RegSeg
import torch
from torch import nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice) -> None:
    """Fold the ``channels`` slice of ``bn`` into ``conv`` (weights and a new bias)."""
    scale = bn.weight[channels] / torch.sqrt(bn.running_var[channels] + bn.eps)
    shift = bn.bias[channels] - bn.running_mean[channels] * scale
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias * scale + shift)


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if isinstance(conv, DilatedConv):
        for i, part in enumerate(conv.convs):
            _fold(part, bn, slice(i * conv.split, (i + 1) * conv.split))
    else:
        _fold(conv, bn, slice(None))
    setattr(parent, bn_name, nn.Identity())


@torch.no_grad()
def fold_batchnorm(model: RegSeg) -> RegSeg:
    """Return an eval-mode copy of ``model`` with every BatchNorm folded into its conv."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, DBlock):
            for i in (1, 2, 3):
                _fold_pair(module, f'conv{i}', f'bn{i}')
        elif hasattr(module, 'conv') and isinstance(getattr(module, 'bn', None), nn.BatchNorm2d):
            _fold_pair(module, 'conv', 'bn')  # ConvBnAct and Shortcut
    return model
