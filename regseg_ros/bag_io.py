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
rosbag2 reading and writing that does not copy large messages on their way through.

``rosbags``' MCAP storage copies every message four times in Python buffers (record, chunk,
chunk value, chunk record) before the kernel copies it once more into the page cache. For camera
bags that is most of segment_bag's writing time: a 1024x2048 rgb8 frame is 6 MiB, and touching
fresh memory is expensive (on virtual machines even more so). :class:`BagWriter` is
``rosbags.rosbag2.Writer`` with an MCAP storage that keeps the pending chunk as a list of
buffers and hands them to the file one by one, which is written with ``O_DIRECT`` through a
staging buffer (:class:`_DirectFile`): the bytes of a message are copied once, and the kernel
neither caches nor copies them again. The files are plain MCAP as the specification describes
them (chunks, message indexes, chunk indexes, summary) with CRCs: each chunk's CRC-32 of its
records, the data section's in the DataEnd record and the summary's in the footer. Messages keep
the publish time and sequence number they are given; the channels carry rosbag2's metadata
(``offered_qos_profiles``, ``topic_type_hash``) and the file rosbag2's ``rosbag2`` metadata
record with the ROS distribution. sqlite3 bags are rosbags' with 64 KiB database pages (their
schema has no publish time or sequence number).

:class:`BagReader` is ``rosbags.rosbag2.Reader`` whose MCAP storage reads each chunk once and
hands out messages as ``memoryview`` slices of it, where rosbags copies each message twice more;
:meth:`BagReader.records` also gives each message's publish time and sequence number. Given an
``on_damage`` callback it salvages damaged MCAP files instead of failing: a file without its
summary or footer (what a crashed recorder leaves) is read front to back, and a chunk whose CRC
or records are wrong is skipped; each is reported to the callback as a :class:`Damage`.

