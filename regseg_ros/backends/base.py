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

"""The interface every inference backend implements."""

import abc
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from regseg_ros.core.errors import RegsegError


@dataclass(frozen=True)
class BackendConfig:
    """What a backend needs to load a RegSeg and run it."""

    model: str = 'exp48_decoder26'
    num_classes: int = 19
    weights: str = ''                 # path, https:// URL or released checkpoint name
    allow_untrained: bool = False     # random weights when ``weights`` is empty (demos, tests)
    device: str = 'cpu'               # cpu, cuda, cuda:N
    precision: str = 'fp32'           # fp32, fp16 (fp16 needs CUDA)
    input_size: Tuple[int, int] = (512, 1024)   # network input (height, width)
    cache_dir: Optional[str] = None   # downloads and engines
    options: Dict[str, object] = field(default_factory=dict)  # backend-specific extras


@dataclass
class Prediction:
    """One frame's result: uint8 class ids, and the top-class probability x 255 if asked."""

    labels: np.ndarray
    confidence: Optional[np.ndarray] = None


class Backend(abc.ABC):
    """Load, warm up, infer uint8 RGB frames into uint8 labels, close."""

    name = 'base'
    # Seconds the network itself took in the last ``infer`` (None where not measured), so
    # callers can tell the model's time from their own overhead.
    last_forward_s = None

    def __init__(self, config: BackendConfig):
        self.config = config

    @abc.abstractmethod
    def load(self) -> None:
        """Build or load the network; raise RegsegError naming the setting and fix on failure."""

    def warmup(self, iterations: int = 2) -> None:
        """Run a few frames so the first real frame pays no one-time costs."""
        h, w = self.config.input_size
        frame = np.zeros((h, w, 3), np.uint8)
        for _ in range(iterations):
            self.infer([frame], [(h, w)], with_confidence=True)

    @abc.abstractmethod
    def infer(self, images: Sequence[np.ndarray], output_sizes: Sequence[Tuple[int, int]],
              with_confidence: bool = False) -> List[Prediction]:
        """Segment (H, W, 3) uint8 RGB frames; labels come back at each ``output_sizes`` entry."""

    def infer_protocol(self, images: Sequence[np.ndarray],
                       output_sizes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
        """
        Segment frames as the RegSeg authors evaluate: argmax of bilinearly resized logits.

        The logits at the network input size (the network's own final bilinear upsample) are
        resized bilinearly (align_corners=False) to each ``output_sizes`` entry and the argmax is
        taken there; :meth:`infer` takes it at the network size and resizes the labels (faster,
        it differs on class boundaries when the sizes differ). Returns uint8 (H, W) class ids.
        """
        raise RegsegError(f'backend {self.name!r} is not supported for evaluate (it returns no '
                          "logits for the authors' protocol): use --backend torch")

    def forward_only(self) -> None:
        """Run the bare network once on a prepared input (for benchmarks)."""
        raise NotImplementedError

    def describe(self) -> Dict[str, str]:
        """Backend, device and precision, for logs and diagnostics."""
        return {'backend': self.name, 'device': self.config.device,
                'precision': self.config.precision, 'model': self.config.model}

    def close(self) -> None:
        """Release device memory and handles."""
