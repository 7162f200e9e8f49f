"""
The ``regseg`` node: camera images in; labels, drivable mask and RViz images out.

A thin ROS shell over :class:`regseg_ros.segmenter.Segmenter`. The subscription callback keeps
only the newest frame; one worker thread segments and publishes, so latency stays one inference
plus a little, however fast the camera is.
"""

import sys
import threading
import time
from typing import Dict

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from regseg_ros.backends import (
    BackendConfig, CHOICES as BACKEND_CHOICES, create_backend, OPTIONS)
from regseg_ros.errors import RegsegError
from regseg_ros.imaging import decode_compressed, decode_image
from regseg_ros.labels import get_label_set, LABEL_SETS
from regseg_ros.model import VARIANTS
from regseg_ros.segmenter import OUTPUTS, RESOLUTIONS, Segmenter
from regseg_ros.stats import RateWindow, SampleWindow
from sensor_msgs.msg import CompressedImage, Image

OUTPUT_ENCODINGS = {'labels': 'mono8', 'drivable_mask': 'mono8', 'color': 'rgb8',
                    'overlay': 'rgb8', 'confidence': 'mono8'}
QOS_CHOICES = ('sensor_data', 'reliable')
THROTTLE_S = 5.0

# name -> (default, description, choices or None, read_only)
STRING_PARAMS = {
    'weights': ('', 'Checkpoint: a path, an https:// URL or a released checkpoint name', None,
                True),
    'model': ('exp48_decoder26', 'RegSeg variant of the checkpoint', tuple(VARIANTS), True),
    'label_set': ('cityscapes', 'Classes the checkpoint predicts', tuple(LABEL_SETS), True),
    'backend': ('torch', 'Inference backend (auto: the fastest available, logged)',
                BACKEND_CHOICES, True),
    'device': ('cpu', 'cpu, cuda or cuda:N', None, True),
    'precision': ('fp32', 'fp32; fp16 on CUDA; int8 with TensorRT and int8_calibration_dir',
                  ('fp32', 'fp16', 'int8'), True),
    'input_transport': ('raw', 'raw: sensor_msgs/Image on `image`; compressed: '
                        'sensor_msgs/CompressedImage on `<image>/compressed`',
                        ('raw', 'compressed'), True),
    'input_qos': ('sensor_data', 'Input QoS: sensor_data (best effort, depth 1) or reliable',
                  QOS_CHOICES, True),
    'output_qos': ('reliable', 'Output QoS: reliable (what RViz and planners use) or '
                   'sensor_data (best effort)', QOS_CHOICES, True),
    'output_resolution': ('input', 'Output images at the camera (input) or network size',
                          RESOLUTIONS, False),
    'cache_dir': ('', 'Where downloaded weights and engines are kept (default: '
                  '~/.cache/regseg_ros)', None, True),
    'engine_path': ('', 'tensorrt: a prebuilt engine (ros2 run regseg_ros build_engine); empty '
                    'builds and caches one', None, True),
    'int8_calibration_dir': ('', 'tensorrt, precision int8: a folder of camera images', None,
                             True),
    'timing_cache': ('', 'tensorrt: timing cache file (default: one per TensorRT version and '
                     'GPU in the cache)', None, True),
}


def _descriptor(description, read_only=False, choices=None, **ranges):
    text = description + (f' (one of: {", ".join(choices)})' if choices else '')
    return ParameterDescriptor(description=text, read_only=read_only,
                               additional_constraints=f'one of {list(choices)}' if choices
                               else '', **ranges)


