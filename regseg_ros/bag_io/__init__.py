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
Imports ``rosbags``: import this package only where rosbags is installed.

Modules: :mod:`.writer` (:class:`BagWriter`, its MCAP and sqlite3 storages), :mod:`.reader`
(:class:`BagReader`, its MCAP storage and the salvaging of damaged files), :mod:`.mcap_records`
(MCAP record layouts and parsing), :mod:`.direct_file` (the ``O_DIRECT`` file) and :mod:`.crc`
(``crc32_combine``).
"""

from regseg_ros.bag_io.crc import crc32_combine
from regseg_ros.bag_io.direct_file import DIRECT_ALIGN, STAGE_BYTES
from regseg_ros.bag_io.mcap_records import MAGIC, RECORD_NAMES
from regseg_ros.bag_io.reader import BagReader, Damage, DamageHandler
from regseg_ros.bag_io.writer import (
    BagWriter, CHUNK_BYTES, DROP_BEHIND_BYTES, LARGE, NOT_A_DISTRO, set_ros_distro,
    SQLITE_PAGE_BYTES)

__all__ = [
    'BagReader', 'BagWriter', 'CHUNK_BYTES', 'crc32_combine', 'Damage', 'DamageHandler',
    'DIRECT_ALIGN', 'DROP_BEHIND_BYTES', 'LARGE', 'MAGIC', 'NOT_A_DISTRO', 'RECORD_NAMES',
    'set_ros_distro', 'SQLITE_PAGE_BYTES', 'STAGE_BYTES']
