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
One camera's path through a node, and the worker that segments the cameras' frames in batches.

:class:`CameraPipeline` holds what belongs to one camera: its subscription, the newest-frame
slot, decoding, its publishers, counters and diagnostics. :class:`BatchWorker` waits for fresh
frames, takes the newest frame of every camera that has one (up to ``max_batch``), segments
them as one batch and hands each camera its own results; where the backend runs a batch's
frames side by side anyway (torch on the CPU with ``exact_batch``), it keeps that many lanes
busy frame by frame instead (see the class). The ``regseg`` node is one pipeline with batch 1;
``multi_camera_node`` is N pipelines sharing one worker and one model.

The worker takes the frames from DDS itself, when it is ready for the next frames; the executor
never sees the image subscriptions. With a depth-1 input QoS, DDS keeps only each camera's newest
frame meanwhile, so a frame replaced while the worker is busy costs no copy into Python
(measured: taking every 2048x1024 rgb8 frame of 4 cameras at 10 Hz in the executor cost 0.25 of
the node's 0.7 busy cores on a 2-core VM). Such frames are counted from the gaps in the
publisher's sequence numbers (``frames_dropped``, and in ``frames_received``).
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.callback_groups import CallbackGroup
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.serialization import deserialize_message
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.imaging import decode_compressed, decode_image
from regseg_ros.core.stats import RateWindow, SampleWindow
from regseg_ros.segmenter import OUTPUTS, Segmenter
from sensor_msgs.msg import CompressedImage, Image

OUTPUT_ENCODINGS = {'labels': 'mono8', 'drivable_mask': 'mono8', 'color': 'rgb8',
                    'overlay': 'rgb8', 'confidence': 'mono8'}
THROTTLE_S = 5.0
COUNTERS = ('received', 'processed', 'dropped', 'rejected', 'errors', 'idle')


def image_msg(header, array, encoding: str) -> Image:
    """Wrap a uint8 (H, W) or (H, W, 3) array as a ``sensor_msgs/Image`` with ``header``."""
    msg = Image()
    msg.header = header
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = array.shape[1] * (array.shape[2] if array.ndim == 3 else 1)
    msg.data = array.tobytes()
    return msg


class WorkerTakes(CallbackGroup):
    """A callback group the executor never runs: the worker takes its messages itself."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


class CameraPipeline:
    """
    One camera: subscription, newest-frame slot, decode, publishers, counters, diagnostics.

    ``outputs`` maps each output name to its topic (``~/labels`` or ``/front/regseg/labels``).
    The slot and counters are guarded by the worker's condition ``cond``.
    """

    def __init__(self, node, name: str, topic: str, transport: str, outputs: Dict[str, str],
                 in_qos, out_qos, cond: threading.Condition, settings: Dict[str, object]):
        self.node = node
        self.name = name
        self.topic = topic
        self._cond = cond
        self._settings = settings
        self.publishers = {out: node.create_publisher(Image, outputs[out], out_qos)
                           for out in OUTPUTS}
        self.msg_type = CompressedImage if transport == 'compressed' else Image
        # Taken by the worker (poll), serialized: a frame is deserialized when it is segmented.
        self.subscription = node.create_subscription(self.msg_type, topic, self.offer, in_qos,
                                                     callback_group=WorkerTakes(), raw=True)
        self._last_seq: Dict[object, int] = {}   # publisher -> its last sequence number
        self._seq_warned = False
        self.pending: Optional[Tuple[object, float]] = None
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._in_rate, self._out_rate = RateWindow(), RateWindow()
        self._latency = SampleWindow()
        self._infer_time = SampleWindow()
        self._forward_time = SampleWindow()
        self._stamp_age = SampleWindow()
        self._batch = SampleWindow()
        self._last_error = ''
        self._last_rejected = False
        self._reported: Dict[str, int] = {}
        # Called after each frame's outputs are published: (header, labels, confidence).
        self.on_published: Optional[Callable] = None
        # Outputs computed for every frame whoever subscribes (labels for freespace).
        self.required: set = set()

    # -- frames (worker thread) ----------------------------------------------------------------
    def poll(self) -> None:
        """Move what DDS holds for this camera into the slot (the newest frame wins)."""
        while True:
            with self.subscription.handle:
                taken = self.subscription.handle.take_message(self.msg_type, True)
            if taken is None:
                return
            self.offer(taken[0], self._missed(taken[1]))

    def _missed(self, info) -> int:
        """Return how many frames of this publisher DDS replaced before ``info``'s was taken."""
        seq = info.get('publication_sequence_number')
        if not seq:   # None: the RMW does not number samples
            if not self._seq_warned:
                self._seq_warned = True
                self.node.get_logger().warning(
                    f'{self._prefix()}this RMW gives no publication sequence numbers: frames '
                    'replaced by newer ones before the node took them are not counted in '
                    'frames_dropped (use rmw_fastrtps_cpp or rmw_cyclonedds_cpp to count them)')
            return 0
        gid = info.get('publisher_gid')
        key = bytes(gid['data']) if isinstance(gid, dict) and 'data' in gid else None
        last = self._last_seq.get(key)
        self._last_seq[key] = seq
        return seq - last - 1 if last is not None and seq > last else 0

    def offer(self, msg, missed: int = 0) -> None:
        """Keep ``msg`` as the newest frame; an unprocessed older one (and ``missed``) dropped."""
        now = time.monotonic()
        with self._cond:
            self.counts['received'] += 1 + missed
            self.counts['dropped'] += missed
            for _ in range(1 + min(missed, 1000)):
                self._in_rate.add(now)
            if self.pending is not None:
                self.counts['dropped'] += 1
            self.pending = (msg, now)
            self._cond.notify()

    def take(self) -> Optional[Tuple[object, float]]:
        """Remove and return the pending (serialized msg, received_at); hold the condition."""
        frame, self.pending = self.pending, None
        return frame

    def message(self, data: bytes):
        """Deserialize a frame taken from the slot; None when it cannot be (counted rejected)."""
        try:
            return deserialize_message(data, self.msg_type)
        except Exception as exc:  # noqa: B902 keep serving: rclpy raises several types here
            with self._cond:
                self.counts['rejected'] += 1
                self._last_error = f'rejected frame: cannot deserialize it ({exc})'
                self._last_rejected = True
            return None

    # -- worker thread ------------------------------------------------------------------------
    def wanted(self) -> set:
        """Return the outputs somebody subscribes to (none: skip the frame, counted idle)."""
        return self.required | {name for name, pub in self.publishers.items()
                                if pub.get_subscription_count()}

    def count(self, key: str) -> None:
        with self._cond:
            self.counts[key] += 1

    def decode(self, msg, network_size):
        """Return (rgb, (height, width)) of ``msg``, or None when rejected (counted, logged)."""
        try:
            # The same decode as segment_bag (a large JPEG at half size, decided by the network
            # size alone): a frame gets the same labels live and offline.
            if isinstance(msg, CompressedImage):
                return decode_compressed(msg.format, msg.data,
                                         self._settings['max_input_pixels'], network_size)
            rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               bool(msg.is_bigendian), self._settings['max_input_pixels'])
            return rgb, rgb.shape[:2]
        except RegsegError as exc:
            with self._cond:
                self.counts['rejected'] += 1
                self._last_error = f'rejected frame: {exc}'
                self._last_rejected = True
            self.node.get_logger().warning(
                f'{self._prefix()}rejected frame (stamp {msg.header.stamp.sec}.'
                f'{msg.header.stamp.nanosec:09d}): {exc}', throttle_duration_sec=THROTTLE_S)
            return None

    def _prefix(self) -> str:
        return f'camera {self.name}: ' if self.name else ''

    def failed(self, error: str) -> None:
        """Count an inference failure of this camera's frame."""
        with self._cond:
            self.counts['errors'] += 1
            self._last_error = error

    def publish(self, msg, result: Dict[str, object], received_at: float, infer_s: float,
                forward_s: Optional[float], batch: int) -> None:
        """Publish one frame's outputs with its header: the one place results leave the node."""
        for name, array in result.items():
            self.publishers[name].publish(image_msg(msg.header, array, OUTPUT_ENCODINGS[name]))
        if self.on_published is not None:
            self.on_published(msg.header, result.get('labels'), result.get('confidence'))
        done = time.monotonic()
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self._cond:
            self._last_rejected = False
            self.counts['processed'] += 1
            self._out_rate.add(done)
            self._infer_time.add(infer_s)
            self._batch.add(batch)
            if forward_s is not None:
                self._forward_time.add(forward_s)
            self._latency.add(done - received_at)
            if stamp_ns:
                self._stamp_age.add((self.node.get_clock().now().nanoseconds - stamp_ns) / 1e9)

    # -- diagnostics --------------------------------------------------------------------------
    def diagnostic_status(self, status_name: str, info: Dict[str, str],
                          batched: bool = False) -> DiagnosticStatus:
        """Summarise rates, latency and counters; the level is for what is new since last call."""
        now = time.monotonic()
        with self._cond:
            counts = dict(self.counts)
            values = {
                'input_rate_hz': self._in_rate.rate(now),
                'output_rate_hz': self._out_rate.rate(now),
                'latency_ms_p50': self._latency.percentile(50) * 1e3,
                'latency_ms_p95': self._latency.percentile(95) * 1e3,
                'inference_ms_mean': self._infer_time.mean() * 1e3,
                'forward_ms_mean': self._forward_time.mean() * 1e3,
                'stamp_age_ms_p50': self._stamp_age.percentile(50) * 1e3,
            }
            if batched:
                values['batch_size_mean'] = self._batch.mean()
            last_error = self._last_error
            last_rejected = self._last_rejected
        # ERROR / WARN for what happened since the previous report, not forever after.
        new = {k: counts[k] - self._reported.get(k, 0) for k in counts}
        self._reported = counts
        level, message = DiagnosticStatus.OK, 'segmenting'
        if new['errors']:
            level, message = DiagnosticStatus.ERROR, last_error
        elif counts['received'] == 0:
            level, message = DiagnosticStatus.WARN, 'no input frames yet'
        elif new['rejected']:
            level, message = DiagnosticStatus.WARN, last_error
        elif values['input_rate_hz'] == 0:
            level, message = DiagnosticStatus.WARN, 'no input frames in the last seconds' + (
                f'; the last one was {last_error}' if last_rejected else '')
        kv = [KeyValue(key=k, value=str(v)) for k, v in info.items()]
        if self.name:
            kv.append(KeyValue(key='input_topic', value=self.topic))
        kv += [KeyValue(key=k, value=f'{v:.2f}') for k, v in values.items()]
        kv += [KeyValue(key=f'frames_{k}', value=str(v)) for k, v in counts.items()]
        return DiagnosticStatus(level=level, name=status_name, message=message,
                                hardware_id=f'{info["backend"]}/{info["device"]}', values=kv)


