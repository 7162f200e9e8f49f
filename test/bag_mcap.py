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

"""Test helpers: read MCAP files with the official ``mcap`` library and check their CRCs."""

import struct
import zlib

from mcap.reader import make_reader
from mcap.records import Chunk, DataEnd
from mcap.stream_reader import StreamReader


def official_messages(path):
    """Return [(topic, log time, publish time, sequence, data)] as the official reader reads."""
    with open(path, 'rb') as f:
        reader = make_reader(f, validate_crcs=True)
        return [(channel.topic, msg.log_time, msg.publish_time, msg.sequence, bytes(msg.data))
                for _, channel, msg in reader.iter_messages(log_time_order=True)]


def official_summary(path):
    """Return the header, summary and metadata records of an MCAP file (official reader)."""
    with open(path, 'rb') as f:
        reader = make_reader(f, validate_crcs=True)
        return reader.get_header(), reader.get_summary(), list(reader.iter_metadata())


def check_crcs(path):
    """
    Assert every CRC of an MCAP file is written and right; return the number of chunks.

    The official StreamReader checks chunk CRCs and the DataEnd CRC (a zero CRC means "none" and
    is not checked: it is refused here); the summary CRC in the footer is checked by hand.
    """
    chunks = 0
    with open(path, 'rb') as f:
        for record in StreamReader(f, validate_crcs=True, emit_chunks=True).records:
            if isinstance(record, Chunk):
                assert record.uncompressed_crc != 0
                assert zlib.crc32(record.data) == record.uncompressed_crc
                chunks += 1
            elif isinstance(record, DataEnd):
                assert record.data_section_crc != 0
    blob = open(path, 'rb').read()
    summary_start, _, crc = struct.unpack('<QQI', blob[-8 - 20:-8])
    assert crc != 0 and zlib.crc32(blob[summary_start:len(blob) - 8 - 4]) == crc
    return chunks


def chunk_spans(path):
    """
    Return ({channel id: topic}, [(start, end, [(channel id, log, publish, sequence, data)])]).

    One entry per chunk record of the file, in file order, with the messages it holds (read
    with the official library's record parsers).
    """
    from io import BytesIO

    from mcap.data_stream import ReadDataStream
    from mcap.records import Channel, Message
    from mcap.stream_reader import breakup_chunk
    blob = open(path, 'rb').read()
    topics, spans, pos = {}, [], 8
    while pos + 9 <= len(blob):
        opcode, length = struct.unpack_from('<BQ', blob, pos)
        end = pos + 9 + length
        if opcode == 0x06:
            chunk = Chunk.read(ReadDataStream(BytesIO(blob[pos + 9:end])))
            msgs = []
            for record in breakup_chunk(chunk):
                if isinstance(record, Channel):
                    topics[record.id] = record.topic
                elif isinstance(record, Message):
                    msgs.append((record.channel_id, record.log_time, record.publish_time,
                                 record.sequence, bytes(record.data)))
            spans.append((pos, end, msgs))
        elif opcode == 0x0F:
            break
        pos = end
    return topics, spans