def _float_range(low, high):
    return {'floating_point_range': [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


def _int_range(low, high):
    return {'integer_range': [IntegerRange(from_value=low, to_value=high, step=1)]}


def _qos(name: str, depth: int) -> QoSProfile:
    reliability = (ReliabilityPolicy.RELIABLE if name == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


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


class SegmentationNode(Node):
    """RegSeg semantic segmentation of one camera."""

    def __init__(self, **kwargs):
        super().__init__('regseg', **kwargs)
        try:
            self._declare_parameters()
        except ParameterException as exc:
            raise RegsegError(f'{exc}: fix the value in the params file or the -p override '
                              '(floating-point parameters need a decimal point, e.g. 15.0)'
                              ) from None
        unknown = sorted(name for name in getattr(self, '_parameter_overrides', {})
                         if name not in self._parameters and not name.startswith('qos_overrides.'))
        if unknown:
            self.get_logger().warning(
                f'ignoring parameters this node does not have: {unknown} (a typo?); it has '
                f'{sorted(self._parameters)}')
        p = self._params()
        for name, (_default, _doc, choices, _ro) in STRING_PARAMS.items():
            if choices and p[name] not in choices:
                raise RegsegError(f'parameter {name!r} is {p[name]!r}: set it to one of '
                                  f'{list(choices)}')
        label_set = get_label_set(p['label_set'])
        config = BackendConfig(
            model=p['model'], num_classes=label_set.num_classes, weights=p['weights'],
            allow_untrained=p['allow_untrained'], device=p['device'], precision=p['precision'],
            input_size=(p['network_height'], p['network_width']),
            cache_dir=p['cache_dir'] or None, options=self._backend_options(p))
        if not p['weights'] and p['allow_untrained']:
            self.get_logger().warning(
                'no weights: running an UNTRAINED RegSeg (allow_untrained is true); its labels '
                'are meaningless. Set weights to a released checkpoint for real output.')
        if p['cpu_threads'] > 0:
            import torch
            torch.set_num_threads(p['cpu_threads'])
        self.get_logger().info(f'loading {p["model"]} on {p["backend"]}/{p["device"]} '
                               f'({p["precision"]}), network input '
                               f'{p["network_width"]}x{p["network_height"]}')
        self.backend = create_backend(p['backend'], config, log=self.get_logger().info)
        self.segmenter = Segmenter(self.backend, label_set, p['drivable_classes'],
                                   p['overlay_alpha'], p['output_resolution'])
        self.backend.warmup()
        self.max_rate_hz = p['max_rate_hz']

        out_qos = _qos(p['output_qos'], p['output_qos_depth'])
        self.outputs = {name: self.create_publisher(Image, f'~/{name}', out_qos)
                        for name in OUTPUTS}
        self.diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        in_qos = _qos(p['input_qos'], 1)
        # image_transport's naming: `image` remapped, then /compressed. rclpy releases without
        # Node.resolve_topic_name get the relative name (remap `image/compressed` there).
        resolve = getattr(self, 'resolve_topic_name', lambda name: name)
        if p['input_transport'] == 'compressed':
            topic = resolve('image') + '/compressed'
            self.subscription = self.create_subscription(CompressedImage, topic, self._on_frame,
                                                         in_qos)
        else:
            topic = resolve('image')
            self.subscription = self.create_subscription(Image, topic, self._on_frame, in_qos)

        self._cond = threading.Condition()
        self._pending = None
        self._last_start = 0.0
        self._stopping = False
        self._counts = dict.fromkeys(
            ('received', 'processed', 'dropped', 'rejected', 'errors', 'idle'), 0)
        self._in_rate, self._out_rate = RateWindow(), RateWindow()
        self._latency = SampleWindow()
        self._infer_time = SampleWindow()
        self._forward_time = SampleWindow()
        self._stamp_age = SampleWindow()
        self._last_error = ''
        self._reported: Dict[str, int] = {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Diagnostics tick on the steady clock: a paused bag (use_sim_time) must not stop them.
        self.create_timer(1.0, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._run, name='regseg-worker', daemon=True)
        self._worker.start()
        info = self.backend.describe()
        self.get_logger().info(
            f'segmenting {topic} ({p["input_transport"]}, {p["input_qos"]}) with '
            f'{info["backend"]}/{info["device"]}/{info["precision"]}; outputs under '
            f'{self.get_fully_qualified_name()}/')

    # -- parameters ---------------------------------------------------------------------------

    def _declare_parameters(self) -> None:
        for name, (default, doc, choices, read_only) in STRING_PARAMS.items():
            self.declare_parameter(name, default, _descriptor(doc, read_only, choices))
        self.declare_parameter('allow_untrained', False, _descriptor(
            'Run with random weights when weights is empty (demos and tests only)', True))
        self.declare_parameter('network_height', 512, _descriptor(
            'Network input height in pixels (frames are resized to it)', True,
            **_int_range(64, 4096)))
        self.declare_parameter('network_width', 1024, _descriptor(
            'Network input width in pixels', True, **_int_range(64, 8192)))
        self.declare_parameter('output_qos_depth', 1, _descriptor(
            'Output queue depth (keep last N)', True, **_int_range(1, 100)))
        self.declare_parameter('workspace_mb', 0, _descriptor(
            'tensorrt: builder workspace limit in MiB (0: TensorRT default; set on Jetson)', True,
            **_int_range(0, 1 << 20)))
        self.declare_parameter('cuda_graph', False, _descriptor(
            'torch on CUDA: capture the network in a CUDA graph for the fixed input size', True))
        self.declare_parameter('cpu_threads', 0, _descriptor(
            'Torch CPU threads (0: torch default, one per core)', True, **_int_range(0, 256)))
        self.declare_parameter('max_rate_hz', 0.0, _descriptor(
            'Segment at most this many frames per second (0: as fast as possible)',
            **_float_range(0.0, 1000.0)))
        self.declare_parameter('overlay_alpha', 0.5, _descriptor(
            'Weight of the class colours in ~/overlay', **_float_range(0.0, 1.0)))
        label_set = get_label_set(self.get_parameter('label_set').value)
        self.declare_parameter('drivable_classes', list(label_set.default_drivable), _descriptor(
            f'Class names ~/drivable_mask marks 255, e.g. [road] (classes of {label_set.name}: '
            f'{", ".join(label_set.classes)})'))

    @staticmethod
    def _backend_options(p) -> Dict[str, object]:
        """Backend options the user set (unset ones are left out, so nothing is logged)."""
        names = {'tensorrt': ('engine_path', 'int8_calibration_dir', 'timing_cache',
                              'workspace_mb'),
                 'torch': ('cuda_graph',)}.get(p['backend'], tuple(OPTIONS))
        return {name: p[name] for name in names if p[name]}

    def _params(self) -> Dict[str, object]:
        return {name: param.value for name, param in self._parameters.items()}

    def _on_set_parameters(self, params) -> SetParametersResult:
        try:
            for param in params:
                if param.name == 'drivable_classes':
                    self.segmenter.label_set.class_ids(param.value or [])
                    if not param.value:
                        raise RegsegError('drivable_classes is empty: name at least one class')
                elif param.name == 'output_resolution' and param.value not in RESOLUTIONS:
                    raise RegsegError(f'output_resolution {param.value!r} is not one of '
                                      f'{list(RESOLUTIONS)}')
        except RegsegError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._cond:
            for param in params:
                if param.name == 'drivable_classes':
                    self.segmenter.set_drivable_classes(list(param.value))
                elif param.name == 'overlay_alpha':
                    self.segmenter.set_overlay_alpha(param.value)
                elif param.name == 'output_resolution':
                    self.segmenter.output_resolution = param.value
                elif param.name == 'max_rate_hz':
                    self.max_rate_hz = param.value
        return SetParametersResult(successful=True)

    # -- frames -------------------------------------------------------------------------------

    def _on_frame(self, msg) -> None:
        now = time.monotonic()
        with self._cond:
            self._counts['received'] += 1
            self._in_rate.add(now)
            if self._pending is not None:
                self._counts['dropped'] += 1
            self._pending = (msg, now)
            self._cond.notify()

    def _next_frame(self):
        """Block until a frame is due; return (msg, received_at), or None when stopping."""
        with self._cond:
            while not self._stopping:
                if self._pending is not None:
                    wait = (self._last_start + 1.0 / self.max_rate_hz - time.monotonic()
                            if self.max_rate_hz > 0 else 0.0)
                    if wait <= 0:
                        frame, self._pending = self._pending, None
                        self._last_start = time.monotonic()
                        return frame
                    self._cond.wait(wait)
                else:
                    self._cond.wait(0.5)
        return None

    def _run(self) -> None:
        while True:
            frame = self._next_frame()
            if frame is None:
                return
            self._process(*frame)

    def _count(self, key: str) -> None:
        with self._cond:
            self._counts[key] += 1

    def _process(self, msg, received_at: float) -> None:
        wanted = {name for name, pub in self.outputs.items() if pub.get_subscription_count()}
        if not wanted:
            self._count('idle')  # nobody listens: skip decode and inference
            return
        try:
            if isinstance(msg, CompressedImage):
                rgb = decode_compressed(msg.format, msg.data)
            else:
                rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                   bool(msg.is_bigendian))
        except RegsegError as exc:
            self._count('rejected')
            self._last_error = f'rejected frame: {exc}'
            self.get_logger().warning(f'rejected frame (stamp {msg.header.stamp.sec}.'
                                      f'{msg.header.stamp.nanosec:09d}): {exc}',
                                      throttle_duration_sec=THROTTLE_S)
            return
        t0 = time.monotonic()
        try:
            result = self.segmenter.segment([rgb], wanted)[0]
        except Exception as exc:  # noqa: B902 keep serving: a failed frame must not stop the node
            self._count('errors')
            self._last_error = f'inference failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(self._last_error, throttle_duration_sec=THROTTLE_S)
            return
        t1 = time.monotonic()
        for name, array in result.items():
            self.outputs[name].publish(image_msg(msg.header, array, OUTPUT_ENCODINGS[name]))
        done = time.monotonic()
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self._cond:
            self._counts['processed'] += 1
            self._out_rate.add(done)
            self._infer_time.add(t1 - t0)
            if self.backend.last_forward_s is not None:
                self._forward_time.add(self.backend.last_forward_s)
            self._latency.add(done - received_at)
            if stamp_ns:
                self._stamp_age.add((self.get_clock().now().nanoseconds - stamp_ns) / 1e9)

    # -- diagnostics --------------------------------------------------------------------------

    def diagnostic_status(self) -> DiagnosticStatus:
        """Summarise rates, latency and counters; the level is for what is new since last call."""
        now = time.monotonic()
        with self._cond:
            counts = dict(self._counts)
            values = {
                'input_rate_hz': self._in_rate.rate(now),
                'output_rate_hz': self._out_rate.rate(now),
                'latency_ms_p50': self._latency.percentile(50) * 1e3,
                'latency_ms_p95': self._latency.percentile(95) * 1e3,
                'inference_ms_mean': self._infer_time.mean() * 1e3,
                'forward_ms_mean': self._forward_time.mean() * 1e3,
                'stamp_age_ms_p50': self._stamp_age.percentile(50) * 1e3,
            }
            last_error = self._last_error
        # ERROR / WARN for what happened since the previous report, not forever after.
        new = {k: counts[k] - self._reported.get(k, 0) for k in counts}
        self._reported = counts
        level, message = DiagnosticStatus.OK, 'segmenting'
        if new['errors']:
            level, message = DiagnosticStatus.ERROR, last_error
        elif counts['received'] == 0:
            level, message = DiagnosticStatus.WARN, 'no input frames yet'
        elif values['input_rate_hz'] == 0:
            level, message = DiagnosticStatus.WARN, 'no input frames in the last seconds'
        elif new['rejected']:
            level, message = DiagnosticStatus.WARN, last_error
        info = self.backend.describe()
        kv = [KeyValue(key=k, value=str(v)) for k, v in info.items()]
        kv += [KeyValue(key=k, value=f'{v:.2f}') for k, v in values.items()]
        kv += [KeyValue(key=f'frames_{k}', value=str(v)) for k, v in counts.items()]
        return DiagnosticStatus(level=level, name=f'{self.get_fully_qualified_name()}: '
                                'segmentation', message=message,
                                hardware_id=f'{info["backend"]}/{info["device"]}', values=kv)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.diagnostic_status()]
        self.diagnostics.publish(array)

    def stop(self) -> None:
        """Stop the worker after the frame in hand and release the backend."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(timeout=10.0)
        self.backend.close()


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (exit 0) or a start-up error (exit 1)."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SegmentationNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RegsegError as exc:
        rclpy.logging.get_logger('regseg').fatal(f'cannot start: {exc}')
        code = 1
    except Exception:  # noqa: B902
        # SIGTERM shuts the context down under the executor's wait; rclpy then raises RCLError
        # ('context is not valid') instead of ExternalShutdownException. That is a clean stop.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