class BatchWorker:
    """
    One thread taking the newest frame of every camera that has one and segmenting them together.

    With a backend that batches (TensorRT, torch on CUDA, torch with ``exact_batch`` false) the
    frames go through the network as one batch, and the next batch is taken once this one is
    published. With a backend that runs the frames of a batch side by side (torch on the CPU
    with ``exact_batch``: ``parallel_forwards`` > 1), each frame runs whole (decode, network,
    publish) in one of that many lanes, and the worker hands a lane the next fresh frame as soon
    as the lane is free instead of waiting for the slowest frame of a batch, so the cores do not
    idle while frames wait. A camera has at most one frame in a lane: its outputs keep their
    order. Either way a camera with no fresh frame is simply not taken, so a silent camera
    never stalls the others, and each camera's results go to that camera's pipeline only.
    """

    def __init__(self, node, segmenter: Segmenter, cameras: Sequence[CameraPipeline],
                 cond: threading.Condition, settings: Dict[str, object], max_batch: int = 1):
        self.node = node
        self.segmenter = segmenter
        self.cameras = list(cameras)
        self.max_batch = max(1, int(max_batch))
        self._cond = cond
        self._settings = settings
        self._network_size = tuple(segmenter.backend.config.input_size)
        self._last_start = 0.0
        self._served: Dict[CameraPipeline, float] = {}   # camera -> when its frame was taken
        self._stopping = False
        lanes = int(getattr(segmenter.backend, 'parallel_forwards', 1))
        self.lanes = lanes if lanes > 1 and len(self.cameras) > 1 else 0
        self._capacity = self.lanes or self.max_batch   # frames taken and not yet published
        self._busy: set = set()   # cameras with a frame in a lane (guarded by cond)
        self._pool = (ThreadPoolExecutor(self.lanes, thread_name_prefix='regseg-lane')
                      if self.lanes else None)
        # Ends the worker's wait for frames; in WorkerTakes so the executor never waits on it
        # (it would take triggers meant for the worker).
        self._wake = node.create_guard_condition(lambda: None, callback_group=WorkerTakes())
        self._thread = threading.Thread(target=self._run, name='regseg-worker', daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _next_batch(self) -> Optional[List[Tuple[CameraPipeline, object, float]]]:
        """Block until frames are due; return [(camera, msg, received_at)], None when stopping."""
        while True:
            with self._cond:
                while len(self._busy) >= self._capacity and not self._stopping:
                    self._cond.wait()   # every lane busy: the first to finish notifies
                if self._stopping:
                    return None
                slots = self._capacity - len(self._busy)
                # Only this thread adds to _busy: a camera free now stays free below. The
                # cameras served longest ago come first (round robin).
                free = sorted((cam for cam in self.cameras if cam not in self._busy),
                              key=lambda cam: self._served.get(cam, 0.0))
            ready = []
            for cam in free:
                # Take the newest frame; once the batch is full the other cameras' frames stay
                # in DDS (a frame taken now and replaced later would be a wasted copy).
                cam.poll()
                if cam.pending is not None:
                    ready.append(cam)
                    if len(ready) == slots:
                        break
            with self._cond:
                if self._stopping:
                    return None
                if ready:
                    rate = self._settings['max_rate_hz']
                    wait = (self._last_start + 1.0 / rate - time.monotonic()) if rate > 0 else 0
                    if wait <= 0:
                        if self.lanes:
                            self._busy.update(ready)
                        self._last_start = time.monotonic()
                        for cam in ready:
                            self._served[cam] = self._last_start
                        return [(cam,) + cam.take() for cam in ready]
                    self._cond.wait(wait)   # newer frames meanwhile wait in DDS
                    continue
            self._wait_for_frames(free, 0.5)

    def _wait_for_frames(self, cameras: Sequence[CameraPipeline], timeout_s: float) -> None:
        """Block until a camera's subscription has a message, the guard condition or timeout."""
        subs = [cam.subscription for cam in cameras]
        with ExitStack() as stack:
            stack.enter_context(self.node.context.handle)
            for entity in subs + [self._wake]:
                stack.enter_context(entity.handle)
            wait_set = _rclpy.WaitSet(len(subs), 1, 0, 0, 0, 0, self.node.context.handle)
            wait_set.clear_entities()
            for sub in subs:
                wait_set.add_subscription(sub.handle)
            wait_set.add_guard_condition(self._wake.handle)
            wait_set.wait(int(timeout_s * 1e9))

    def _run(self) -> None:
        while True:
            try:
                batch = self._next_batch()
            except Exception:  # noqa: B902
                # Ctrl-C: rclpy's signal handler shut the context down under the wait or take.
                if self.node.context.ok() and not self._stopping:
                    raise
                return
            if batch is None:
                return
            if not self.lanes:
                self._process(batch)
                continue
            with self._cond:
                together = len(self._busy)
            for frame in batch:
                self._pool.submit(self._lane, frame, together)

    def _lane(self, frame, together: int) -> None:
        """Segment and publish one frame in a lane thread, then free the lane."""
        cam = frame[0]
        try:
            self._process([frame], together)
        except Exception as exc:  # noqa: B902 a future would swallow it: count and log it
            error = f'frame failed: {type(exc).__name__}: {exc}'
            cam.failed(error)
            self.node.get_logger().error(error, throttle_duration_sec=THROTTLE_S)
        finally:
            with self._cond:
                self._busy.discard(cam)
                self._cond.notify_all()
            try:
                self._wake.trigger()   # the worker may be waiting in DDS for the other cameras
            except Exception:  # noqa: B902 the context is shut down: nobody waits any more
                pass

    def _process(self, batch, together: Optional[int] = None) -> None:
        """Decode, segment and publish ``batch``; ``together``: frames segmented side by side."""
        frames = []   # (camera, msg, received_at, rgb, size, wanted)
        for cam, data, received_at in batch:
            wanted = cam.wanted()
            if not wanted:
                cam.count('idle')  # nobody listens: skip decode and inference
                continue
            msg = cam.message(data)
            decoded = None if msg is None else cam.decode(msg, self._network_size)
            if decoded is not None:
                frames.append((cam, msg, received_at) + tuple(decoded) + (wanted,))
        if not frames:
            return
        outputs = set().union(*(f[5] for f in frames))
        t0 = time.monotonic()
        try:
            results = self.segmenter.segment([f[3] for f in frames], outputs,
                                             [f[4] for f in frames])
        except Exception as exc:  # noqa: B902 keep serving: a failed batch must not stop the node
            error = f'inference failed: {type(exc).__name__}: {exc}'
            for frame in frames:
                frame[0].failed(error)
            self.node.get_logger().error(error, throttle_duration_sec=THROTTLE_S)
            return
        infer_s = time.monotonic() - t0
        forward_s = self.segmenter.backend.last_forward_s   # of this thread's infer
        try:
            for (cam, msg, received_at, _rgb, _size, wanted), result in zip(frames, results):
                cam.publish(msg, {k: v for k, v in result.items() if k in wanted}, received_at,
                            infer_s, forward_s, together or len(frames))
        except Exception:  # noqa: B902
            # Ctrl-C during inference: rclpy's signal handler has shut the context down before
            # the main thread could stop this worker. The frames are dropped; that is the stop.
            if self.node.context.ok() and not self._stopping:
                raise

    def stop(self) -> None:
        """Stop after the frames in hand and release the backend."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        try:
            self._wake.trigger()
        except Exception:  # noqa: B902 the context is already shut down: the wait has ended
            pass
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(timeout=60.0)  # one inference at most
        if self._pool is not None:
            self._pool.shutdown(wait=True)   # the lanes finish their frames
        self.segmenter.backend.close()
