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
RegSeg (Gao 2021, arXiv:2111.09957): D-block backbone and decoder, built from a variant table.

Module names follow the authors' released checkpoints, so their state_dicts load with strict key
matching. No rclpy below this package.
"""

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

from regseg_ros.core.errors import RegsegError
import torch
from torch import nn
from torch.nn import functional as F

# One D-block: (output channels, dilations of the 3x3 conv, stride).
BlockSpec = Tuple[int, Tuple[int, ...], int]


def _repeat(count: int, out_channels: int, dilations: Tuple[int, ...]) -> Tuple[BlockSpec, ...]:
    return tuple((out_channels, dilations, 1) for _ in range(count))


@dataclass(frozen=True)
class VariantConfig:
    """Architecture of one RegSeg variant."""

    group_width: int
    stage4: Tuple[BlockSpec, ...]
    stage8: Tuple[BlockSpec, ...]
    stage16: Tuple[BlockSpec, ...]
    # Decoder widths: head16, head8, head4, conv8, conv4.
    decoder: Tuple[int, int, int, int, int]
    # exp48 keeps its single 1/4 block un-wrapped (`body.stage4.conv1`), exp53 uses a Sequential.
    stage4_sequential: bool = True


VARIANTS: Dict[str, VariantConfig] = {
    'exp48_decoder26': VariantConfig(
        group_width=16,
        stage4=((48, (1,), 2),),
        stage4_sequential=False,
        stage8=((128, (1,), 2),) + _repeat(2, 128, (1,)),
        stage16=(
            ((256, (1,), 2),)
            + _repeat(1, 256, (1,))
            + _repeat(1, 256, (1, 2))
            + _repeat(4, 256, (1, 4))
            + _repeat(6, 256, (1, 14))
            + _repeat(1, 320, (1, 14))
        ),
        decoder=(128, 128, 8, 64, 64),
    ),
    'exp53_decoder29': VariantConfig(
        group_width=24,
        stage4=((48, (1,), 2),) + _repeat(1, 48, (1,)),
        stage8=((120, (1,), 2),) + _repeat(5, 120, (1,)),
        stage16=(
            ((336, (1,), 2),)
            + _repeat(1, 336, (1,))
            + _repeat(1, 336, (1, 2))
            + _repeat(4, 336, (1, 4))
            + _repeat(6, 336, (1, 14))
            + _repeat(1, 384, (1, 14))
        ),
        decoder=(256, 256, 16, 128, 128),
    ),
}

STEM_CHANNELS = 32


class ConvBnAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU, with keys ``conv`` and ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)


class DilatedConv(nn.Module):
    """
    Grouped 3x3 conv whose channel halves use different dilations (keys ``convs.N``).

    The split is two static slices, which export to ONNX as plain Slice ops.
    """

    def __init__(self, channels: int, dilations: Sequence[int], group_width: int, stride: int):
        super().__init__()
        if channels % len(dilations):
            raise RegsegError(
                f'cannot split {channels} channels into {len(dilations)} equal dilation groups')
        self.split = channels // len(dilations)
        self.convs = nn.ModuleList(
            nn.Conv2d(self.split, self.split, 3, stride, padding=d, dilation=d,
                      groups=self.split // group_width, bias=False)
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [conv(x[:, i * self.split:(i + 1) * self.split])
                 for i, conv in enumerate(self.convs)]
        return torch.cat(parts, dim=1)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation with bias convs ``conv1``/``conv2``."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, bottleneck, 1)
        self.conv2 = nn.Conv2d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.conv2(F.relu(self.conv1(s), inplace=True)))
        return x * s


class Shortcut(nn.Module):
    """Projection shortcut: optional 2x2 ceil-mode average pool, then 1x1 conv and BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x)))


