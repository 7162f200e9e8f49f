"""
rosbag2 reading and writing that does not copy large messages on their way through.

``rosbags``' MCAP storage copies every message four times in Python buffers (record, chunk,
chunk value, chunk record) before the kernel copies it once more into the page cache. For camera
bags that is most of segment_bag's writing time: a 1024x2048 rgb8 frame is 6 MiB, and touching
fresh memory is expensive (on virtual machines even more so). :class:`BagWriter` is
``rosbags.rosbag2.Writer`` with an MCAP storage that keeps the pending chunk as a list of
buffers and hands them to the file one by one, which is written with ``O_DIRECT`` through a
staging buffer (:class:`_DirectFile`): the bytes of a message are copied once, and the kernel
neither caches nor copies them again. The files are plain MCAP (uncompressed chunks, message
indexes, chunk indexes, summary) as the MCAP specification describes them; rosbags and ros2 bag
read them as before. Compressed MCAP storage is rosbags' own. sqlite3 bags are rosbags' with
64 KiB database pages.

:class:`BagReader` is ``rosbags.rosbag2.Reader`` whose MCAP storage reads each chunk once and
hands out messages as ``memoryview`` slices of it, where rosbags copies each message twice more.
Messages come in the same order with the same bytes.

Imports ``rosbags``: import this module only where rosbags is installed.
"""

from collections import defaultdict
import errno
import heapq
from io import BytesIO
import mmap
import os
import struct
from typing import List, Optional, Union

from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import (
    decompress, McapReader, McapWriter, Msg, PendingChunk, read_exact)
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

# Message record: opcode, record length, channel id, sequence, log time, publish time.
_MESSAGE = struct.Struct('<BQHIQQ')
_MESSAGE_FIELDS = _MESSAGE.size - 9
# Chunk record up to its records: opcode, record length, start, end, uncompressed size, CRC
# (0: none), compression (empty string: its u32 length 0), records length.
_CHUNK = struct.Struct('<BQQQQIIQ')
_CHUNK_FIELDS = _CHUNK.size - 9
_INDEX_HEAD = struct.Struct('<BQHI')   # message index: opcode, length, channel id, entries length
_INDEX_ENTRY = struct.Struct('<QQ')    # log time, offset in the chunk
_OFFSET = struct.Struct('<HQ')         # chunk index: channel id, message index offset
_RECORD = struct.Struct('<BQ')         # any record: opcode, length
_MESSAGE_BODY = struct.Struct('<HIQQ')  # channel id, sequence, log time, publish time
_CHUNK_CRC = 9 + 24                    # offset of the CRC in a chunk record
_CHUNK_RECORDS = 9 + 40                # offset of the records after an empty compression name
CHUNK_BYTES = 2**20                    # close a chunk once it holds this much (as rosbags does)
LARGE = 64 * 2**10                     # messages this big are referenced, not copied
DROP_BEHIND_BYTES = 8 * 2**20          # see BagWriter
DIRECT_ALIGN = 4096                    # O_DIRECT offsets, lengths and buffers: whole pages
STAGE_BYTES = 4 * 2**20                # _DirectFile's staging buffer (a multiple of the above)
SQLITE_PAGE_BYTES = 2**16              # the largest page SQLite has


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


