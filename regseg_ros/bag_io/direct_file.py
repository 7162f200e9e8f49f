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
A file written front to back with ``O_DIRECT``, past the page cache (:class:`_DirectFile`).

The MCAP writer hands its chunks to it buffer by buffer; where the OS or file system refuses
``O_DIRECT`` it carries on as an ordinary file.
"""

import errno
import mmap
import os

DIRECT_ALIGN = 4096                    # O_DIRECT offsets, lengths and buffers: whole pages
STAGE_BYTES = 4 * 2**20                # _DirectFile's staging buffer (a multiple of the above)


def _set_o_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; return whether it is on now."""
    try:
        import fcntl  # POSIX only, like O_DIRECT itself
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except (ImportError, AttributeError, OSError):
        return False
    return on


class _DirectFile:
    """
    A file written front to back with ``O_DIRECT``: bytes go to the disk, not the page cache.

    Writes are gathered in a page-aligned staging buffer and handed to the kernel
    ``STAGE_BYTES`` at a time; ``close`` writes the last, padded block and truncates the file to
    the bytes written. Only ``write``, ``tell`` and ``close``: what rosbags' MCAP storage uses.
    Where the OS, file system or a write refuses ``O_DIRECT``, the file carries on as an
    ordinary one (``direct`` turns False), so the bytes on disk are the same either way.
    """

    def __init__(self, path, head: bytes = b'') -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, 'O_CLOEXEC', 0))
        self.direct = _set_o_direct(self._fd, True)
        self._stage = mmap.mmap(-1, STAGE_BYTES)  # anonymous maps start on a page boundary
        self._filled = 0
        self._written = 0
        self.write(head)

    def write(self, data) -> int:
        """Append ``data`` (any bytes-like object); return its length."""
        view = memoryview(data).cast('B')
        size, pos = view.nbytes, 0
        while pos < size:
            take = min(size - pos, STAGE_BYTES - self._filled)
            self._stage[self._filled:self._filled + take] = view[pos:pos + take]
            self._filled += take
            pos += take
            if self._filled == STAGE_BYTES:
                self._flush(STAGE_BYTES)
        self._written += size
        return size

    def tell(self) -> int:
        """Return the number of bytes written so far."""
        return self._written

    def _flush(self, length: int) -> None:
        view = memoryview(self._stage)[:length]
        done = 0
        try:
            while done < length:
                try:
                    done += os.write(self._fd, view[done:])
                except OSError as exc:
                    if not (self.direct and exc.errno == errno.EINVAL):
                        raise
                    # This file system takes no O_DIRECT writes: go on through the cache.
                    self.direct = _set_o_direct(self._fd, False)
        finally:
            view.release()
            self._filled = 0  # written, or lost to the error raised (a full disk): never twice

    def close(self) -> None:
        """Write what is staged and close; the file ends at the last byte written."""
        if self._fd < 0:
            return
        try:
            if self._filled:
                tail = self._filled
                if self.direct:  # whole blocks only: pad with zeros, then cut them off again
                    padded = -(-tail // DIRECT_ALIGN) * DIRECT_ALIGN
                    self._stage[tail:padded] = bytes(padded - tail)
                    tail = padded
                self._flush(tail)
            os.ftruncate(self._fd, self._written)
        finally:
            os.close(self._fd)
            self._fd = -1
            self._stage.close()
