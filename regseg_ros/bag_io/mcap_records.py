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
The MCAP record layouts, and the parsing of records that the salvaging reader shares.

Struct layouts and opcodes of the records this package writes and reads, and parsers that raise
:class:`_Corrupt` for a malformed record instead of reading past it.
"""

import struct
from typing import Dict, Optional, Tuple
import zlib

from rosbags.rosbag2 import ReaderError
from rosbags.rosbag2.storage_mcap import Channel, decompress, Schema

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
RECORD_NAMES = {0x01: 'Header', 0x02: 'Footer', 0x03: 'Schema', 0x04: 'Channel',
                0x05: 'Message', 0x06: 'Chunk', 0x07: 'MessageIndex', 0x08: 'ChunkIndex',
                0x09: 'Attachment', 0x0A: 'AttachmentIndex', 0x0B: 'Statistics',
                0x0C: 'Metadata', 0x0D: 'MetadataIndex', 0x0E: 'SummaryOffset',
                0x0F: 'DataEnd'}


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


def _chunk_body(offset: int, body: bytes) -> memoryview:
    """Return the records of a chunk record's ``body``, checked; raise _Corrupt if wrong."""
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
