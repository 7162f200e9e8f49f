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

"""Rolling rate and latency statistics for diagnostics and summaries."""

import collections
from typing import Deque, Iterable

import numpy as np


class RateWindow:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._times: Deque[float] = collections.deque()

    def add(self, t: float) -> None:
        self._times.append(t)

    def rate(self, now: float) -> float:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0


class SampleWindow:
    """The last ``size`` samples of a quantity, with mean and percentiles (0 when empty)."""

    def __init__(self, size: int = 200):
        self._samples: Deque[float] = collections.deque(maxlen=size)

    def add(self, value: float) -> None:
        self._samples.append(value)

    def extend(self, values: Iterable[float]) -> None:
        self._samples.extend(values)

    def __len__(self) -> int:
        return len(self._samples)

    def mean(self) -> float:
        return float(np.mean(self._samples)) if self._samples else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self._samples, q)) if self._samples else 0.0
