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
Training augmentation (the authors' recipe), numpy/OpenCV on RGB uint8 images.

Random resize of the short side within [scale_min, scale_max], a crop (padded with the mean
colour, label 255, where the image is smaller; a ``class_uniform`` share of crops is centred on
a pixel of a random class present), a horizontal flip with probability 0.5 and
``randaug_reduced``: ``randaug_ops`` ops drawn from auto-contrast, equalize, rotate (within
+-6 degrees), colour, contrast, brightness and sharpness (enhancement factors within
[0.75, 1.25]). Every random choice comes from the ``rng`` passed in, so a sample's augmentation
depends only on (seed, epoch, index), not on the process or worker that draws it.
"""

from typing import Tuple

import cv2
import numpy as np
from regseg_ros.core.labels import IGNORE_ID

MEAN = np.array((0.485, 0.456, 0.406), np.float32)
STD = np.array((0.229, 0.224, 0.225), np.float32)
PAD_COLOR = tuple(int(round(v * 255)) for v in MEAN)
MAX_ROTATION = 6.0
ENHANCE_RANGE = (0.75, 1.25)

Sample = Tuple[np.ndarray, np.ndarray]


def random_resize(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                  scale_min: int, scale_max: int) -> Sample:
    """Resize so the short side is a random length in [scale_min, scale_max]."""
    short = int(rng.integers(scale_min, scale_max + 1))
    return resize_short_side(rgb, label, short)


def resize_short_side(rgb: np.ndarray, label: np.ndarray, short: int) -> Sample:
    """Resize image (bilinear) and label (nearest) so the short side is ``short`` pixels."""
    height, width = label.shape[:2]
    scale = short / min(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if size == (width, height):
        return rgb, label
    return (cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


def random_crop(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                crop_w: int, crop_h: int, class_uniform: float) -> Sample:
    """Crop ``crop_w`` x ``crop_h``; pad first (mean colour / 255) where the image is smaller."""
    height, width = label.shape[:2]
    pad_h, pad_w = max(0, crop_h - height), max(0, crop_w - width)
    if pad_h or pad_w:
        rgb = cv2.copyMakeBorder(rgb, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=PAD_COLOR)
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                   value=IGNORE_ID)
        height, width = label.shape[:2]
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    if class_uniform > 0 and rng.random() < class_uniform:
        present = np.unique(label)
        present = present[present != IGNORE_ID]
        if present.size:
            cls = present[int(rng.integers(0, present.size))]
            ys, xs = np.nonzero(label == cls)
            pick = int(rng.integers(0, ys.size))
            top = int(np.clip(ys[pick] - crop_h // 2, 0, height - crop_h))
            left = int(np.clip(xs[pick] - crop_w // 2, 0, width - crop_w))
    return (rgb[top:top + crop_h, left:left + crop_w],
            label[top:top + crop_h, left:left + crop_w])


def _blend(image: np.ndarray, other: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance: ``other + factor * (image - other)``, clipped to uint8."""
    out = other.astype(np.float32) + factor * (image.astype(np.float32) - other)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _autocontrast(rgb, label, rng):
    lo = rgb.reshape(-1, 3).min(0).astype(np.float32)
    hi = rgb.reshape(-1, 3).max(0).astype(np.float32)
    scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1), 1.0)
    offset = np.where(hi > lo, lo, 0.0)
    return np.clip((rgb - offset) * scale + 0.5, 0, 255).astype(np.uint8), label


def _equalize(rgb, label, rng):
    return np.dstack([cv2.equalizeHist(np.ascontiguousarray(rgb[..., c]))
                      for c in range(3)]), label


def _rotate(rgb, label, rng):
    angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    height, width = label.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    rgb = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_COLOR)
    label = cv2.warpAffine(label, matrix, (width, height), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_ID)
    return rgb, label


def _factor(rng):
    return float(rng.uniform(*ENHANCE_RANGE))


def _color(rgb, label, rng):
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
    return _blend(rgb, np.broadcast_to(grey, rgb.shape), _factor(rng)), label


def _contrast(rgb, label, rng):
    mean = float(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).mean())
    return _blend(rgb, np.full_like(rgb, int(mean + 0.5)), _factor(rng)), label


def _brightness(rgb, label, rng):
    return _blend(rgb, np.zeros_like(rgb), _factor(rng)), label


def _sharpness(rgb, label, rng):
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
    smooth = cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return _blend(rgb, smooth, _factor(rng)), label


RANDAUG_REDUCED = {'autocontrast': _autocontrast, 'equalize': _equalize, 'rotate': _rotate,
                   'color': _color, 'contrast': _contrast, 'brightness': _brightness,
                   'sharpness': _sharpness}


def randaug_reduced(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                    ops: int = 2) -> Sample:
    """Apply ``ops`` ops drawn (without repeats) from :data:`RANDAUG_REDUCED`."""
    names = list(RANDAUG_REDUCED)
    for i in rng.choice(len(names), size=min(ops, len(names)), replace=False):
        rgb, label = RANDAUG_REDUCED[names[int(i)]](rgb, label, rng)
    return rgb, label


def augment(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator, recipe) -> Sample:
    """Apply the recipe's training augmentation to one sample."""
    rgb, label = random_resize(rgb, label, rng, recipe.scale_min, recipe.scale_max)
    crop_w, crop_h = recipe.crop_size
    rgb, label = random_crop(rgb, label, rng, crop_w, crop_h, recipe.class_uniform)
    if recipe.augment != 'none' and rng.random() < 0.5:
        rgb, label = rgb[:, ::-1], label[:, ::-1]
    if recipe.augment == 'randaug_reduced':
        rgb, label = randaug_reduced(np.ascontiguousarray(rgb), np.ascontiguousarray(label),
                                     rng, recipe.randaug_ops)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(label)


def normalize(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) normalised with the ImageNet mean and std."""
    return np.ascontiguousarray(((rgb.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1))
