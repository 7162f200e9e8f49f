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
Segment the camera topics of a rosbag2 bag into a new bag; no ROS installation needed.

``segment_bag IN OUT`` copies every message of IN to OUT unchanged and adds, for each segmented
image topic, ``<base>/labels`` (mono8 class ids), ``<base>/drivable_mask`` (mono8, 255 where
drivable) and, with ``--overlay``, ``<base>/overlay`` (rgb8), each with the bag timestamp and
header (stamp, frame_id) of its input frame. ``<base>`` is the image topic; for a
``CompressedImage`` topic it is the topic without its trailing ``/compressed``
(``/cam/image_raw/compressed`` -> ``/cam/image_raw/labels``).

Bags are read and written with ``rosbags`` (mcap and sqlite3). Work is pipelined so inference
never waits for I/O: a reader thread walks the bag in order and hands image messages to a pool of
decoder threads (which also shrink frames to the network size for the torch CPU backend); the
calling thread batches decoded frames through ``backend.infer`` (PyTorch releases the GIL); a
writer thread derives the drivable mask and overlay from the labels exactly as
:class:`~regseg_ros.segmenter.Segmenter` does, serialises and writes. The queues between them are
bounded, so memory stays at a few batches whatever the size of the bag.
"""

import argparse
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
import glob
import os
from pathlib import Path
import queue
import re
import shutil
import sys
import threading
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.imaging import (
    blend, colorize, decode_compressed, decode_image, DEFAULT_MAX_INPUT_PIXELS, resize_rgb)
from regseg_ros.segmenter import Segmenter
from regseg_ros.tools.cli import (
    add_model_arguments, ArgumentParser, build_segmenter, err as _err, format_size)
from regseg_ros.tools.progress import Progress

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
IMAGE_TYPES = (IMAGE, COMPRESSED)
OUTPUT_ENCODINGS = {'labels': 'mono8', 'drivable_mask': 'mono8', 'overlay': 'rgb8'}
STORAGES = ('mcap', 'sqlite3')
# Files a rosbag2 folder may hold; --overwrite deletes a folder only if it holds nothing else.
BAG_FILES = ('metadata.yaml', 'metadata.yaml.tmp')
BAG_SUFFIXES = ('.mcap', '.db3', '.db3-shm', '.db3-wal', '.db3-journal', '.mcap.zstd',
                '.db3.zstd')
MAX_REPORTS_PER_TOPIC = 10
PENDING_BYTES = 256 * 2**20   # flush a partial batch when this much waits for the next frame
DEFAULT_NETWORK_SIZE = (512, 1024)
# Offered QoS of the output topics where the camera topic has none recorded: rclcpp's default
# (keep last 10, reliable, volatile; the rest the system default).
DEFAULT_QOS = {'history': 1, 'depth': 10, 'reliability': 1, 'durability': 2,
               'deadline': {'sec': 0, 'nsec': 0}, 'lifespan': {'sec': 0, 'nsec': 0},
               'liveliness': 0, 'liveliness_lease_duration': {'sec': 0, 'nsec': 0},
               'avoid_ros_namespace_conventions': False}
# Not ROS distributions: what rosbags writes in place of one.
NOT_A_DISTRO = ('', 'rosbags')
PARTIAL = '.partial-'  # OUT is written as OUT.partial-<pid> and renamed when complete
_END, _COMMIT, _ABORT = object(), object(), object()


# -- the bag job -----------------------------------------------------------------------------

def output_base(topic: str, msgtype: str) -> str:
    """Name the outputs of an image topic after its base topic (``.../compressed`` stripped)."""
    if msgtype == COMPRESSED and topic.endswith('/compressed') and len(topic) > 11:
        return topic[:-len('/compressed')]
    return topic


def _rosbags():
    try:
        import rosbags.interfaces as interfaces
        import rosbags.rosbag2 as rosbag2
        import rosbags.typesys as typesys
    except ImportError:
        raise RegsegError('the bag tools need the rosbags package, which is not installed: '
                          'pip install rosbags==0.11.9') from None
    try:
        from regseg_ros.bag_io import BagReader, BagWriter
    except (ImportError, AttributeError) as exc:
        # bag_io builds on rosbags' MCAP storage classes; another rosbags release may lack them.
        _err(f'segment_bag: note: rosbags {_version("rosbags")} does not have what the '
             f'zero-copy bag I/O needs ({exc}); using its own, slower reader and writer '
             '(tested: rosbags==0.11.9)')
        BagReader, BagWriter = rosbag2.Reader, rosbag2.Writer
    return rosbag2, typesys, interfaces, BagReader, BagWriter


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return '(unknown version)'


def _storage_of(path: Path) -> str:
    names = [path.name] if path.is_file() else [p.name for p in path.iterdir()]
    for storage, suffix in (('mcap', '.mcap'), ('sqlite3', '.db3')):
        if any(suffix in name for name in names):
            return storage
    return 'sqlite3'


def _check_output(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse an existing OUT unless --overwrite, and then unless it is only a bag folder."""
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise RegsegError(f'output {str(dst)!r} is or overlaps the input bag {str(src)!r}: '
                          'write the output somewhere else')
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise RegsegError(f'output {str(dst)!r} exists already: pass --overwrite to replace it, '
                          'or choose another OUT')
    if dst.is_dir() and not dst.is_symlink():
        foreign = _foreign(dst)
        if foreign:
            raise RegsegError(
                f'--overwrite refuses to delete {str(dst)!r}: it holds {sorted(foreign)[:5]}, '
                'which are not rosbag2 files; remove it yourself or choose another OUT')
    else:
        raise RegsegError(f'output {str(dst)!r} exists and is not a bag folder: remove it '
                          'yourself or choose another OUT')


