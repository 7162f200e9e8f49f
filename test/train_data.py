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
A small learnable dataset for the training tests: coloured shapes on textured backgrounds.

Four classes: 0 background (grey-brown noise and stripes), 1 disc (red), 2 box (green),
3 triangle (blue); colours are jittered per shape, a few pixels on shape borders are 255
(ignore). Written in the generic layout the ``train`` tool reads::

    ROOT/classes.yaml
    ROOT/images/<split>/NAME.png   (RGB)
    ROOT/labels/<split>/NAME.png   (mono8 class ids, 255 = ignore)
"""

from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np

CLASSES = (
    ('background', (90, 80, 60), True),
    ('disc', (220, 40, 40), False),
    ('box', (40, 200, 60), False),
    ('triangle', (40, 60, 220), False),
)

CLASSES_YAML = """\
# classes of the synthetic shapes dataset (test/train_data.py)
name: shapes
classes:
""" + ''.join(f'  - {{name: {n}, color: [{c[0]}, {c[1]}, {c[2]}], drivable: {str(d).lower()}}}\n'
              for n, c, d in CLASSES)


def make_sample(rng: np.random.Generator, height: int = 96,
                width: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """Return one (RGB uint8 image, uint8 label) pair."""
    base = np.array(CLASSES[0][1], np.float32) + rng.uniform(-25, 25, 3)
    noise = rng.normal(0, 18, (height, width, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = 15 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    image = base + noise + stripes[..., None]
    label = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(2, 5)):
        cls = int(rng.integers(1, 4))
        mask = np.zeros((height, width), np.uint8)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(height, width) // 5, min(height, width) // 3))
        if cls == 1:
            cv2.circle(mask, (cx, cy), size, 1, -1)
        elif cls == 2:
            cv2.rectangle(mask, (cx - size, cy - size // 2), (cx + size, cy + size // 2), 1, -1)
        else:
            pts = np.array([[cx, cy - size], [cx - size, cy + size], [cx + size, cy + size]])
            cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
        colour = np.array(CLASSES[cls][1], np.float32) + rng.uniform(-20, 20, 3)
        shade = colour + rng.normal(0, 10, (height, width, 3)).astype(np.float32)
        image[mask > 0] = shade[mask > 0]
        label[mask > 0] = cls
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
        label[(edge > 0) & (rng.random((height, width)) < 0.3)] = 255
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_dataset(root, splits: Sequence[Tuple[str, int]] = (('train', 48), ('val', 16)),
                  height: int = 96, width: int = 128, seed: int = 0) -> Path:
    """Write the dataset under ``root`` in the generic layout; return ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / 'classes.yaml').parent.mkdir(parents=True, exist_ok=True)
    (root / 'classes.yaml').write_text(CLASSES_YAML)
    for split, count in splits:
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'labels' / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = make_sample(rng, height, width)
            cv2.imwrite(str(root / 'images' / split / f'shape_{i:04d}.png'), image[..., ::-1])
            cv2.imwrite(str(root / 'labels' / split / f'shape_{i:04d}.png'), label)
    return root
