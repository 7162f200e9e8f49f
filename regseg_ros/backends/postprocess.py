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
Labels from 1/4-resolution logits without upsampling every pixel's 19 logits.

Bilinear interpolation is a convex combination of the four neighbouring 1/4-resolution logit
vectors, so where all four neighbours agree on the top class, every pixel between them has that
top class too. Only the cells on class boundaries are interpolated and reduced; the result equals
``argmax(interpolate(logits, x4, bilinear, align_corners=False))``.
"""

import torch
from torch.nn import functional as F

# Fractions along a 1/4-resolution cell of the four output pixels that fall into it.
_FRACTIONS = (0.125, 0.375, 0.625, 0.875)


def _dense(quarter: torch.Tensor, size) -> torch.Tensor:
    logits = F.interpolate(quarter, size=tuple(size), mode='bilinear', align_corners=False)
    return logits.argmax(1).to(torch.uint8)


def upsample_argmax(quarter: torch.Tensor, size, max_mixed: float = 0.35) -> torch.Tensor:
    """
    Return uint8 labels (N, H, W) of bilinearly x4-upsampled logits, computed sparsely.

    Falls back to the dense computation for other scales, or when more than ``max_mixed`` of
    the cells lie on class boundaries (then the sparse path saves nothing).
    """
    n, c, h, w = quarter.shape
    if tuple(size) != (4 * h, 4 * w) or c > 255:
        return _dense(quarter, size)
    padded = F.pad(quarter, (1, 1, 1, 1), mode='replicate')        # (N, C, h+2, w+2)
    top = padded.argmax(1).to(torch.uint8)                           # (N, h+2, w+2)
    a = top[:, :-1, :-1]
    mixed = (a != top[:, 1:, :-1]) | (a != top[:, :-1, 1:]) | (a != top[:, 1:, 1:])
    bi, ii, jj = torch.nonzero(mixed, as_tuple=True)
    if bi.numel() > max_mixed * mixed.numel():
        return _dense(quarter, size)
    # cell (i, j) covers output rows 4i-2 .. 4i+1 and columns 4j-2 .. 4j+1
    out = a.repeat_interleave(4, 1).repeat_interleave(4, 2)          # (N, 4h+4, 4w+4)
    if bi.numel():
        flat = padded.permute(0, 2, 3, 1).reshape(-1, c)             # one row per position
        idx = (bi * (h + 2) + ii) * (w + 2) + jj
        corners = torch.stack((flat[idx], flat[idx + 1], flat[idx + w + 2], flat[idx + w + 3]),
                              -1).float().reshape(-1, c, 2, 2)       # (K, C, row, col)
        f = torch.tensor(_FRACTIONS, device=quarter.device)
        weights = torch.stack((1 - f, f), 1)                         # (4, 2)
        values = weights @ corners @ weights.T                       # (K, C, 4, 4)
        out.view(n, h + 1, 4, w + 1, 4)[bi, ii, :, jj, :] = values.argmax(1).to(torch.uint8)
    return out[:, 2:-2, 2:-2]
