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
The bag reader: rosbags' ``Reader`` with an MCAP storage that copies no messages and salvages.

:class:`BagReader` is ``rosbags.rosbag2.Reader`` whose MCAP storage reads each chunk once and
hands out messages as ``memoryview`` slices of it, where rosbags copies each message twice more;
:meth:`BagReader.records` also gives each message's publish time and sequence number. Given an
``on_damage`` callback it salvages damaged MCAP files instead of failing: a file without its
summary or footer (what a crashed recorder leaves) is read front to back (:class:`_ForwardScan`),
and a chunk whose CRC or records are wrong is skipped; each is reported to the callback as a
:class:`Damage`.
"""

from collections import defaultdict
import heapq
import os
from pathlib import Path
import struct
from typing import Callable, Dict, NamedTuple, Optional

from regseg_ros.bag_io.mcap_records import (
    _chunk_body, _Corrupt, _MESSAGE_BODY, _metadata_distro, _parse_channel, _parse_schema,
    _read_str, _RECORD, _string_map, _U16, _walk_records, RECORD_NAMES)
from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2 import storage_mcap
from rosbags.rosbag2.metadata import ReaderMetadata
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import get_msgdef, get_qos, McapReader, Statistics


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


# -- counting lost messages -------------------------------------------------------------------

def _count_damaged_chunk(body: bytes) -> Dict[int, int]:
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


def _count_partial_chunk(bio, pos: int, size: int) -> Dict[int, int]:
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


def _count_cut_record(bio, pos: int, opcode: int, length: int, size: int) -> Dict[int, int]:
    """
    Count the messages per channel lost with the record at ``pos`` that the file's end cuts.

    ``size`` is the file's size, ``opcode`` and ``length`` come from the record's header: a
    message record loses its message (where its channel id is left to read), a chunk what
    :func:`_count_partial_chunk` finds of it.
    """
    lost: Dict[int, int] = {}
    if opcode == 0x05:
        if length >= 2 and size - pos >= 11:
            bio.seek(pos + 9)
            lost[_U16.unpack(bio.read(2))[0]] = 1
    elif opcode == 0x06:
        lost = _count_partial_chunk(bio, pos, size)
    return lost


# -- forward scan of a file without a summary -------------------------------------------------

class _ForwardScan:
    """
    Reading of an MCAP file front to back, for a file without a (valid) summary and footer.

    Schemas and channels go into ``schemas`` and ``channels`` (the storage's tables) as they are
    read, so a damage report names the topics defined so far; ``damage`` reports a damaged part
    (:meth:`_McapReaderStorage._damage`). A damaged chunk is reported once the message indexes
    that follow it are read: they replace the counts estimated from its records with exact ones.
    After :meth:`run`, ``counts`` (messages per channel), ``times`` (first and last log time),
    ``schema_of`` (schema id per channel), ``bad`` and ``distro`` hold what the file gave.
    """

    def __init__(self, bio, schemas: dict, channels: dict,
                 damage: Callable[[int, str, Dict[int, int], bool, bool], None]) -> None:
        self.bio = bio
        self.schemas = schemas
        self.channels = channels
        self._damage = damage
        self.counts: Dict[int, int] = defaultdict(int)
        self.times = [2**63 - 1, 0]
        self.schema_of: Dict[int, int] = {}
        self.bad: Dict[int, int] = {}  # chunk offset -> 1 (skipped by the message pass)
        self.distro: Optional[str] = None
        # A damaged chunk whose message indexes follow: [offset, problem, lost, exact].
        self._pending: Optional[list] = None

    def run(self, pos: int) -> int:
        """Read the records from ``pos`` on; return where the data section ends, as far as read."""
        bio = self.bio
        bio.seek(0, os.SEEK_END)
        size = bio.tell()
        end_of_data, clean_end = None, False
        while True:
            if pos >= size:
                clean_end = pos == size
                break
            bio.seek(pos)
            head = bio.read(9)
            if len(head) < 9:
                self._flush()
                self._damage(pos, f'the file ends {size - pos} bytes into a record header: '
                             'the recording was cut short', {}, False, False)
                break
            opcode, length = _RECORD.unpack(head)
            end = pos + 9 + length
            name = RECORD_NAMES.get(opcode, f'unknown ({opcode:#04x})')
            if opcode != 0x07:
                self._flush()
            if end > size:
                lost = _count_cut_record(bio, pos, opcode, length, size)
                self._damage(pos, f'the file ends {size - pos} bytes into a {name} record '
                             f'of {9 + length} bytes ({end - size} bytes missing): the '
                             'recording was cut short', lost, False, opcode == 0x06)
                break
            if opcode == 0x0F:
                end_of_data = pos
                break
            self._read(pos, head, opcode, length)
            pos = end
        self._flush()
        if end_of_data is not None:
            self._damage(end_of_data, 'the summary or footer after the data section is missing '
                         'or invalid; all the data was read', {}, True, False)
        elif clean_end:
            self._damage(size, 'the file ends after a whole record but without its data end, '
                         'summary and footer: the recording was cut short', {}, False, False)
        return end_of_data if end_of_data is not None else pos

    def _read(self, pos: int, head: bytes, opcode: int, length: int) -> None:
        """Take in the whole record at ``pos``, whose header ``head`` was just read."""
        bio = self.bio
        if opcode in (0x03, 0x04, 0x05):
            view = memoryview(head + bio.read(length))
            self._take(view, 0, 9 + length)
        elif opcode == 0x06:
            body = bio.read(length)
            try:
                records = _chunk_body(pos, body)
                self._take(records, 0, len(records))
            except _Corrupt as exc:
                self.bad[pos] = 1
                lost = _count_damaged_chunk(body)
                self._pending = [pos, f'chunk {exc}', lost, False]
        elif opcode == 0x07 and self._pending is not None:
            body = bio.read(min(length, 6))
            if len(body) == 6:
                cid, entries = struct.unpack('<HI', body)
                pending = self._pending
                if not pending[3]:  # the first index replaces the estimate from the records
                    pending[2], pending[3] = {}, True
                pending[2][cid] = pending[2].get(cid, 0) + entries // 16
        elif opcode == 0x0C:
            view = memoryview(bio.read(length))
            name_, after = _read_str(view, 0, length)
            if name_ == b'rosbag2':
                self.distro = _metadata_distro(view, 0, length) or self.distro

    def _flush(self) -> None:
        """Report the pending damaged chunk, if there is one."""
        if self._pending is not None:
            offset, problem, lost, exact = self._pending
            self._pending = None
            self._damage(offset, problem, lost, exact, True)

    def _take(self, view, start, end) -> None:
        """Collect definitions and counts from records (of the data section or a chunk)."""
        schemas, channels, schema_of = self.schemas, self.channels, self.schema_of
        counts, times = self.counts, self.times
        for opcode, body, rec_end in _walk_records(view, end, start):
            if opcode == 0x03:
                schema = _parse_schema(view, body, rec_end)
                schemas[schema.id] = schema
            elif opcode == 0x04:
                channel, sid = _parse_channel(view, body, rec_end)
                channels[channel.id] = channel
                schema_of[channel.id] = sid
            elif opcode == 0x05:
                cid, _, log_time, _ = _MESSAGE_BODY.unpack_from(view, body)
                counts[cid] += 1
                times[0], times[1] = min(times[0], log_time), max(times[1], log_time)


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
        for table in (self.schemas, self.channels, self.chunks, self.connections):
            table.clear()
        scan = _ForwardScan(self.bio, self.schemas, self.channels, self._damage)
        self._scan = {'end': scan.run(self.data_start), 'bad': scan.bad}
        self.data_end = self._scan['end']
        counts, times = scan.counts, scan.times
        for cid, channel in self.channels.items():
            schema = self.schemas.get(scan.schema_of.get(cid, 0))
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
            times[1] + 1 if total else 0, total, None, None, scan.distro, None)

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
            records = _chunk_body(offset, body)
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
                records = _chunk_body(pos, bio.read(length))
                messages = sorted(self._messages_of(records, channel_map, start, stop, pos),
                                  key=lambda m: m[0])
            else:
                messages = ()
            for log_time, _, conn, data, publish, sequence in messages:
                yield conn, log_time, publish, sequence, data
            pos += 9 + length


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
