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
Render the bundled sample driving sequence (regseg_ros/data/sample/frame_NNN.jpg).

A synthetic forward-facing camera drives down a street: sky, buildings, sidewalks, a road with
lane markings, trees and cars that move between frames. Deterministic; re-run to regenerate.
"""

from pathlib import Path
import sys

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent.parent / 'regseg_ros' / 'data' / 'sample'
H, W, FRAMES = 512, 1024, 24


def frame(t: int, rng: np.random.Generator) -> np.ndarray:
    """Draw frame ``t`` (BGR, for OpenCV)."""
    img = np.zeros((H, W, 3), np.uint8)
    horizon = int(H * 0.45)
    sky = np.linspace(235, 170, horizon, dtype=np.uint8)
    img[:horizon] = np.stack([sky, sky - 40, sky - 110], axis=1)[:, None]  # BGR: light blue
    # buildings along both sides, drifting outwards as the car moves forward
    for side in (-1, 1):
        for k in range(6):
            x0 = W // 2 + side * (60 + ((k * 90 + t * 12) % 560))
            width, height = 70 + (k * 37) % 60, 120 + (k * 53) % 140
            shade = 80 + (k * 29) % 90
            x1 = x0 + side * width
            cv2.rectangle(img, (min(x0, x1), horizon - height), (max(x0, x1), horizon + 20),
                          (shade, shade - 10, shade - 20), -1)
    # ground: sidewalks then the road trapezoid with lane marks
    img[horizon:] = (150, 150, 160)
    road = np.array([[W // 2 - 40, horizon], [W // 2 + 40, horizon], [W - 60, H], [60, H]])
    cv2.fillPoly(img, [road], (80, 70, 75))
    for k in range(8):
        y = horizon + ((k * 40 + t * 9) % (H - horizon))
        half = 2 + (y - horizon) // 30
        cv2.rectangle(img, (W // 2 - half, y), (W // 2 + half, min(H - 1, y + 8 + half)),
                      (230, 230, 230), -1)
    # trees and cars
    for side in (-1, 1):
        x = W // 2 + side * (300 + (t * 15) % 200)
        cv2.circle(img, (x, horizon - 40), 45, (40, 120, 50), -1)
        cv2.rectangle(img, (x - 6, horizon - 5), (x + 6, horizon + 40), (30, 60, 90), -1)
    for k, colour in enumerate(((40, 40, 170), (150, 90, 30))):
        cx = W // 2 + (-120 if k == 0 else 90) + (t * (3 if k else -2))
        cy = horizon + 90 + k * 70 + t * 2
        size = 60 + k * 30 + t
        cv2.rectangle(img, (cx - size, cy - size // 2), (cx + size, cy + size // 3), colour, -1)
        cv2.rectangle(img, (cx - size // 2, cy - size), (cx + size // 2, cy - size // 2),
                      tuple(int(c * 0.7) for c in colour), -1)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2021)
    for t in range(FRAMES):
        cv2.imwrite(str(OUT / f'frame_{t:03d}.jpg'), frame(t, rng), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f'wrote {FRAMES} frames to {OUT}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