Imports ``rosbags``: import this module only where rosbags is installed.
"""

from collections import defaultdict
import errno
import heapq
from io import BytesIO, StringIO
import mmap
import os
from pathlib import Path
import struct
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union
import zlib

from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.rosbag2 import storage_mcap
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.metadata import ReaderMetadata
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import (
    Channel, decompress, get_msgdef, get_qos, McapReader, McapWriter, PendingChunk, Schema,
    Statistics, write_channel)
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

MAGIC = b'\x89MCAP0\r\n'
# Message record: opcode, record length, channel id, sequence, log time, publish time.
_MESSAGE = struct.Struct('<BQHIQQ')
_MESSAGE_FIELDS = _MESSAGE.size - 9
# Chunk record up to its compression name: opcode, record length, start, end, uncompressed
# size, CRC of the uncompressed records; then the name (u32 length + bytes) and the size of the
# records as stored (u64).
_CHUNK_HEAD = struct.Struct('<BQQQQI')
_INDEX_HEAD = struct.Struct('<BQHI')   # message index: opcode, length, channel id, entries length
_INDEX_ENTRY = struct.Struct('<QQ')    # log time, offset in the chunk
_OFFSET = struct.Struct('<HQ')         # chunk index: channel id, message index offset
_RECORD = struct.Struct('<BQ')         # any record: opcode, length
_MESSAGE_BODY = struct.Struct('<HIQQ')  # channel id, sequence, log time, publish time
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')
_CHUNK_CRC = 9 + 24                    # offset of the CRC in a chunk record
_CHUNK_RECORDS = 9 + 40                # offset of the records after an empty compression name
CHUNK_BYTES = 2**20                    # close a chunk once it holds this much (as rosbags does)
LARGE = 64 * 2**10                     # messages this big are referenced, not copied
DROP_BEHIND_BYTES = 8 * 2**20          # see BagWriter
DIRECT_ALIGN = 4096                    # O_DIRECT offsets, lengths and buffers: whole pages
STAGE_BYTES = 4 * 2**20                # _DirectFile's staging buffer (a multiple of the above)
SQLITE_PAGE_BYTES = 2**16              # the largest page SQLite has
RECORD_NAMES = {0x01: 'Header', 0x02: 'Footer', 0x03: 'Schema', 0x04: 'Channel',
                0x05: 'Message', 0x06: 'Chunk', 0x07: 'MessageIndex', 0x08: 'ChunkIndex',
                0x09: 'Attachment', 0x0A: 'AttachmentIndex', 0x0B: 'Statistics',
                0x0C: 'Metadata', 0x0D: 'MetadataIndex', 0x0E: 'SummaryOffset',
                0x0F: 'DataEnd'}
# Not ROS distributions: what rosbags (and this module, given none) write in their place.
NOT_A_DISTRO = ('', 'rosbags')


# -- CRC-32 -----------------------------------------------------------------------------------

_POLY = 0xEDB88320  # zlib's CRC-32, bit-reflected


def _multmodp(a: int, b: int) -> int:
    """Multiply a and b modulo the CRC polynomial (bit-reflected, as zlib's crc32_combine)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> List[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """
    Return the CRC-32 of A + B from ``crc1`` = crc32(A), ``crc2`` = crc32(B) and len(B).

    zlib's crc32_combine, which Python's zlib module lacks: the data section CRC takes each
    chunk's CRC this way instead of reading its megabytes a second time (~50 us a chunk).
    """
    p, k, n = 1 << 31, 3, len2  # x^(8 * len2): bytes are 8 bits, hence k starts at 3
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


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


def set_ros_distro(metadata_yaml: str, distro: str, top: Optional[str] = None) -> str:
    """Return rosbag2 metadata YAML with ``ros_distro`` set (under ``top`` if given)."""
    from ruamel.yaml import YAML
    yaml = YAML(typ='safe')
    yaml.default_flow_style = False
    yaml.width = 4096  # type hashes on one line, as rosbags writes them
    data = yaml.load(metadata_yaml)
    (data[top] if top else data)['ros_distro'] = distro
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue() if top else out.getvalue().strip()


def _string(text: Union[str, bytes]) -> bytes:
    data = text.encode() if isinstance(text, str) else bytes(text)
    return _U32.pack(len(data)) + data


def _record(opcode: int, body: bytes) -> bytes:
    return _RECORD.pack(opcode, len(body)) + body


class _McapStorage(McapWriter):
    """
    rosbags' MCAP storage with zero-copy messages and chunks, CRCs and rosbag2's metadata.

    ``stem`` names the file (default: the bag folder's name), ``library`` goes into the header,
    ``ros_distro`` into the ``rosbag2`` metadata record.
    """

    def __init__(self, path, compression, stem: Optional[str] = None,
                 library: Optional[str] = None, ros_distro: Optional[str] = None) -> None:
        # McapWriter.__init__'s state, with our file name, header and CRC.
        self.path = path / f'{stem or path.name}.mcap'
        self.bio = self.path.open('xb')
        self.ros_distro = ros_distro
        self._crc = 0  # of every byte written so far: the data section CRC at DataEnd
        self._emit(MAGIC + _record(0x01, _string('ros2') + _string(library or _library())))
        self.schemas: List[Schema] = []
        self.channels: List[Channel] = []
        self.chunks: List[bytes] = []
        self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))
        if compression == CompressionMode.STORAGE:
            self.compression = 'zstd'
            self.compressor = storage_mcap.zstd.compress
        else:
            self.compression = ''
            self.compressor = None
        self.message_start_time = 2**63 - 1
        self.message_end_time = 0
        self.channel_stats: Dict[int, int] = {}
        self._pieces: List[Union[bytes, memoryview]] = []
        self._pieces_bytes = 0

    def _emit(self, data) -> None:
        self.bio.write(data)
        self._crc = zlib.crc32(data, self._crc)

    def bypass_cache(self) -> None:
        """Go on writing with O_DIRECT where the file system allows it (see _DirectFile)."""
        # We opened the file (exclusively) and wrote its header; nothing else yet.
        self.bio.close()
        self.bio = _DirectFile(self.path, self.path.read_bytes())

    def add_connection(self, connection, offered_qos_profiles: str) -> None:
        """Add a channel with rosbag2's metadata: offered QoS profiles and the type hash."""
        metadata = _string('offered_qos_profiles') + _string(offered_qos_profiles)
        if connection.digest:
            metadata += _string('topic_type_hash') + _string(connection.digest)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     connection.ext.serialization_format, metadata))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)

    def _pending(self) -> int:
        return self._pieces_bytes + self.chunk.bio.tell()

    def write(self, connection, timestamp: int, data, publish_time: Optional[int] = None,
              sequence: int = 0) -> None:
        """Append a message record to the pending chunk; close the chunk when it is full."""
        view = memoryview(data).cast('B')
        size = view.nbytes
        self.message_start_time = min(timestamp, self.message_start_time)
        self.message_end_time = max(timestamp, self.message_end_time)
        self.channel_stats[connection.id] += 1
        chunk = self.chunk
        chunk.message_start_time = min(timestamp, chunk.message_start_time)
        chunk.message_end_time = max(timestamp, chunk.message_end_time)
        chunk.msgs[connection.id].append((timestamp, self._pending()))
        head = _MESSAGE.pack(0x05, _MESSAGE_FIELDS + size, connection.id, sequence, timestamp,
                             timestamp if publish_time is None else publish_time)
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
        """Write the pending chunk with its CRC, its message indexes; keep its chunk index."""
        self._move_bio_to_pieces()
        chunk, size = self.chunk, self._pieces_bytes
        crc = 0
        for piece in self._pieces:  # the records' CRC, buffer by buffer: no joined copy
            crc = zlib.crc32(piece, crc)
        if self.compression:
            stored = [self.compressor(b''.join(self._pieces))]
            stored_crc, stored_size = zlib.crc32(stored[0]), len(stored[0])
        else:
            stored, stored_crc, stored_size = self._pieces, crc, size
        name = _string(self.compression)
        chunk_start = self.bio.tell()
        self._emit(_CHUNK_HEAD.pack(0x06, 28 + len(name) + 8 + stored_size,
                                    chunk.message_start_time, chunk.message_end_time, size, crc)
                   + name + _U64.pack(stored_size))
        for piece in stored:
            self.bio.write(piece)
        self._crc = crc32_combine(self._crc, stored_crc, stored_size)
        chunk_end = self.bio.tell()
        offsets = []
        for cid, msgs in chunk.msgs.items():
            offsets.append(_OFFSET.pack(cid, self.bio.tell()))
            entries = b''.join(_INDEX_ENTRY.pack(t, o) for t, o in msgs)
            self._emit(_INDEX_HEAD.pack(0x07, 6 + len(entries), cid, len(entries)) + entries)
        self.chunks.append(
            struct.pack('<QQQQI', chunk.message_start_time, chunk.message_end_time,
                        chunk_start, chunk_end - chunk_start, 10 * len(offsets))
            + b''.join(offsets)
            # message index length, compression, compressed size, uncompressed size
            + _U64.pack(self.bio.tell() - chunk_end) + name + struct.pack('<QQ', stored_size,
                                                                          size))
        self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))
        self._pieces, self._pieces_bytes = [], 0

    def close(self, version: int, metadata: str) -> None:
        """Write what is pending, the metadata record, DataEnd, summary and footer."""
        if self._pieces or self.chunk.bio.tell():
            self.close_chunk()
        if self.ros_distro:
            metadata = set_ros_distro(metadata, self.ros_distro)
        pairs = [('serialized_metadata', metadata)]
        if self.ros_distro:
            pairs.append(('ROS_DISTRO', self.ros_distro))  # where Humble and Iron look
        entries = b''.join(_string(k) + _string(v) for k, v in pairs)
        metadata_start = self.bio.tell()
        self._emit(_record(0x0C, _string('rosbag2') + _string(entries)))
        metadata_end = self.bio.tell()
        self._emit(_record(0x0F, _U32.pack(self._crc)))  # DataEnd: the data section's CRC

        summary_start = self.bio.tell()
        out = BytesIO()
        groups = []

        def group(opcode: int, records: List[bytes]) -> None:
            if records:
                start = summary_start + out.tell()
                for body in records:
                    out.write(_record(opcode, body))
                groups.append((opcode, start, summary_start + out.tell() - start))

        def schema_body(s: Schema) -> bytes:
            return (_U16.pack(s.id) + _string(s.name) + _string(s.encoding)
                    + _string(s.data))

        def channel_body(c: Channel) -> bytes:
            schema = next(s.id for s in self.schemas if s.name == c.schema)
            return (_U16.pack(c.id) + _U16.pack(schema) + _string(c.topic)
                    + _string(c.message_encoding) + _string(c.metadata))

        group(0x03, [schema_body(s) for s in self.schemas])
        group(0x04, [channel_body(c) for c in self.channels])
        group(0x08, self.chunks)
        group(0x0D, [struct.pack('<QQ', metadata_start, metadata_end - metadata_start)
                     + _string('rosbag2')])
        stats = sorted(self.channel_stats.items())
        group(0x0B, [struct.pack('<QHIIIIQQI', sum(self.channel_stats.values()),
                                 len(self.schemas), len(self.channels), 0, 1, len(self.chunks),
                                 self.message_start_time, self.message_end_time, 10 * len(stats))
                     + b''.join(_OFFSET.pack(cid, n) for cid, n in stats)])
        offsets_start = summary_start + out.tell()
        for opcode, start, length in list(groups):
            out.write(_record(0x0E, struct.pack('<BQQ', opcode, start, length)))
        footer = struct.pack('<BQQQ', 0x02, 20, summary_start, offsets_start)
        summary = out.getvalue()
        crc = zlib.crc32(footer, zlib.crc32(summary))
        self.bio.write(summary + footer + _U32.pack(crc) + MAGIC)
        self.bio.close()