class _McapStorage(McapWriter):
    """rosbags' MCAP storage with zero-copy messages and chunks (uncompressed bags only)."""

    def __init__(self, path, compression) -> None:
        super().__init__(path, compression)
        self._pieces: List[Union[bytes, memoryview]] = []
        self._pieces_bytes = 0

    def bypass_cache(self) -> None:
        """Go on writing with O_DIRECT where the file system allows it (see _DirectFile)."""
        # rosbags opened the file (exclusively) and wrote its header; nothing else yet.
        self.bio.close()
        self.bio = _DirectFile(self.path, self.path.read_bytes())

    def _pending(self) -> int:
        return self._pieces_bytes + self.chunk.bio.tell()

    def write(self, connection, timestamp: int, data) -> None:
        """Append a message record to the pending chunk; close the chunk when it is full."""
        if self.compression:
            super().write(connection, timestamp, data)
            return
        view = memoryview(data).cast('B')
        size = view.nbytes
        self.message_start_time = min(timestamp, self.message_start_time)
        self.message_end_time = max(timestamp, self.message_end_time)
        self.channel_stats[connection.id] += 1
        chunk = self.chunk
        chunk.message_start_time = min(timestamp, chunk.message_start_time)
        chunk.message_end_time = max(timestamp, chunk.message_end_time)
        chunk.msgs[connection.id].append((timestamp, self._pending()))
        head = _MESSAGE.pack(0x05, _MESSAGE_FIELDS + size, connection.id, 0, timestamp,
                             timestamp)
        if size < LARGE:
            chunk.bio.write(head)
            chunk.bio.write(view)
        else:
            self._move_bio_to_pieces()
            self._pieces += (head, view)
            self._pieces_bytes += len(head) + size
        if self._pending() > CHUNK_BYTES:
            self.close_chunk()

    def _move_bio_to_pieces(self) -> None:
        bio = self.chunk.bio
        if bio.tell():
            value = bio.getvalue()
            self._pieces.append(value)
            self._pieces_bytes += len(value)
            self.chunk.bio = BytesIO()

    def close_chunk(self) -> None:
        """Write the pending chunk, its message indexes, and remember its chunk index."""
        if self.compression:
            super().close_chunk()
            return
        self._move_bio_to_pieces()
        chunk, size, out = self.chunk, self._pieces_bytes, self.bio
        chunk_start = out.tell()
        out.write(_CHUNK.pack(0x06, _CHUNK_FIELDS + size, chunk.message_start_time,
                              chunk.message_end_time, size, 0, 0, size))
        for piece in self._pieces:
            out.write(piece)
        chunk_end = out.tell()
        offsets = []
        for cid, msgs in chunk.msgs.items():
            offsets.append(_OFFSET.pack(cid, out.tell()))
            entries = b''.join(_INDEX_ENTRY.pack(t, o) for t, o in msgs)
            out.write(_INDEX_HEAD.pack(0x07, 6 + len(entries), cid, len(entries)))
            out.write(entries)
        index = BytesIO()
        index.write(struct.pack('<QQQQI', chunk.message_start_time, chunk.message_end_time,
                                chunk_start, chunk_end - chunk_start, 10 * len(offsets)))
        index.write(b''.join(offsets))
        # message index length, compression '', compressed size, uncompressed size
        index.write(struct.pack('<QIQQ', out.tell() - chunk_end, 0, size, size))
        self.chunks.append(index)
        self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))
        self._pieces, self._pieces_bytes = [], 0

    def close(self, version: int, metadata: str) -> None:
        """Write what is pending, then the summary and footer (rosbags)."""
        if self._pieces:
            self.close_chunk()
        super().close(version, metadata)


class _Sqlite3Storage(Sqlite3Writer):
    """rosbags' sqlite3 storage with 64 KiB database pages (SQLite's default: 4 KiB)."""

    # A 6 MiB camera frame is 96 overflow pages instead of 1536: about half the CPU time of
    # inserting it. Any SQLite reads any page size; it is set before the first table exists.
    SQLITE_SCHEMA = f'PRAGMA page_size={SQLITE_PAGE_BYTES};\n' + Sqlite3Writer.SQLITE_SCHEMA


