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

"""regseg_ros.bag_io: the zero-copy MCAP reader and writer give what rosbags' own give."""

from contextlib import closing
import errno
import mmap
import os
from pathlib import Path
import sqlite3

from bag_mcap import check_crcs, official_messages
import numpy as np
import pytest
from regseg_ros.bag_io import BagReader, BagWriter, CHUNK_BYTES, LARGE, SQLITE_PAGE_BYTES
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

STORE = get_typestore(Stores.ROS2_HUMBLE)
TOPICS = ('/cam/image_raw', '/cam/image_raw/labels', '/chatter')
# Sizes around the thresholds: small records, referenced ones, ones that fill a chunk alone.
SIZES = (0, 7, LARGE - 1, LARGE, LARGE + 1, CHUNK_BYTES - 40, CHUNK_BYTES + 3, 3 * CHUNK_BYTES)


def messages(count=60, seed=0):
    """Return (topic index, timestamp, payload) with mixed sizes and out-of-order times."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        size = int(SIZES[i % len(SIZES)])
        stamp = 1_000_000 + i * 1000 + (500 if i % 7 == 3 else 0) - (1500 if i % 11 == 5 else 0)
        out.append((i % len(TOPICS), stamp, rng.integers(0, 256, size, np.uint8).tobytes()))
    return out


def write(cls, path: Path, msgs, storage=StoragePlugin.MCAP, as_view=False, before_close=None,
          **kwargs):
    writer = cls(path, version=9, storage_plugin=storage, **kwargs)
    writer.open()
    conns = [writer.add_connection(t, 'std_msgs/msg/String', typestore=STORE) for t in TOPICS]
    for index, stamp, data in msgs:
        writer.write(conns[index], stamp, memoryview(data) if as_view else data)
    if before_close:
        before_close(writer)
    writer.close()
    return path


def takes_o_direct(folder: Path) -> bool:
    """Whether the file system under ``folder`` accepts an O_DIRECT write of one page."""
    if not hasattr(os, 'O_DIRECT'):
        return False
    page = mmap.mmap(-1, 4096)
    try:
        fd = os.open(folder / 'probe', os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    try:
        os.write(fd, page)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(folder / 'probe')


def read(cls, path, **kwargs):
    with cls(path) as reader:
        conns = [c for c in reader.connections if c.topic in kwargs.pop('topics', TOPICS)]
        return [(c.topic, t, bytes(d)) for c, t, d in reader.messages(conns, **kwargs)]


@pytest.mark.parametrize('as_view', [False, True])
@pytest.mark.parametrize('mode', ['O_DIRECT', 'OS without O_DIRECT', 'O_DIRECT write refused',
                                  'cache=True'])
def test_writer_makes_the_same_mcap_file_as_rosbags(tmp_path, monkeypatch, as_view, mode):
    direct = takes_o_direct(tmp_path)
    options = {'cache': True} if mode == 'cache=True' else {}
    if mode == 'cache=True':
        direct = False
    elif mode == 'OS without O_DIRECT':
        monkeypatch.delattr(os, 'O_DIRECT', raising=False)
        direct = False
    elif mode == 'O_DIRECT write refused':
        # Some file systems open files with O_DIRECT and then refuse the writes (EINVAL).
        fcntl = pytest.importorskip('fcntl')
        if not direct:
            pytest.skip(f'the file system of {tmp_path} takes no O_DIRECT writes')
        real_write = os.write

        def refuse(fd, data):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                raise OSError(errno.EINVAL, 'Invalid argument')
            return real_write(fd, data)
        monkeypatch.setattr(os, 'write', refuse)
        direct = False
    msgs = messages()  # about 47 MiB: many staging buffers full
    seen = []
    ours = write(BagWriter, tmp_path / 'bag', msgs, as_view=as_view, **options,
                 before_close=lambda w: seen.append(getattr(w.storage.bio, 'direct', False)))
    assert seen == [direct]  # written past the page cache wherever the file system allows
    theirs = write(Writer, tmp_path / 'ref', msgs)
    # What rosbags writes, plus CRCs, sequence numbers 1, 2, ... per topic and publish times
    # (here: the log times), as the official MCAP reader reads them.
    assert check_crcs(ours / 'bag.mcap') > 20
    expected, seq = [], {}
    for i, t, d in msgs:
        seq[i] = seq.get(i, 0) + 1
        expected.append((TOPICS[i], t, t, seq[i], d))
    assert official_messages(ours / 'bag.mcap') == sorted(expected, key=lambda m: m[1])
    assert read(Reader, ours) == read(Reader, theirs) == [
        (TOPICS[i], t, d) for i, t, d in sorted(msgs, key=lambda m: m[1])]
    metadata = (ours / 'metadata.yaml').read_text()
    assert f'message_count: {len(msgs)}' in metadata and 'storage_identifier: mcap' in metadata


def test_writer_sqlite3_has_large_pages_and_reads_back(tmp_path):
    msgs = messages(20)
    write(BagWriter, tmp_path / 'bag', msgs, storage=StoragePlugin.SQLITE3)
    assert read(Reader, tmp_path / 'bag') == [
        (TOPICS[i], t, d) for i, t, d in sorted(msgs, key=lambda m: m[1])]
    with closing(sqlite3.connect(tmp_path / 'bag' / 'bag.db3')) as db:
        assert db.execute('PRAGMA page_size').fetchone() == (SQLITE_PAGE_BYTES,)
        assert db.execute('PRAGMA integrity_check').fetchone() == ('ok',)
        assert db.execute('SELECT COUNT(*) FROM messages').fetchone() == (len(msgs),)


@pytest.mark.parametrize('storage', [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_reader_yields_what_rosbags_yields(tmp_path, storage):
    msgs = messages()
    bag = write(Writer, tmp_path / 'bag', msgs, storage=storage)
    single = bag / ('bag.mcap' if storage == StoragePlugin.MCAP else 'bag.db3')
    stamps = sorted(t for _, t, _ in msgs)
    for path in (bag, single):
        assert read(BagReader, path) == read(Reader, path)
        window = {'start': stamps[10], 'stop': stamps[40]}
        assert read(BagReader, path, **window) == read(Reader, path, **window)
        assert len(read(BagReader, path, **window)) == 30
        only = {'topics': TOPICS[1:2]}
        assert read(BagReader, path, **only) == read(Reader, path, **only)


def test_reader_gives_views_not_copies(tmp_path):
    bag = write(Writer, tmp_path / 'bag', messages(10))
    with BagReader(bag) as reader:
        data = [d for _, _, d in reader.messages()]
    assert all(isinstance(d, memoryview) for d in data)


def test_reader_reports_a_corrupt_record_length(tmp_path):
    payload = bytes(range(256)) * 40
    bag = write(Writer, tmp_path / 'bag', [(0, 1000, payload)])
    path = bag / 'bag.mcap'
    blob = bytearray(path.read_bytes())
    start = blob.index(payload)
    # Message record: opcode 0x05, u64 length, then 22 bytes of fields before the data.
    assert blob[start - 31] == 0x05
    blob[start - 30:start - 22] = (2**40).to_bytes(8, 'little')
    path.write_bytes(bytes(blob))
    with pytest.raises(ReaderError, match=r'record of 1099511627776 bytes at offset \d+ runs past '
                       r'the chunk at offset \d+ of'):
        read(BagReader, bag)