def _foreign(folder: Path) -> List[str]:
    """Names in ``folder`` that are not rosbag2 bag files."""
    return [p.name for p in folder.iterdir() if p.is_dir() or not (
        p.name in BAG_FILES or p.name.endswith(BAG_SUFFIXES))]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has only just started writing: an earlier run's leftover
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but belongs to someone else
    return True


def remove_stale_partials(dst: Path, log=_err) -> List[Path]:
    """
    Remove ``OUT.partial-<pid>`` folders of processes that no longer run (killed mid-run).

    A folder of a process still running (another segment_bag writing the same OUT) is left
    alone, and so is anything that is not only bag files. Returns the folders removed.
    """
    removed = []
    for path in sorted(dst.parent.glob(glob.escape(dst.name) + PARTIAL + '*')):
        match = re.fullmatch(re.escape(dst.name + PARTIAL) + r'(\d+)(-old)?', path.name)
        if not match or not path.is_dir() or path.is_symlink() or _alive(int(match[1])):
            continue
        if _foreign(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log(f'segment_bag: removed {str(path)!r}, the unfinished output of an earlier run '
            f'(process {match[1]}, no longer running)')
        removed.append(path)
    return removed


def _lost_text(lost: Dict[str, int], exact: bool) -> str:
    total = sum(lost.values())
    if not lost:
        return 'no messages' if exact else 'an unknown number of messages'
    parts = ', '.join(f'{t}: {n}' for t, n in sorted(lost.items()))
    return f'{"" if exact else "~"}{total} message(s) ({parts})'


@dataclass
class Summary:
    """What a run did: counts per topic, skipped frames and the time taken."""

    frames: Dict[str, int] = field(default_factory=dict)      # segmented, per input topic
    skipped: Dict[str, int] = field(default_factory=dict)     # corrupt, per input topic
    copied: int = 0                                           # original messages written
    outputs: List[str] = field(default_factory=list)          # topics added
    dropped_topics: List[str] = field(default_factory=list)   # not copyable (no definition)
    read: int = 0                                             # messages read from IN
    damages: list = field(default_factory=list)               # bag_io.Damage, salvaged input
    seconds: float = 0.0
    storage: str = ''

    @property
    def total_frames(self) -> int:
        return sum(self.frames.values())

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def lost(self) -> int:
        """Messages known (or estimated) to be lost to damage in the input."""
        return sum(d.lost_total for d in self.damages)

    @property
    def chunks_skipped(self) -> int:
        """Damaged MCAP chunks skipped."""
        return sum(1 for d in self.damages if d.chunk)

    @property
    def fps(self) -> float:
        done = self.total_frames + self.total_skipped
        return done / self.seconds if self.seconds > 0 else 0.0


class _Item:
    """One message on its way through the pipeline (in bag order)."""

    __slots__ = ('conn', 'timestamp', 'publish', 'sequence', 'raw', 'future', 'is_frame',
                 'header', 'size', 'net', 'rgb', 'labels', 'error')

    def __init__(self, conn, timestamp: int, publish: int, sequence: int, raw,
                 future: Optional[Future] = None):
        self.conn = conn
        self.timestamp = timestamp
        self.publish = publish
        self.sequence = sequence
        self.raw = raw
        self.future = future
        self.is_frame = future is not None
        self.header = self.size = self.net = self.rgb = self.labels = self.error = None


class _Failure:
    """An exception raised in the reader thread, handed to the main thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class BagSegmenter:
    """Plan (topics, outputs, storage) on construction; :meth:`run` segments and writes."""

    def __init__(self, src, dst, topics: Optional[Sequence[str]] = None, overlay: bool = False,
                 storage: Optional[str] = None, overwrite: bool = False,
                 max_pixels: int = DEFAULT_MAX_INPUT_PIXELS, strict: bool = False):
        self.max_pixels = max_pixels
        self.strict = strict
        (self.rosbag2, self.typesys, self.interfaces, self.BagReader,
         self.BagWriter) = _rosbags()
        self.src, self.dst = Path(src), Path(dst)
        if not (self.src.exists() or self.src.is_symlink()):
            raise RegsegError(f'input bag {str(self.src)!r} does not exist: pass a rosbag2 '
                              'folder (with metadata.yaml) or a .mcap/.db3 file')
        if storage is not None and storage not in STORAGES:
            raise RegsegError(f'storage {storage!r} is not one of {list(STORAGES)}')
        self.storage = storage or _storage_of(self.src)
        self.outputs = ('labels', 'drivable_mask') + (('overlay',) if overlay else ())
        self.overwrite = overwrite
        _check_output(self.src, self.dst, overwrite)
        self.planned_damages: list = []
        reader = self._open_reader(self.planned_damages.append)
        try:
            self._plan(reader, topics)
        finally:
            reader.close()

    def _strict(self, damage) -> None:
        if self.strict:
            raise RegsegError(
                f'{damage.path}: {damage.problem} at offset {damage.offset}: --strict refuses '
                'damaged input; leave out --strict to salvage what can be read')

    def _open_reader(self, on_damage):
        def handle(damage):
            self._strict(damage)
            on_damage(damage)
        try:
            try:
                reader = self.BagReader(self.src, on_damage=handle)
            except TypeError:  # rosbags' own Reader (see _rosbags): no salvaging
                reader = self.BagReader(self.src)
            reader.open()
        except RegsegError:
            raise
        except Exception as exc:  # noqa: B902 rosbags, sqlite and YAML errors alike
            raise RegsegError(f'cannot read input bag {str(self.src)!r} '
                              f'({type(exc).__name__}: {exc}): is it a rosbag2 folder, .mcap '
                              'or .db3?') from None
        return reader

    def _plan(self, reader, topics: Optional[Sequence[str]]) -> None:
        conns = list(reader.connections)
        by_topic: Dict[str, list] = {}
        for conn in conns:
            by_topic.setdefault(conn.topic, []).append(conn)
        image_topics = sorted(t for t, cs in by_topic.items()
                              if any(c.msgtype in IMAGE_TYPES for c in cs))
        if topics:
            for topic in topics:
                if topic not in by_topic:
                    raise RegsegError(
                        f'topic {topic!r} is not in {str(self.src)!r}: its image topics are '
                        f'{image_topics}')
                if topic not in image_topics:
                    types = sorted({c.msgtype for c in by_topic[topic]})
                    raise RegsegError(
                        f'topic {topic!r} carries {types}, not {IMAGE} or {COMPRESSED}: choose '
                        f'from {image_topics}')
            chosen = list(dict.fromkeys(topics))
        else:
            chosen = image_topics
        if not chosen:
            damaged = ''.join(f'; the file is damaged: {d.problem} at offset {d.offset}'
                              for d in self.planned_damages[:1])
            raise RegsegError(f'{str(self.src)!r} has no {IMAGE} or {COMPRESSED} topics: nothing '
                              f'to segment{damaged}')
        self.inputs = {c.id: c for t in chosen for c in by_topic[t] if c.msgtype in IMAGE_TYPES}
        self.base: Dict[int, str] = {}
        claimed: Dict[str, str] = {}
        for conn in self.inputs.values():
            base = output_base(conn.topic, conn.msgtype)
            if claimed.setdefault(base, conn.topic) != conn.topic:
                raise RegsegError(
                    f'topics {claimed[base]!r} and {conn.topic!r} would both write '
                    f'{base}/labels: segment one of them (--topics)')
            for name in self.outputs:
                if f'{base}/{name}' in by_topic:
                    raise RegsegError(
                        f'output topic {base}/{name} is already in the input bag (was it '
                        'segmented before?): choose other --topics or strip it first')
            self.base[conn.id] = base
        self.total_frames = sum(c.msgcount for c in self.inputs.values())
        self.connections = conns
        self._stores(reader)

    def _stores(self, reader) -> None:
        """Pick the type store the bag was recorded with; prefer definitions stored in it."""
        typesys, fmt = self.typesys, self.interfaces.MessageDefinitionFormat
        try:
            distro = (reader.ros_distro or '').lower()
        except Exception:  # noqa: B902 single-file readers may lack the field
            distro = ''
        if distro in NOT_A_DISTRO:
            distro = os.environ.get('ROS_DISTRO', '').lower()
        # Written into OUT as rosbag2 does: the input's distribution, else the running one.
        self.ros_distro = distro or None
        stores = typesys.Stores.__members__
        store = (typesys.Stores.LATEST if distro == 'rolling'
                 else stores.get(f'ROS2_{distro.upper()}', typesys.Stores.ROS2_HUMBLE))
        self.write_store = typesys.get_typestore(store)
        read_store = typesys.get_typestore(store)
        types = {}
        for conn in self.inputs.values():
            data = conn.msgdef.data
            if conn.msgdef.format == fmt.MSG and data:
                types.update(typesys.get_types_from_msg(data, conn.msgtype))
            elif conn.msgdef.format == fmt.IDL and data:
                sep = '=' * 80 + '\n'
                for part in data.split(sep)[1:] if data.startswith(sep) else [data]:
                    if part.startswith('IDL: '):
                        part = part.split('\n', 1)[1]
                    types.update(typesys.get_types_from_idl(part))
        if types:
            try:
                read_store.register(types)
            except typesys.TypesysError:
                # The bag defines the types differently from the store: trust the bag.
                read_store = typesys.get_typestore(typesys.Stores.EMPTY)
                read_store.register(types)
        self.read_store = read_store
        for msgtype in IMAGE_TYPES:
            if msgtype in read_store.fielddefs:
                read_store.get_msgdef(msgtype)  # build the (de)serialisers before threads start
        self.write_store.get_msgdef(IMAGE)

    # -- run -----------------------------------------------------------------------------------

    def run(self, segmenter: Segmenter, batch: int = 1, progress: bool = True,
            decode_threads: Optional[int] = None) -> Summary:
        """Segment the chosen topics and write OUT; return what was done."""
        if batch < 1:
            raise RegsegError(f'batch {batch!r} must be at least 1')
        threads = decode_threads or min(8, max(2, os.cpu_count() or 2))
        summary = Summary(frames={c.topic: 0 for c in self.inputs.values()},
                          skipped={c.topic: 0 for c in self.inputs.values()},
                          storage=self.storage)
        self._segmenter, self._summary = segmenter, summary
        self._drivable_lut = segmenter.label_set.drivable_lut(segmenter.drivable_classes)
        backend = segmenter.backend
        # The torch CPU backend shrinks each frame to the network size with resize_rgb first
        # thing; the decoder threads do that instead, off the inference thread (same pixels).
        self._net_size = tuple(backend.config.input_size)
        self._pre_resize = backend.name == 'torch' and str(backend.config.device) == 'cpu'
        self._reports: Dict[str, int] = {}
        bar = Progress(total=self.total_frames or None, desc='segment_bag', enabled=progress)
        self._bar = bar
        _check_output(self.src, self.dst, self.overwrite)
        remove_stale_partials(self.dst, log=bar.write)
        # OUT is written under a temporary name and renamed once complete (metadata.yaml
        # included): a run killed half-way never leaves anything that looks like a finished bag.
        self.tmp = self.dst.parent / f'{self.dst.name}{PARTIAL}{os.getpid()}'
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # this process's own, from an earlier failed run
        self._created = False
        try:
            self._pipeline(batch, threads)
            self._finish()
        except BaseException:
            if self._created:
                shutil.rmtree(self.tmp, ignore_errors=True)  # a half-written bag is no use
            raise
        finally:
            bar.close()
        summary.seconds = self._seconds
        return summary

    def _finish(self) -> None:
        """Move the finished bag to OUT (replacing the old OUT only now, with --overwrite)."""
        old = None
        try:
            if self.dst.exists() or self.dst.is_symlink():
                _check_output(self.src, self.dst, self.overwrite)
                old = self.dst.parent / f'{self.tmp.name}-old'
                os.rename(self.dst, old)
            os.rename(self.tmp, self.dst)
        except OSError as exc:
            raise RegsegError(f'cannot move the finished bag {str(self.tmp)!r} to '
                              f'{str(self.dst)!r}: {exc}') from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _damaged(self, damage) -> None:
        """Report a damaged part of the input found while reading it (reader thread)."""
        self._summary.damages.append(damage)
        self._bar.write(f'segment_bag: warning: {damage.path}: {damage.problem} at offset '
                        f'{damage.offset}: skipped '
                        f'{_lost_text(damage.lost, damage.exact)}')

    def _pipeline(self, batch: int, threads: int) -> None:
        """
        Run reader, decoders, inference (this thread) and writer until the bag is done.

        The reader and writer threads each open, use and close their own bag: sqlite3
        connections must stay in the thread that made them.
        """
        stop = threading.Event()
        inbox: queue.Queue = queue.Queue(maxsize=max(8, 2 * batch + threads))
        outbox: queue.Queue = queue.Queue(maxsize=2)
        ready = threading.Event()
        self._writer_error: Optional[BaseException] = None
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix='segment_bag-decode')
        writer_thread = threading.Thread(target=self._write, args=(outbox, ready),
                                         daemon=True, name='segment_bag-writer')
        reader_thread = threading.Thread(target=self._read, args=(pool, inbox, stop),
                                         daemon=True, name='segment_bag-reader')
        writer_thread.start()
        commit = False
        try:
            ready.wait()
            if self._writer_error is None:
                reader_thread.start()
                self._infer(inbox, outbox, batch)
                commit = True
        finally:
            stop.set()
            outbox.put(_COMMIT if commit else _ABORT)
            writer_thread.join()
            if reader_thread.is_alive():
                reader_thread.join()
            pool.shutdown(wait=True, cancel_futures=True)
        error = self._writer_error
        if isinstance(error, RegsegError):
            raise error
        if error is not None:
            raise RegsegError(f'cannot write {str(self.dst)!r}: {type(error).__name__}: '
                              f'{error}') from error

    def _rihs01(self, msgtype: str) -> str:
        """Return the type hash of ``msgtype`` as the bag defines it (else the store's), or ''."""
        for store in (self.read_store, self.write_store):
            if msgtype in store.fielddefs:
                try:
                    return store.hash_rihs01(msgtype)
                except Exception:  # noqa: B902 a definition rosbags cannot hash
                    continue
        return ''

    def _definition(self, conn) -> Optional[dict]:
        """Return the add_connection arguments that keep the bag's own definition text."""
        none = self.interfaces.MessageDefinitionFormat.NONE
        data = conn.msgdef.data if conn.msgdef.format != none else ''
        digest = (conn.digest or self._rihs01(conn.msgtype)) if data else ''
        if data and digest:
            return {'msgdef': data, 'rihs01': digest}
        if conn.msgtype in self.write_store.fielddefs:
            return {'typestore': self.write_store}
        return None

    def _add_connections(self, writer) -> None:
        from rosbags.rosbag2.metadata import parse_qos
        self._full_write = self.BagWriter is not self.rosbag2.Writer
        self._out_conn: Dict[int, object] = {}
        image = None  # the definition the output topics share: the bag's Image, if it has one
        for conn in self.connections:
            ext = conn.ext
            kwargs = self._definition(conn)
            if kwargs is None:
                self._summary.dropped_topics.append(conn.topic)
                self._bar.write(
                    f'warning: not copying {conn.topic} ({conn.msgtype}): the bag stores no '
                    'definition of that type and the ROS 2 type store does not know it')
                continue
            if conn.msgtype == IMAGE and image is None:
                image = kwargs
            self._out_conn[conn.id] = writer.add_connection(
                conn.topic, conn.msgtype, serialization_format=ext.serialization_format,
                offered_qos_profiles=ext.offered_qos_profiles, **kwargs)
        image = image or {'typestore': self.write_store}
        self._seg_conn: Dict[str, Dict[str, object]] = {}
        for conn_id, base in self.base.items():
            if base in self._seg_conn:
                continue
            ext = self.inputs[conn_id].ext
            qos = ext.offered_qos_profiles or parse_qos([DEFAULT_QOS])
            self._seg_conn[base] = {
                name: writer.add_connection(f'{base}/{name}', IMAGE,
                                            serialization_format=ext.serialization_format,
                                            offered_qos_profiles=qos, **image)
                for name in self.outputs}
            self._summary.outputs += [f'{base}/{name}' for name in self.outputs]

    def _decode(self, conn, raw):
        """Return (header, frame size, network input, full frame if --overlay needs it)."""
        # A memoryview: rosbags slices the CDR payload off it, which copies a bytes object.
        msg = self.read_store.deserialize_cdr(memoryview(raw), conn.msgtype)
        # Decoding depends on the network size alone (a large JPEG is decoded at half size), as
        # in the node: a frame's labels do not change with the outputs asked for.
        if conn.msgtype == COMPRESSED:
            rgb, size = decode_compressed(msg.format, msg.data, self.max_pixels, self._net_size)
        else:
            rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               bool(msg.is_bigendian), self.max_pixels)
            size = rgb.shape[:2]
        net = resize_rgb(rgb, *self._net_size) if self._pre_resize else rgb
        keep = rgb if 'overlay' in self.outputs else None
        return msg.header, size, net, keep

    @staticmethod
    def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, pool, inbox, stop) -> None:
        """Reader thread: bag order in, decode jobs submitted ahead of inference."""
        try:
            reader = self._open_reader(self._damaged)
            try:
                records = (reader.records() if hasattr(reader, 'records')
                           else ((c, t, t, 0, d) for c, t, d in reader.messages()))
                for conn, timestamp, publish, sequence, raw in records:
                    future = (pool.submit(self._decode, conn, raw) if conn.id in self.inputs
                              else None)
                    item = _Item(conn, timestamp, publish, sequence, raw, future)
                    if not self._put(inbox, item, stop):
                        return
            finally:
                reader.close()
            self._put(inbox, _END, stop)
        except BaseException as exc:  # noqa: B902 handed to the main thread, which raises it
            self._put(inbox, _Failure(exc), stop)

    def _infer(self, inbox, outbox, batch: int) -> None:
        """Collect frames in bag order and segment them in batches (in the calling thread)."""
        pending: List[_Item] = []
        frames: List[_Item] = []
        size = 0
        while True:
            item = inbox.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                if isinstance(item.exc, RegsegError):
                    raise item.exc
                raise RegsegError(f'cannot read {str(self.src)!r}: '
                                  f'{type(item.exc).__name__}: {item.exc}') from item.exc
            size += len(item.raw)
            if item.future is not None:
                try:
                    item.header, item.size, item.net, item.rgb = item.future.result()
                except Exception as exc:  # noqa: B902 a corrupt frame is reported and skipped
                    item.error = exc
                else:
                    frames.append(item)
                    size += item.net.nbytes + (item.rgb.nbytes if item.rgb is not None else 0)
                item.future = None
            pending.append(item)
            if len(frames) >= batch or (frames and size > PENDING_BYTES) or not frames:
                self._flush(pending, frames, outbox)
                pending, frames, size = [], [], 0
                if self._writer_error is not None:
                    return  # the writer failed: stop reading, _pipeline raises its error
        self._flush(pending, frames, outbox)

    def _flush(self, pending: List[_Item], frames: List[_Item], outbox) -> None:
        if frames:
            # Labels only here; the writer thread derives the mask and overlay from them.
            preds = self._segmenter.backend.infer([f.net for f in frames],
                                                  [f.size for f in frames])
            for item, pred in zip(frames, preds):
                item.labels, item.net = pred.labels, None
        if pending:
            outbox.put(pending)

    def _write(self, outbox, ready) -> None:
        """Writer thread: open OUT, then write originals and results in bag order; close."""
        plugin = {'mcap': self.rosbag2.StoragePlugin.MCAP,
                  'sqlite3': self.rosbag2.StoragePlugin.SQLITE3}[self.storage]
        writer = None
        try:
            try:
                writer = self.BagWriter(self.tmp, version=8, storage_plugin=plugin,
                                        stem=self.dst.name, ros_distro=self.ros_distro)
            except TypeError:  # rosbags' own Writer (see _rosbags)
                writer = self.BagWriter(self.tmp, version=8, storage_plugin=plugin)
            self._created = True  # the temporary name is ours: whatever open() leaves there too
            writer.open()
            self._add_connections(writer)
        except BaseException as exc:  # noqa: B902 handed to the main thread
            self._writer_error = exc
        ready.set()
        while True:
            items = outbox.get()
            if items is _COMMIT or items is _ABORT:
                break
            if self._writer_error is None:
                self._write_items(writer, items)
        if writer is None or writer.storage is None:
            return
        if items is _COMMIT and self._writer_error is None:
            try:
                writer.close()
                self._seconds = self._bar.elapsed
                return
            except BaseException as exc:  # noqa: B902 handed to the main thread
                self._writer_error = exc
        try:
            writer.abort()
        except Exception:  # noqa: B902 the first error is the one to report
            pass  # and the half-written bag is deleted

    def _write_items(self, writer, items: List[_Item]) -> None:
        """Write one flushed run of messages; keep the first error for the main thread."""
        store = self.write_store
        image = store.types[IMAGE]
        header_t = store.types['std_msgs/msg/Header']
        time_t = store.types['builtin_interfaces/msg/Time']
        summary = self._summary
        try:
            for item in items:
                out = self._out_conn.get(item.conn.id)
                summary.read += 1
                if out is not None:
                    if self._full_write:  # the original's publish time and sequence, unchanged
                        writer.write(out, item.timestamp, item.raw, item.publish, item.sequence)
                    else:
                        writer.write(out, item.timestamp, item.raw)
                    summary.copied += 1
                if not item.is_frame:
                    continue
                topic = item.conn.topic
                if item.error is not None:
                    self._report(item)
                    summary.skipped[topic] += 1
                else:
                    stamp = item.header.stamp
                    header = header_t(stamp=time_t(sec=stamp.sec, nanosec=stamp.nanosec),
                                      frame_id=item.header.frame_id)
                    conns = self._seg_conn[self.base[item.conn.id]]
                    for name in self.outputs:
                        array = self._output(name, item)
                        height, width = array.shape[:2]
                        channels = array.shape[2] if array.ndim == 3 else 1
                        msg = image(header=header, height=height, width=width,
                                    encoding=OUTPUT_ENCODINGS[name], is_bigendian=0,
                                    step=width * channels,
                                    data=np.ascontiguousarray(array).reshape(-1))
                        writer.write(conns[name], item.timestamp,
                                     store.serialize_cdr(msg, IMAGE))
                    summary.frames[topic] += 1
                self._bar.update()
        except BaseException as exc:  # noqa: B902 handed to the main thread
            self._writer_error = exc

    def _output(self, name: str, item: _Item) -> np.ndarray:
        """Return output ``name`` of a segmented frame, as Segmenter.segment makes it."""
        if name == 'labels':
            return item.labels
        if name == 'drivable_mask':
            return cv2.LUT(item.labels, self._drivable_lut)
        seg = self._segmenter
        color = colorize(item.labels, seg.palette)
        return blend(resize_rgb(item.rgb, *item.labels.shape[:2]), color, seg.overlay_alpha)

    def _report(self, item: _Item) -> None:
        topic = item.conn.topic
        seen = self._reports[topic] = self._reports.get(topic, 0) + 1
        if seen > MAX_REPORTS_PER_TOPIC:
            return
        t = item.timestamp
        error = item.error
        detail = str(error) if isinstance(error, RegsegError) else (
            f'cannot deserialise the {item.conn.msgtype} message ({type(error).__name__}: '
            f'{error}): it is truncated or corrupt')
        self._bar.write(f'segment_bag: skipping frame on {topic} at bag time '
                        f'{t // 10**9}.{t % 10**9:09d} s: {detail}')
        if seen == MAX_REPORTS_PER_TOPIC:
            self._bar.write(f'segment_bag: further skipped frames on {topic} are only counted')