class DBlock(nn.Module):
    """RegSeg's D-block: 1x1 -> dilated grouped 3x3 -> SE -> 1x1, plus a shortcut."""

    def __init__(self, in_ch: int, out_ch: int, dilations: Sequence[int], group_width: int,
                 stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        if len(dilations) == 1:
            d = dilations[0]
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, padding=d, dilation=d,
                                   groups=out_ch // group_width, bias=False)
        else:
            self.conv2 = DilatedConv(out_ch, dilations, group_width, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv3 = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch, in_ch // 4)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = Shortcut(in_ch, out_ch, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.se(y)
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def _stage(in_ch: int, specs: Sequence[BlockSpec], group_width: int) -> Tuple[nn.Sequential, int]:
    blocks = []
    for out_ch, dilations, stride in specs:
        blocks.append(DBlock(in_ch, out_ch, dilations, group_width, stride))
        in_ch = out_ch
    return nn.Sequential(*blocks), in_ch


class Backbone(nn.Module):
    """Three stages giving 1/4, 1/8 and 1/16 features (after the stride-2 stem)."""

    def __init__(self, cfg: VariantConfig):
        super().__init__()
        stage4, ch4 = _stage(STEM_CHANNELS, cfg.stage4, cfg.group_width)
        self.stage4 = stage4 if cfg.stage4_sequential else stage4[0]
        self.stage8, ch8 = _stage(ch4, cfg.stage8, cfg.group_width)
        self.stage16, ch16 = _stage(ch8, cfg.stage16, cfg.group_width)
        self.channels = (ch4, ch8, ch16)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x4 = self.stage4(x)
        x8 = self.stage8(x4)
        x16 = self.stage16(x8)
        return x4, x8, x16


class Decoder(nn.Module):
    """decoder26 / decoder29: add 1/16 into 1/8, concatenate with 1/4, classify at 1/4."""

    def __init__(self, channels: Tuple[int, int, int], widths: Tuple[int, int, int, int, int],
                 num_classes: int):
        super().__init__()
        ch4, ch8, ch16 = channels
        w16, w8, w4, w_conv8, w_conv4 = widths
        if w16 != w8:
            raise RegsegError(f'head16 ({w16}) and head8 ({w8}) widths must match to be added')
        self.head16 = ConvBnAct(ch16, w16)
        self.head8 = ConvBnAct(ch8, w8)
        self.head4 = ConvBnAct(ch4, w4)
        self.conv8 = ConvBnAct(w8, w_conv8, 3)
        self.conv4 = ConvBnAct(w_conv8 + w4, w_conv4, 3)
        self.classifier = nn.Conv2d(w_conv4, num_classes, 1)

    def forward(self, x4: torch.Tensor, x8: torch.Tensor, x16: torch.Tensor) -> torch.Tensor:
        x16 = self.head16(x16)
        x8 = self.head8(x8)
        x4 = self.head4(x4)
        x16 = F.interpolate(x16, size=x8.shape[-2:], mode='bilinear', align_corners=False)
        x8 = self.conv8(x8 + x16)
        x8 = F.interpolate(x8, size=x4.shape[-2:], mode='bilinear', align_corners=False)
        x4 = self.conv4(torch.cat((x8, x4), dim=1))
        return self.classifier(x4)


class RegSeg(nn.Module):
    """RegSeg network. ``forward`` returns logits at the input size (bilinear upsample)."""

    def __init__(self, variant: str, num_classes: int = 19):
        super().__init__()
        cfg = variant_config(variant)
        if num_classes < 1:
            raise RegsegError(f'num_classes must be at least 1, got {num_classes!r}')
        self.variant = variant
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, STEM_CHANNELS, 3, stride=2)
        self.body = Backbone(cfg)
        self.decoder = Decoder(self.body.channels, cfg.decoder, num_classes)

    def forward_quarter(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at 1/4 of the input size, before the final upsample."""
        return self.decoder(*self.body(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.forward_quarter(x)
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=False)


def variant_config(name: str) -> VariantConfig:
    """Return the config of a variant, or raise naming the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise RegsegError(
            f'unknown RegSeg model {name!r}: choose one of {sorted(VARIANTS)}') from None


def build_model(name: str, num_classes: int = 19) -> RegSeg:
    """Build a RegSeg variant (``exp48_decoder26`` or ``exp53_decoder29``) in eval mode."""
    return RegSeg(name, num_classes).eval()
