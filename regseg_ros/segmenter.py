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

"""Backend + label set + post-processing: frames in, the node's output images out (no rclpy)."""

from typing import Collection, Dict, List, Optional, Sequence

import numpy as np
from regseg_ros.backends.base import Backend
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.imaging import blend, colorize, resize_rgb
from regseg_ros.core.labels import LabelSet

OUTPUTS = ('labels', 'drivable_mask', 'color', 'overlay', 'confidence')
RESOLUTIONS = ('input', 'network')


class Segmenter:
    """Turn RGB frames into label, drivable-mask, colour, overlay and confidence images."""

    def __init__(self, backend: Backend, label_set: LabelSet,
                 drivable_classes: Optional[Sequence[str]] = None, overlay_alpha: float = 0.5,
                 output_resolution: str = 'input'):
        if label_set.num_classes != backend.config.num_classes:
            raise RegsegError(
                f'label set {label_set.name!r} has {label_set.num_classes} classes but the model '
                f'has {backend.config.num_classes}: pick the label set the weights were trained '
                'on')
        if output_resolution not in RESOLUTIONS:
            raise RegsegError(f'output_resolution {output_resolution!r} is not one of '
                              f'{list(RESOLUTIONS)}')
        self.backend = backend
        self.label_set = label_set
        self.palette = label_set.palette()
        self.output_resolution = output_resolution
        self.set_drivable_classes(drivable_classes or label_set.default_drivable)
        self.set_overlay_alpha(overlay_alpha)

    def set_drivable_classes(self, names: Sequence[str]) -> None:
        """Choose the classes the drivable mask marks (raises on an unknown name)."""
        if not names:
            raise RegsegError('drivable_classes is empty: name at least one class, e.g. road')
        self._drivable_lut = self.label_set.drivable_lut(names)
        self.drivable_classes = tuple(names)

    def set_overlay_alpha(self, alpha: float) -> None:
        """Set the weight of the palette colours in the overlay (0 = camera only)."""
        if not 0.0 <= alpha <= 1.0:
            raise RegsegError(f'overlay_alpha {alpha!r} must be within [0, 1]')
        self.overlay_alpha = float(alpha)

    def _output_size(self, frame_size):
        if self.output_resolution == 'network':
            return tuple(self.backend.config.input_size)
        return tuple(frame_size[:2])

    def segment(self, images: Sequence[np.ndarray], outputs: Collection[str] = OUTPUTS,
                frame_sizes: Optional[Sequence[Sequence[int]]] = None
                ) -> List[Dict[str, np.ndarray]]:
        """
        Segment RGB frames; return, per frame, only the ``outputs`` asked for.

        ``frame_sizes`` gives each frame's (height, width) where the image was decoded smaller
        (a JPEG at half size): outputs are made at the frame's size all the same.
        """
        unknown = set(outputs) - set(OUTPUTS)
        if unknown:
            raise RegsegError(f'unknown outputs {sorted(unknown)}: choose from {list(OUTPUTS)}')
        frame_sizes = frame_sizes or [img.shape for img in images]
        sizes = [self._output_size(size) for size in frame_sizes]
        preds = self.backend.infer(images, sizes, with_confidence='confidence' in outputs)
        results = []
        for img, size, pred in zip(images, sizes, preds):
            out = {}
            if 'labels' in outputs:
                out['labels'] = pred.labels
            if 'drivable_mask' in outputs:
                out['drivable_mask'] = self._drivable_lut[pred.labels]
            if 'color' in outputs or 'overlay' in outputs:
                color = colorize(pred.labels, self.palette)
                if 'color' in outputs:
                    out['color'] = color
                if 'overlay' in outputs:
                    out['overlay'] = blend(resize_rgb(img, *size), color, self.overlay_alpha)
            if 'confidence' in outputs:
                out['confidence'] = pred.confidence
            results.append(out)
        return results
