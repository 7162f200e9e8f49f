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

"""A small progress bar for the command-line tools: count, rate and time left on stderr."""

import sys
import threading
import time
from typing import Optional, TextIO

BAR_WIDTH = 24


def clock(seconds: float) -> str:
    """Format a duration as ``M:SS`` or ``H:MM:SS``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


class Progress:
    """
    Count finished items; show done/total, a bar, items per second, elapsed and time left.

    On a terminal the line is redrawn in place, at most every ``interval`` seconds. Elsewhere
    (a log file, CI) one line is printed every ``log_interval`` seconds and one at :meth:`close`,
    so logs stay readable. Thread-safe: one thread may update while another calls :meth:`write`.
    """

    def __init__(self, total: Optional[int] = None, desc: str = '', unit: str = 'frames',
                 stream: Optional[TextIO] = None, interval: float = 0.2,
                 log_interval: float = 10.0, enabled: bool = True, initial: int = 0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, 'isatty', None)
        self.tty = bool(isatty and isatty())
        self.interval = interval if self.tty else log_interval
        self.count = self.initial = initial  # items done before (a resumed run)
        self.postfix = ''  # shown after the counts, e.g. 'loss 0.31, lr 0.05'
        self.start = time.monotonic()
        self._last_draw = self.start
        self._drawn = 0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.monotonic() - self.start

    @property
    def rate(self) -> float:
        """Mean items per second since the start (0 before the first item)."""
        elapsed, done = self.elapsed, self.count - self.initial
        return done / elapsed if elapsed > 0 and done else 0.0

    def render(self) -> str:
        """Return the progress line (without a line ending)."""
        elapsed, rate = self.elapsed, self.rate
        head = f'{self.desc}: ' if self.desc else ''
        tail = f', {self.postfix}' if self.postfix else ''
        if self.total:
            frac = min(1.0, self.count / self.total)
            filled = int(round(frac * BAR_WIDTH))
            bar = '#' * filled + '-' * (BAR_WIDTH - filled)
            left = (self.total - self.count) / rate if rate else None
            eta = f', {clock(left)} left' if left is not None and self.count < self.total else ''
            return (f'{head}[{bar}] {self.count}/{self.total} {self.unit} {frac:4.0%}, '
                    f'{rate:.2f} {self.unit}/s, {clock(elapsed)} elapsed{eta}{tail}')
        return (f'{head}{self.count} {self.unit}, {rate:.2f} {self.unit}/s, '
                f'{clock(elapsed)} elapsed{tail}')

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        line = self.render()
        if self.tty:
            pad = ' ' * max(0, self._drawn - len(line))
            self.stream.write('\r' + line + pad + ('\n' if final else ''))
            self._drawn = 0 if final else len(line)
        else:
            self.stream.write(line + '\n')
        self.stream.flush()
        self._last_draw = time.monotonic()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished items; redraw when the interval has passed."""
        with self._lock:
            self.count += n
            if time.monotonic() - self._last_draw >= self.interval:
                self._draw()

    def write(self, text: str) -> None:
        """Print a message line without tearing the bar (the bar is redrawn below it)."""
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write('\r' + ' ' * self._drawn + '\r')
                self._drawn = 0
            self.stream.write(text.rstrip('\n') + '\n')
            if self.tty and self.enabled and not self._closed:
                self._draw()
            else:
                self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._draw(final=True)

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
