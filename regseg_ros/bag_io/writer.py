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
The bag writer: rosbags' ``Writer`` with zero-copy MCAP and 64 KiB-page sqlite3 storages.

``rosbags``' MCAP storage copies every message four times in Python buffers (record, chunk,
chunk value, chunk record) before the kernel copies it once more into the page cache.
:class:`BagWriter`'s MCAP storage keeps the pending chunk as a list of buffers and hands them to
the file one by one, written with ``O_DIRECT`` through a staging buffer
(:class:`~regseg_ros.bag_io.direct_file._DirectFile`): the bytes of a message are copied once.
The files are plain MCAP with CRCs: each chunk's CRC-32 of its records, the data section's in the
DataEnd record and the summary's in the footer. Messages keep the publish time and sequence
number they are given; the channels carry rosbag2's metadata (``offered_qos_profiles``,
``topic_type_hash``) and the file rosbag2's ``rosbag2`` metadata record with the ROS
distribution. sqlite3 bags are rosbags' with 64 KiB database pages.
"""

from collections import defaultdict
from io import BytesIO, StringIO
import os
import struct
from typing import Dict, List, Optional, Union
import zlib

from regseg_ros.bag_io.crc import crc32_combine
from regseg_ros.bag_io.direct_file import _DirectFile
from regseg_ros.bag_io.mcap_records import (
    _CHUNK_HEAD, _INDEX_ENTRY, _INDEX_HEAD, _MESSAGE, _MESSAGE_FIELDS, _OFFSET, _RECORD, _U16,
    _U32, _U64, MAGIC)
from rosbags.rosbag2 import storage_mcap
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.storage_mcap import (
    Channel, McapWriter, PendingChunk, Schema, write_channel)
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

CHUNK_BYTES = 2**20                    # close a chunk once it holds this much (as rosbags does)
LARGE = 64 * 2**10                     # messages this big are referenced, not copied
DROP_BEHIND_BYTES = 8 * 2**20          # see BagWriter
SQLITE_PAGE_BYTES = 2**16              # the largest page SQLite has
# Not ROS distributions: what rosbags (and this module, given none) write in their place.
NOT_A_DISTRO = ('', 'rosbags')


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