class BagWriter(Writer):
    """
    ``rosbags.rosbag2.Writer`` that writes large MCAP messages without copies, past the cache.

    Its bags stay out of the page cache: a bag being written is not read back, so its gigabytes
    should not push everything else out of memory, and on virtual machines fresh page-cache pages
    are expensive. MCAP files are written with ``O_DIRECT`` where the file system takes it (ext4,
    xfs, btrfs, ...): for a 1024x2048 rgb8 frame with its labels and mask (10 MiB) ~1.5 ms of CPU
    on this project's 2-core VM, against ~4 ms with drop-behind and ~13-28 ms through the cache.
    sqlite3 bags, and MCAP where ``O_DIRECT`` is refused, drop behind: every
    ``DROP_BEHIND_BYTES`` written, the file's pages are handed to the kernel for writeback and
    those already written back leave the cache (``posix_fadvise(DONTNEED)``, where the OS has
    it), so the kernel reuses the same few pages. ``cache=True`` writes through the page cache
    and keeps the bag there, as rosbags does.
    """

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _McapStorage,
                       StoragePlugin.SQLITE3: _Sqlite3Storage}

    def __init__(self, *args, cache: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache
        self._drop_behind = not cache
        self._direct: Optional[_DirectFile] = None
        self._unadvised = 0
        self._fd: Optional[int] = None

    def open(self) -> None:  # noqa: A003 rosbags' method name
        """Create the bag (see rosbags); bypass or drop behind the page cache unless cached."""
        super().open()
        if not self._cache and isinstance(self.storage, _McapStorage):
            self.storage.bypass_cache()
            self._direct = self.storage.bio

    def write(self, connection, timestamp: int, data) -> None:
        """Write one serialised message (see rosbags); drop behind every few MiB."""
        super().write(connection, timestamp, data)
        if self._drop_behind and not (self._direct and self._direct.direct):
            self._unadvised += len(data)
            if self._unadvised >= DROP_BEHIND_BYTES:
                self._unadvised = 0
                self._advise()

    def _advise(self) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.storage.path, os.O_RDONLY)
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except (OSError, AttributeError):
            self._drop_behind = False  # advice only: writing goes on as it would without it

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Finish the bag (see rosbags)."""
        try:
            super().close()
        finally:
            self._close_fd()

    def abort(self) -> None:
        """Close without finishing the bag (see rosbags)."""
        try:
            super().abort()
        finally:
            self._close_fd()


def _chunk_messages(chunk, channel_map, start: int, stop: int, bio):
    """Yield a chunk's wanted messages in time order, their data as views of the chunk."""
    yield Msg(chunk.message_start_time, 0, None, None)  # lets heapq.merge open chunks lazily
    bio.seek(chunk.chunk_start_offset + _CHUNK_CRC)
    crc = struct.unpack('<I', read_exact(bio, 4))[0]
    bio.seek(chunk.chunk_start_offset + _CHUNK_RECORDS + len(chunk.compression))
    data = decompress(read_exact(bio, chunk.compressed_size), chunk.compression,
                      chunk.uncompressed_size, crc)
    view = memoryview(data)
    size, pos, messages = len(view), 0, []
    while pos < size:
        if pos + _RECORD.size > size:
            raise ReaderError(f'Truncated record in the chunk at offset '
                              f'{chunk.chunk_start_offset}.')
        opcode, length = _RECORD.unpack_from(view, pos)
        body, pos = pos + _RECORD.size, pos + _RECORD.size + length
        if pos > size or (opcode == 0x05 and length < _MESSAGE_BODY.size):
            raise ReaderError(f'Truncated record in the chunk at offset '
                              f'{chunk.chunk_start_offset}.')
        if opcode == 0x05:
            channel, _, log_time, _ = _MESSAGE_BODY.unpack_from(view, body)
            if start <= log_time < stop and channel in channel_map:
                messages.append(Msg(log_time, chunk.chunk_start_offset, channel_map[channel],
                                    view[body + _MESSAGE_BODY.size:pos]))
    messages.sort(key=lambda m: m.timestamp)
    yield from messages


class _McapReaderStorage(McapReader):
    """rosbags' MCAP storage reader; indexed files yield memoryviews of each chunk read once."""

    def messages(self, connections, start=None, stop=None):
        """Yield (connection, timestamp, data) in time order, like rosbags."""
        if not self.chunks:
            yield from super().messages(connections, start, stop)
            return
        channel_map = {conn.id: conn for conn in connections}
        chunks = [
            _chunk_messages(chunk, channel_map,
                            chunk.message_start_time if start is None else start,
                            chunk.message_end_time + 1 if stop is None else stop, self.bio)
            for chunk in self.chunks
            if (start is None or start < chunk.message_end_time + 1)
            and (stop is None or chunk.message_start_time < stop)
            and any(chunk.channel_count.get(cid, 0) for cid in channel_map)]
        for timestamp, offset, connection, data in heapq.merge(*chunks):
            if offset:
                yield connection, timestamp, data


class _DirectoryReader(DirectoryReader):
    STORAGE_PLUGINS = {**DirectoryReader.STORAGE_PLUGINS, 'mcap': _McapReaderStorage}


class BagReader(Reader):
    """``rosbags.rosbag2.Reader`` whose MCAP storage hands out messages without copying them."""

    STORAGE_PLUGINS = {**Reader.STORAGE_PLUGINS, 'dir': _DirectoryReader,
                       '.mcap': _McapReaderStorage}