def _library() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        rosbags = version('rosbags')
    except PackageNotFoundError:
        rosbags = 'unknown'
    return f'regseg_ros bag_io (rosbags {rosbags})'


class _Sqlite3Storage(Sqlite3Writer):
    """rosbags' sqlite3 storage with 64 KiB database pages (SQLite's default: 4 KiB)."""

    # A 6 MiB camera frame is 96 overflow pages instead of 1536: about half the CPU time of
    # inserting it. Any SQLite reads any page size; it is set before the first table exists.
    SQLITE_SCHEMA = f'PRAGMA page_size={SQLITE_PAGE_BYTES};\n' + Sqlite3Writer.SQLITE_SCHEMA

    def __init__(self, path, compression, stem: Optional[str] = None,
                 library: Optional[str] = None, ros_distro: Optional[str] = None) -> None:
        import sqlite3
        if compression == CompressionMode.STORAGE:
            raise WriterError('SQLITE3 writer does not support storage-side compression.')
        self.path = path / f'{stem or path.name}.db3'
        self.ros_distro = ros_distro
        self.conn = sqlite3.connect(f'file:{self.path}', uri=True)
        self.conn.executescript(self.SQLITE_SCHEMA)
        if ros_distro:
            self.conn.execute('UPDATE schema SET ros_distro = ?', (ros_distro,))
        self.cursor = self.conn.cursor()

    def write(self, connection, timestamp: int, data, publish_time: Optional[int] = None,
              sequence: int = 0) -> None:
        """Insert a message; rosbag2's sqlite3 schema has no publish time or sequence."""
        super().write(connection, timestamp, data)

    def close(self, version: int, metadata: str) -> None:
        """Store the metadata (with the ROS distribution) and commit."""
        if self.ros_distro:
            metadata = set_ros_distro(metadata, self.ros_distro)
        super().close(version, metadata)


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

    ``stem`` names the storage file (default: the folder's name, as rosbags does): a bag written
    into a temporary folder can be named after its final one. ``ros_distro`` is written where
    rosbag2 keeps it (metadata.yaml, the MCAP ``rosbag2`` metadata record, the sqlite3 schema
    table); without it rosbags writes ``rosbags``. :meth:`write` takes a message's publish time
    (default: its log time) and sequence number (default: 1, 2, ... per connection).
    """

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _McapStorage,
                       StoragePlugin.SQLITE3: _Sqlite3Storage}

    def __init__(self, *args, cache: bool = False, stem: Optional[str] = None,
                 ros_distro: Optional[str] = None, library: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache
        self._drop_behind = not cache
        self._direct: Optional[_DirectFile] = None
        self._unadvised = 0
        self._fd: Optional[int] = None
        self._options = {'stem': stem, 'ros_distro': ros_distro, 'library': library}
        self._sequence: Dict[int, int] = {}

    def open(self) -> None:  # noqa: A003 rosbags' method name
        """Create the bag (see rosbags); bypass or drop behind the page cache unless cached."""
        try:
            self.path.mkdir(mode=0o755, parents=True)
        except FileExistsError:
            raise WriterError(f'{self.path} exists already, not overwriting.') from None
        self.storage = self.STORAGE_PLUGINS[self.storage_plugin](
            self.path, self.compression_mode, **self._options)
        if not self._cache and isinstance(self.storage, _McapStorage):
            self.storage.bypass_cache()
            self._direct = self.storage.bio

    def write(self, connection, timestamp: int, data, publish_time: Optional[int] = None,
              sequence: Optional[int] = None) -> None:
        """Write one serialised message (see rosbags); drop behind every few MiB."""
        if not self.storage:
            raise WriterError('Bag was not opened.')
        cid = connection.id
        if cid not in self.counts or self.connections[cid - 1] is not connection:
            raise WriterError(f'Tried to write to unknown connection {connection!r}.')
        if sequence is None:
            sequence = self._sequence[cid] = self._sequence.get(cid, 0) + 1
        if self.compression_mode == CompressionMode.MESSAGE:
            data = storage_mcap.zstd.compress(data)
        self.storage.write(connection, timestamp, data, publish_time, sequence)
        self.counts[cid] += 1
        self.min_timestamp = min(timestamp, self.min_timestamp)
        self.max_timestamp = max(timestamp, self.max_timestamp)
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
        """Finish the bag (see rosbags) and metadata.yaml, with the ROS distribution."""
        try:
            super().close()
            distro = self._options['ros_distro']
            if distro:
                text = set_ros_distro(self.metapath.read_text('utf8'), distro,
                                      top='rosbag2_bagfile_information')
                tmp = self.metapath.with_suffix('.yaml.tmp')
                tmp.write_text(text, 'utf8')
                tmp.replace(self.metapath)
        finally:
            self._close_fd()

    def abort(self) -> None:
        """Close without finishing the bag (see rosbags)."""
        try:
            super().abort()
        finally:
            self._close_fd()


# -- reading ----------------------------------------------------------------------------------

class Damage(NamedTuple):
    """A damaged part of an MCAP file that was skipped while salvaging it."""

    path: str
    offset: int             # where the damaged record starts (or the file ends)
    problem: str            # what is wrong with it
    lost: Dict[str, int]    # messages lost per topic, as far as known
    exact: bool             # whether ``lost`` is the exact count
    chunk: bool             # whether a chunk (or what is left of one) was skipped

    @property
    def lost_total(self) -> int:
        """Messages known to be lost."""
        return sum(self.lost.values())


DamageHandler = Callable[[Damage], None]


class _Corrupt(Exception):
    """A malformed record inside a chunk."""


def _read_str(view, pos: int, end: int) -> Tuple[bytes, int]:
    if pos + 4 > end:
        raise _Corrupt('string length past the record')
    size = _U32.unpack_from(view, pos)[0]
    if pos + 4 + size > end:
        raise _Corrupt('string past the record')
    return bytes(view[pos + 4:pos + 4 + size]), pos + 4 + size


def _parse_schema(view, pos: int, end: int) -> Schema:
    if pos + 2 > end:
        raise _Corrupt('schema record too short')
    sid = _U16.unpack_from(view, pos)[0]
    name, pos = _read_str(view, pos + 2, end)
    encoding, pos = _read_str(view, pos, end)
    data, pos = _read_str(view, pos, end)
    return Schema(sid, name.decode(), encoding.decode(), data.decode())


def _parse_channel(view, pos: int, end: int) -> Tuple[Channel, int]:
    if pos + 4 > end:
        raise _Corrupt('channel record too short')
    cid, sid = struct.unpack_from('<HH', view, pos)
    topic, pos = _read_str(view, pos + 4, end)
    encoding, pos = _read_str(view, pos, end)
    metadata, pos = _read_str(view, pos, end)
    return Channel(cid, '', topic.decode(), encoding.decode(), metadata), sid


def _string_map(data: bytes) -> Dict[str, str]:
    """Decode an MCAP map<string, string> (without its length prefix)."""
    out, pos, view = {}, 0, memoryview(data)
    while pos < len(data):
        key, pos = _read_str(view, pos, len(data))
        value, pos = _read_str(view, pos, len(data))
        out[key.decode()] = value.decode()
    return out


def _walk_records(view, size: int, start: int = 0):
    """Yield (opcode, body start, body end) of the records in ``view[start:size]``."""
    pos = start
    while pos < size:
        if pos + _RECORD.size > size:
            raise _Corrupt(f'truncated record header at offset {pos} in the chunk')
        opcode, length = _RECORD.unpack_from(view, pos)
        body, pos = pos + _RECORD.size, pos + _RECORD.size + length
        if pos > size or (opcode == 0x05 and length < _MESSAGE_BODY.size):
            raise _Corrupt(f'record of {length} bytes at offset {body - 9} runs past the '
                           'chunk')
        yield opcode, body, pos


def _chunk_records(chunk_start: int, header, compression: str, stored) -> memoryview:
    """Return the records of a chunk, checked against its CRC; raise _Corrupt if wrong."""
    _, _, size, crc = header
    try:
        data = decompress(stored, compression, size, 0)
    except ReaderError as exc:
        raise _Corrupt(f'cannot decompress it ({exc})') from None
    if crc:
        actual = zlib.crc32(data)
        if actual != crc:
            raise _Corrupt(f'CRC mismatch (stored {crc:#010x}, computed {actual:#010x})')
    return memoryview(data)


class _McapReaderStorage(McapReader):
    """
    rosbags' MCAP storage reader; yields memoryviews of each chunk read once.

    With an ``on_damage`` handler, chunks whose CRC or records are wrong are reported and skipped,
    and a file without a valid summary and footer is read front to back (see :class:`Damage`).
    """

    def __init__(self, path, on_damage: Optional[DamageHandler] = None) -> None:
        super().__init__(path)
        self.on_damage = on_damage
        self._scan: Optional[dict] = None  # forward-scan state for files without a summary

    # -- opening -------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            super()._open()
        except (ReaderError, struct.error, TypeError, ValueError, KeyError, IndexError) as exc:
            if self.on_damage is None or str(exc) in ('File magic is invalid.',
                                                      'Profile is not ros2.') \
                    or str(exc).endswith('seems to be empty.'):
                raise
            self._scan_open()
        else:
            self._extras()

    def _topic(self, cid: int) -> str:
        channel = self.channels.get(cid)
        return channel.topic if channel else f'(channel {cid}, not defined)'

    def _damage(self, offset: int, problem: str, lost: Dict[int, int], exact: bool,
                chunk: bool) -> None:
        by_topic: Dict[str, int] = {}
        for cid, count in lost.items():
            by_topic[self._topic(cid)] = by_topic.get(self._topic(cid), 0) + count
        damage = Damage(str(self.path), offset, problem, by_topic, exact, chunk)
        if self.on_damage is None:
            raise ReaderError(f'{problem} at offset {offset} of {str(self.path)!r}.')
        self.on_damage(damage)

    def _extras(self) -> None:
        """Type hashes from the channels, ROS distribution from the rosbag2 metadata record."""
        hashes = {cid: _string_map(ch.metadata).get('topic_type_hash', '')
                  for cid, ch in self.channels.items()}
        self.connections[:] = [c._replace(digest=c.digest or hashes.get(c.id, ''))
                               for c in self.connections]
        distro = self._summary_distro()
        if distro:
            self.metadata = self.metadata._replace(ros_distro=distro)

    def _summary_distro(self) -> Optional[str]:
        bio = self.bio
        bio.seek(0, os.SEEK_END)
        footer = bio.tell() - 37
        pos = self.data_end
        while pos + 9 <= footer:
            bio.seek(pos)
            opcode, length = _RECORD.unpack(bio.read(9))
            if opcode == 0x0D:
                body = bio.read(length)
                offset, size = struct.unpack_from('<QQ', body)
                name, _ = _read_str(memoryview(body), 16, len(body))
                if name == b'rosbag2':
                    bio.seek(offset)
                    return _metadata_distro(memoryview(bio.read(size)), 9, size)
            pos += 9 + length
        return None

    def _scan_open(self) -> None:
        """Read a file without a (valid) summary front to back: definitions, counts, damage."""
        bio = self.bio
        for table in (self.schemas, self.channels, self.chunks, self.connections):
            table.clear()
        bio.seek(0, os.SEEK_END)
        size = bio.tell()
        counts: Dict[int, int] = defaultdict(int)
        times = [2**63 - 1, 0]
        schema_of: Dict[int, int] = {}
        bad: Dict[int, int] = {}  # chunk offset -> 1 (skipped by the message pass)
        pending = None  # a damaged chunk whose message indexes follow: [offset, problem, lost]
        distro = None
        pos, end_of_data, clean_end = self.data_start, None, False

        def flush():
            nonlocal pending
            if pending is not None:
                offset, problem, lost, exact = pending
                pending = None
                self._damage(offset, problem, lost, exact, True)

        def take(view, start, end):
            """Collect definitions and counts from records (of the data section or a chunk)."""
            for opcode, body, rec_end in _walk_records(view, end, start):
                if opcode == 0x03:
                    schema = _parse_schema(view, body, rec_end)
                    self.schemas[schema.id] = schema
                elif opcode == 0x04:
                    channel, sid = _parse_channel(view, body, rec_end)
                    self.channels[channel.id] = channel
                    schema_of[channel.id] = sid
                elif opcode == 0x05:
                    cid, _, log_time, _ = _MESSAGE_BODY.unpack_from(view, body)
                    counts[cid] += 1
                    times[0], times[1] = min(times[0], log_time), max(times[1], log_time)

        while True:
            if pos >= size:
                clean_end = pos == size
                break
            bio.seek(pos)
            head = bio.read(9)
            if len(head) < 9:
                flush()
                self._damage(pos, f'the file ends {size - pos} bytes into a record header: '
                             'the recording was cut short', {}, False, False)
                break
            opcode, length = _RECORD.unpack(head)
            end = pos + 9 + length
            name = RECORD_NAMES.get(opcode, f'unknown ({opcode:#04x})')
            if opcode != 0x07:
                flush()
            if end > size:
                lost: Dict[int, int] = {}
                if opcode == 0x05:
                    if length >= 2 and size - pos >= 11:
                        lost[_U16.unpack(bio.read(2))[0]] = 1
                elif opcode == 0x06:
                    lost = self._count_partial_chunk(bio, pos, size)
                self._damage(pos, f'the file ends {size - pos} bytes into a {name} record '
                             f'of {9 + length} bytes ({end - size} bytes missing): the '
                             'recording was cut short', lost, False, opcode == 0x06)
                break
            if opcode == 0x0F:
                end_of_data = pos
                break
            if opcode in (0x03, 0x04, 0x05):
                view = memoryview(head + bio.read(length))
                take(view, 0, 9 + length)
            elif opcode == 0x06:
                body = bio.read(length)
                try:
                    records = self._chunk_body(pos, body)
                    take(records, 0, len(records))
                except _Corrupt as exc:
                    bad[pos] = 1
                    lost = self._count_records(body)
                    pending = [pos, f'chunk {exc}', lost, False]
            elif opcode == 0x07 and pending is not None:
                body = bio.read(min(length, 6))
                if len(body) == 6:
                    cid, entries = struct.unpack('<HI', body)
                    if not pending[3]:  # the first index replaces the estimate from the records
                        pending[2], pending[3] = {}, True
                    pending[2][cid] = pending[2].get(cid, 0) + entries // 16
            elif opcode == 0x0C:
                view = memoryview(bio.read(length))
                name_, after = _read_str(view, 0, length)
                if name_ == b'rosbag2':
                    distro = _metadata_distro(view, 0, length) or distro
            pos = end
        flush()
        if end_of_data is not None:
            self._damage(end_of_data, 'the summary or footer after the data section is missing '
                         'or invalid; all the data was read', {}, True, False)
        elif clean_end:
            self._damage(size, 'the file ends after a whole record but without its data end, '
                         'summary and footer: the recording was cut short', {}, False, False)
        self._scan = {'end': end_of_data if end_of_data is not None else pos, 'bad': bad}
        self.data_end = self._scan['end']
        for cid, channel in self.channels.items():
            schema = self.schemas.get(schema_of.get(cid, 0))
            self.channels[cid] = channel._replace(schema=schema.name if schema else '')
            self.connections.append(Connection(
                cid, channel.topic, schema.name if schema else '', get_msgdef(schema),
                _string_map(channel.metadata).get('topic_type_hash', ''), counts.get(cid, 0),
                ConnectionExtRosbag2(channel.message_encoding, get_qos(channel.metadata)), self))
        total = sum(counts.values())
        self.statistics = Statistics(total, len(self.schemas), len(self.channels), 0, 0,
                                     0, times[0], times[1], dict(counts))
        self.metadata = ReaderMetadata(
            times[1] - times[0] + 1 if total else 0, times[0] if total else 2**63 - 1,
            times[1] + 1 if total else 0, total, None, None, distro, None)

    def _chunk_body(self, offset: int, body: bytes) -> memoryview:
        view = memoryview(body)
        if len(body) < 28:
            raise _Corrupt('record too short')
        header = struct.unpack_from('<QQQI', view, 0)
        compression, pos = _read_str(view, 28, len(body))
        if pos + 8 > len(body):
            raise _Corrupt('record too short')
        stored = _U64.unpack_from(view, pos)[0]
        if pos + 8 + stored > len(body):
            raise _Corrupt('records run past the chunk record')
        records = _chunk_records(offset, header, compression.decode(),
                                 view[pos + 8:pos + 8 + stored])
        for _ in _walk_records(records, len(records)):
            pass  # raises _Corrupt for a malformed record
        return records

    @staticmethod
    def _count_records(body: bytes) -> Dict[int, int]:
        """Count the messages per channel a damaged, uncompressed chunk seems to hold."""
        counts: Dict[int, int] = defaultdict(int)
        view = memoryview(body)
        try:
            _, pos = _read_str(view, 28, len(body))
            if bytes(view[28:32]) != b'\0\0\0\0':
                return {}  # compressed: nothing to count
            pos += 8
            for opcode, start, _ in _walk_records(view, len(body), pos):
                if opcode == 0x05:
                    counts[_U16.unpack_from(view, start)[0]] += 1
        except (_Corrupt, struct.error):
            pass
        return dict(counts)

    def _count_partial_chunk(self, bio, pos: int, size: int) -> Dict[int, int]:
        """Count the messages whose records begin in what is left of a cut chunk."""
        bio.seek(pos + 9)
        body = memoryview(bio.read(size - pos - 9))
        counts: Dict[int, int] = defaultdict(int)
        if len(body) < 40 or bytes(body[28:32]) != b'\0\0\0\0':
            return {}
        at = 40
        while at + 11 <= len(body):
            opcode, length = _RECORD.unpack_from(body, at)
            if opcode == 0x05:
                counts[_U16.unpack_from(body, at + 9)[0]] += 1
            at += 9 + length
        return dict(counts)

    # -- messages ------------------------------------------------------------------------------

    def records(self, connections, start=None, stop=None):
        """Yield (connection, log time, publish time, sequence, data) in log-time order."""
        channel_map = {conn.id: conn for conn in connections}
        lo = -1 if start is None else start
        hi = 2**64 if stop is None else stop
        if self._scan is not None:
            yield from self._scan_records(channel_map, lo, hi)
            return
        if not self.chunks:  # messages outside chunks: read in file order
            self._scan = {'end': self.data_end, 'bad': {}}
            yield from self._scan_records(channel_map, lo, hi)
            return
        chunks = [
            self._chunk_messages(chunk, channel_map, lo, hi)
            for chunk in self.chunks
            if (start is None or start < chunk.message_end_time + 1)
            and (stop is None or chunk.message_start_time < stop)
            and any(chunk.channel_count.get(cid, 0) for cid in channel_map)]
        for log_time, offset, conn, data, publish, sequence in heapq.merge(*chunks):
            if offset:
                yield conn, log_time, publish, sequence, data

    def messages(self, connections, start=None, stop=None):
        """Yield (connection, timestamp, data) in time order, like rosbags."""
        for conn, log_time, _, _, data in self.records(connections, start, stop):
            yield conn, log_time, data

    def _chunk_messages(self, chunk, channel_map, start: int, stop: int):
        """Yield a chunk's wanted messages in time order, their data as views of the chunk."""
        yield (chunk.message_start_time, 0, None, None, 0, 0)  # heapq.merge opens chunks lazily
        bio, offset = self.bio, chunk.chunk_start_offset
        bio.seek(offset + 9)
        body = bio.read(chunk.chunk_length - 9)
        try:
            if len(body) != chunk.chunk_length - 9:
                raise _Corrupt('is cut short')
            records = self._chunk_body(offset, body)
            messages = self._messages_of(records, channel_map, start, stop, offset)
        except (_Corrupt, struct.error) as exc:
            self._damage(offset, f'chunk {exc}', dict(chunk.channel_count), True, True)
            return
        messages.sort(key=lambda m: m[0])
        yield from messages

    @staticmethod
    def _messages_of(view, channel_map, start: int, stop: int, offset: int) -> list:
        messages = []
        for opcode, body, end in _walk_records(view, len(view)):
            if opcode == 0x05:
                channel, sequence, log_time, publish = _MESSAGE_BODY.unpack_from(view, body)
                if start <= log_time < stop and channel in channel_map:
                    messages.append((log_time, offset, channel_map[channel],
                                     view[body + _MESSAGE_BODY.size:end], publish, sequence))
        return messages

    def _scan_records(self, channel_map, start: int, stop: int):
        """Yield the messages of a file without summary in file order (chunks by log time)."""
        bio, pos, end = self.bio, self.data_start, self._scan['end']
        while pos + 9 <= end:
            bio.seek(pos)
            opcode, length = _RECORD.unpack(bio.read(9))
            if pos + 9 + length > end:
                break
            if opcode == 0x05:
                view = memoryview(bio.read(length))
                messages = self._messages_of(
                    memoryview(_RECORD.pack(opcode, length) + view), channel_map, start, stop,
                    pos)
            elif opcode == 0x06 and pos not in self._scan['bad']:
                records = self._chunk_body(pos, bio.read(length))
                messages = sorted(self._messages_of(records, channel_map, start, stop, pos),
                                  key=lambda m: m[0])
            else:
                messages = ()
            for log_time, _, conn, data, publish, sequence in messages:
                yield conn, log_time, publish, sequence, data
            pos += 9 + length


def _metadata_distro(view, start: int, end: int) -> Optional[str]:
    """Return the ROS distribution of a rosbag2 metadata record's body, or None."""
    try:
        _, pos = _read_str(view, start, end)
        entries, _ = _read_str(view, pos, end)
        values = _string_map(entries)
    except (_Corrupt, UnicodeDecodeError):
        return None
    distro = values.get('ROS_DISTRO')
    if values.get('serialized_metadata'):
        from ruamel.yaml import YAML
        try:
            data = YAML(typ='safe').load(values['serialized_metadata'])
            distro = data.get('ros_distro') or distro
        except Exception:  # noqa: B902 a damaged record leaves the distribution unknown
            pass
    return distro or None


class _DirectoryReader(DirectoryReader):
    on_damage: Optional[DamageHandler] = None

    def __init__(self, path) -> None:
        super().__init__(path)
        self.STORAGE_PLUGINS = {**DirectoryReader.STORAGE_PLUGINS,
                                'mcap': lambda p: _McapReaderStorage(p, self.on_damage)}


class BagReader(Reader):
    """
    ``rosbags.rosbag2.Reader`` whose MCAP storage hands out messages without copying them.

    :meth:`records` also yields each message's publish time and sequence number (sqlite3 bags
    store neither: their publish time is the log time and their sequence 0, "unknown"). With
    ``on_damage``, damaged MCAP files are salvaged (see :class:`Damage`); without it they raise
    ``ReaderError`` as rosbags does. A folder without metadata.yaml that holds one ``.mcap``
    file (a recording that never finished) is read as that file.
    """

    STORAGE_PLUGINS = {**Reader.STORAGE_PLUGINS, 'dir': _DirectoryReader,
                       '.mcap': _McapReaderStorage}

    def __init__(self, path, on_damage: Optional[DamageHandler] = None) -> None:
        path = Path(path)
        if path.is_dir() and not (path / 'metadata.yaml').exists():
            files = sorted(path.glob('*.mcap'))
            if len(files) == 1:
                path = files[0]
        super().__init__(path)
        self.storage.on_damage = on_damage

    def records(self, connections=(), start=None, stop=None):
        """Yield (connection, log time, publish time, sequence, data) of the messages."""
        self._check_open()
        storage = self.storage
        if not isinstance(storage, DirectoryReader):
            yield from _records(storage, connections or storage.connections, start, stop)
            return
        connections = connections or storage.connections
        for sub in storage.storages:
            connmap = {}
            for x in sub.connections:
                conn = next((y for y in connections if y.topic == x.topic
                             and y.msgtype == x.msgtype and y.ext == x.ext
                             and (not x.digest or not y.digest or y.digest == x.digest)), None)
                if conn is not None:
                    connmap[x.id] = conn
            wanted = [x for x in sub.connections if x.id in connmap]
            if not wanted:
                continue
            unpack = (storage_mcap.zstd.decompress if storage.metadata.compression_mode
                      == 'message' else None)
            for conn, log_time, publish, sequence, data in _records(sub, wanted, start, stop):
                yield (connmap[conn.id], log_time, publish, sequence,
                       unpack(data) if unpack else data)


def _records(storage, connections, start, stop):
    if isinstance(storage, _McapReaderStorage):
        yield from storage.records(connections, start, stop)
    else:
        for conn, t, data in storage.messages(connections, start, stop):
            yield conn, t, t, 0, data