# -- command line ----------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    """Build the ``segment_bag`` argument parser."""
    parser = ArgumentParser(
        prog='segment_bag',
        description='Segment the image topics of a rosbag2 bag (mcap or sqlite3) with RegSeg and '
        'write a new bag: every original message plus <topic>/labels (mono8), '
        '<topic>/drivable_mask (mono8) and, with --overlay, <topic>/overlay (rgb8), with the '
        'timestamps and headers of the input frames. For a CompressedImage topic the outputs are '
        'named after the base image topic: /cam/image_raw/compressed -> /cam/image_raw/labels.')
    parser.add_argument('input', metavar='IN', help='input bag: folder, .mcap or .db3 file')
    parser.add_argument('output', metavar='OUT', help='output bag folder (must not exist); '
                        'written as OUT.partial-<pid> and renamed to OUT when complete')
    parser.add_argument('--topics', nargs='+', metavar='TOPIC',
                        help='image topics to segment (default: every sensor_msgs/Image and '
                        'CompressedImage topic)')
    parser.add_argument('--overlay', action='store_true',
                        help='also write <topic>/overlay: the frame blended with class colours')
    parser.add_argument('--drivable-classes', default=None, metavar='A,B',
                        help='comma-separated classes marked 255 in drivable_mask (default: '
                        "the label set's drivable classes: road for cityscapes, those of "
                        'the checkpoint for one written by train)')
    parser.add_argument('--batch', type=int, default=1, metavar='N',
                        help='frames per inference call (default: %(default)s)')
    parser.add_argument('--storage', choices=STORAGES, default=None,
                        help='output storage (default: that of the input)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace OUT if it exists (only a folder of bag files is deleted)')
    parser.add_argument('--decode-threads', type=int, default=None, metavar='N',
                        help='threads decoding frames ahead of inference (default: CPUs, 2..8)')
    parser.add_argument('--max-input-pixels', type=int, default=DEFAULT_MAX_INPUT_PIXELS,
                        metavar='N', help='refuse frames larger than N pixels before decoding '
                        '(decompression bombs); 0: no limit (default: %(default)s)')
    parser.add_argument('--strict', action='store_true',
                        help='refuse a damaged MCAP input (cut short, bad chunk CRC) with an '
                        'error naming the file and offset (default: salvage what can be read)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    add_model_arguments(parser, format_size(DEFAULT_NETWORK_SIZE))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``segment_bag``; return 0 on success, 1 on any error (printed to stderr)."""
    parser = make_parser()
    args = parser.parse_or_code(argv)
    if isinstance(args, int):
        return args
    for option, value, least in (('--batch', args.batch, 1),
                                 ('--decode-threads', args.decode_threads, 1),
                                 ('--max-input-pixels', args.max_input_pixels, 0)):
        if value is not None and value < least:
            parser.print_usage(sys.stderr)
            _err(f'segment_bag: error: {option} {value} must be at least {least}')
            return 2
    drivable = ([c.strip() for c in args.drivable_classes.split(',') if c.strip()]
                if args.drivable_classes is not None else None)
    try:
        job = BagSegmenter(args.input, args.output, topics=args.topics, overlay=args.overlay,
                           storage=args.storage, overwrite=args.overwrite,
                           max_pixels=args.max_input_pixels, strict=args.strict)
        if drivable is not None and not drivable:
            raise RegsegError('--drivable-classes is empty: name at least one class, e.g. road')
        size = args.network_size or DEFAULT_NETWORK_SIZE
        _err(f'segment_bag: {job.total_frames} frames on {len(job.inputs)} topic(s) of '
             f'{args.input}, network input {format_size(size)}')
        segmenter = build_segmenter(args, args.label_set, size, drivable,
                                    log=lambda m: _err(f'segment_bag: {m}'))
        summary = job.run(segmenter, batch=args.batch, progress=not args.no_progress,
                          decode_threads=args.decode_threads)
    except RegsegError as exc:
        _err(f'segment_bag: error: {exc}')
        return 1
    except KeyboardInterrupt:
        _err('segment_bag: interrupted; no output written')
        return 1
    print(f'segmented {summary.total_frames} frames on {len(summary.frames)} topic(s) in '
          f'{summary.seconds:.1f} s ({summary.fps:.2f} frames/s, batch {args.batch})')
    if summary.total_skipped:
        parts = ', '.join(f'{t}: {n}' for t, n in summary.skipped.items() if n)
        print(f'skipped {summary.total_skipped} frame(s) that could not be decoded ({parts}); '
              'their original messages were copied unchanged')
    if summary.dropped_topics:
        print(f'not copied (no type definition): {", ".join(summary.dropped_topics)}')
    if summary.damages:
        print(f'salvaged {summary.read} of ~{summary.read + summary.lost} messages from the '
              f'damaged {args.input}; {summary.chunks_skipped} chunk(s) skipped (--strict '
              'refuses damaged input)')
    print(f'wrote {args.output} ({summary.storage}): {summary.copied} original messages + '
          f'{summary.total_frames * len(job.outputs)} on {", ".join(summary.outputs)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
