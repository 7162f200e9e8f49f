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
The ``regseg`` node: camera images in; labels, drivable mask and RViz images out.

A thin ROS shell over :class:`regseg_ros.segmenter.Segmenter`. The subscription callback keeps
only the newest frame; one worker thread segments and publishes, so latency stays one inference
plus a little, however fast the camera is.
"""

import re
import signal
import sys
import threading
import time
from typing import Dict

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import (
    InvalidServiceNameException, InvalidTopicNameException, ParameterException)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from regseg_ros.backends import (
    BackendConfig, CHOICES as BACKEND_CHOICES, create_backend, OPTIONS)
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.imaging import decode_compressed, decode_image, DEFAULT_MAX_INPUT_PIXELS
from regseg_ros.core.labels import get_label_set, LABEL_SETS
from regseg_ros.core.stats import RateWindow, SampleWindow
from regseg_ros.model import VARIANTS
from regseg_ros.segmenter import OUTPUTS, RESOLUTIONS, Segmenter
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


# name, default, description, (low, high) or None; every other parameter is a string
OTHER_PARAMS = (
    ('allow_untrained', False,
     'Run with random weights when weights is empty (demos and tests only)', None),
    ('network_height', 512, 'Network input height in pixels (frames are resized to it)',
     (64, 4096)),
    ('network_width', 1024, 'Network input width in pixels', (64, 8192)),
    ('max_input_pixels', DEFAULT_MAX_INPUT_PIXELS,
     'Refuse frames larger than this many pixels before decoding them (decompression bombs); '
     '0: no limit', (0, 1 << 40)),
    ('output_qos_depth', 1, 'Output queue depth (keep last N)', (1, 100)),
    ('workspace_mb', 0,
     'tensorrt: builder workspace limit in MiB (0: TensorRT default; set on Jetson)',
     (0, 1 << 20)),
    ('cuda_graph', False,
     'torch on CUDA: capture the network in a CUDA graph for the fixed input size', None),
    ('cpu_threads', 0, 'Torch CPU threads (0: torch default, one per core)', (0, 256)),
    ('max_rate_hz', 0.0, 'Segment at most this many frames per second (0: as fast as possible)',
     (0.0, 1000.0)),
    ('overlay_alpha', 0.5, 'Weight of the class colours in ~/overlay', (0.0, 1.0)),
)
RUNTIME_PARAMS = frozenset(('max_rate_hz', 'overlay_alpha', 'max_input_pixels',
                            'drivable_classes', 'output_resolution'))


class StartupError(Exception):
    """A configuration error at start-up, with the logger of the node it stopped."""

    def __init__(self, reason: str, logger):
        super().__init__(reason)
        self.logger = logger


def _type_hint(error: str) -> str:
    """Return a hint for rclpy's parameter error text: the type it expected, with an example."""
    if "expecting type 'DOUBLE'" in error:
        return ' (floating-point parameters need a decimal point, e.g. 15.0)'
    if "expecting type 'INTEGER'" in error:
        return ' (integer parameters take a whole number without a decimal point, e.g. 512)'
    if "expecting type 'BOOL'" in error:
        return ' (true or false)'
    if "expecting type 'STRING_ARRAY'" in error:
        return " (a list of strings, e.g. '[road, sidewalk]')"
    if 'range' in error.lower() or 'InvalidParameterValue' in error:
        return (' (the value is outside the allowed range: `ros2 param describe` or '
                '`segmentation_node --help` lists it)')
    return ''


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
        self._worker = None
        try:
            self._setup()
        except RegsegError as exc:
            raise StartupError(str(exc), self.get_logger()) from None
        except (InvalidTopicNameException, InvalidServiceNameException) as exc:
            raise StartupError(f'{exc}: fix the -r remap or the namespace (topic names are '
                               'letters, digits, _ and /)', self.get_logger()) from None

    def _setup(self) -> None:
        try:
            self._declare_parameters()
        except ParameterException as exc:
            raise RegsegError(f'{exc}: fix the value in the params file or the -p override'
                              f'{_type_hint(str(exc))}') from None
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
        self.max_input_pixels = p['max_input_pixels']
        self._network_size = tuple(config.input_size)

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
        self._last_rejected = False
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
        for name, default, doc, limits in OTHER_PARAMS:
            ranges = ({} if limits is None else _float_range(*limits)
                      if isinstance(default, float) else _int_range(*limits))
            self.declare_parameter(name, default, _descriptor(
                doc, name not in RUNTIME_PARAMS, **ranges))
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
                elif param.name == 'max_input_pixels':
                    self.max_input_pixels = param.value
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
            # The same decode as segment_bag (a large JPEG at half size, decided by the network
            # size alone): a frame gets the same labels live and offline.
            if isinstance(msg, CompressedImage):
                rgb, size = decode_compressed(msg.format, msg.data, self.max_input_pixels,
                                              self._network_size)
            else:
                rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                   bool(msg.is_bigendian), self.max_input_pixels)
                size = rgb.shape[:2]
        except RegsegError as exc:
            with self._cond:
                self._counts['rejected'] += 1
                self._last_error = f'rejected frame: {exc}'
                self._last_rejected = True
            self.get_logger().warning(f'rejected frame (stamp {msg.header.stamp.sec}.'
                                      f'{msg.header.stamp.nanosec:09d}): {exc}',
                                      throttle_duration_sec=THROTTLE_S)
            return
        t0 = time.monotonic()
        try:
            result = self.segmenter.segment([rgb], wanted, [size])[0]
        except Exception as exc:  # noqa: B902 keep serving: a failed frame must not stop the node
            self._count('errors')
            self._last_error = f'inference failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(self._last_error, throttle_duration_sec=THROTTLE_S)
            return
        t1 = time.monotonic()
        try:
            for name, array in result.items():
                self.outputs[name].publish(image_msg(msg.header, array, OUTPUT_ENCODINGS[name]))
        except Exception:  # noqa: B902
            # Ctrl-C during inference: rclpy's signal handler has shut the context down before
            # the main thread could stop this worker. The frame is dropped; that is the stop.
            if self.context.ok() and not self._stopping:
                raise
            return
        done = time.monotonic()
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self._cond:
            self._last_rejected = False
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
        if self._worker is not None:
            self._worker.join(timeout=60.0)  # one inference at most
            self.backend.close()


CONFIG_ERROR = 2   # start-up configuration error: launch files do not respawn on it


def usage() -> str:
    """Return ``--help`` text: how to run the node and every parameter with its default."""
    lines = [
        'usage: ros2 run regseg_ros segmentation_node [--ros-args -p NAME:=VALUE '
        '--params-file FILE -r image:=TOPIC ...]',
        '',
        'RegSeg semantic segmentation of one camera. Subscribes to `image` (sensor_msgs/Image) '
        'or `<image>/compressed`;',
        'publishes ~/labels, ~/drivable_mask, ~/color, ~/overlay, ~/confidence and /diagnostics.',
        'Exit status: 0 on SIGINT/SIGTERM, 2 on a configuration error at start-up (one FATAL '
        'line says why).',
        '',
        'parameters (default; * = changeable at run time):',
    ]
    rows = [(name, repr(default), doc) for name, (default, doc, _c, _ro) in STRING_PARAMS.items()]
    rows += [(name, repr(default), doc) for name, default, doc, _limits in OTHER_PARAMS]
    rows.append(('drivable_classes', "['road']", 'Class names ~/drivable_mask marks 255'))
    for name, default, doc in sorted(rows):
        live = '*' if name in RUNTIME_PARAMS else ' '
        lines.append(f' {live} {name:22s} {default:20s} {doc}')
    return '\n'.join(lines)


def _ros_args_error(text: str) -> str:
    """Turn rcl's argument-parsing error into one line naming the argument and the fix."""
    text = re.sub(r', at /\S+:\d+', '', ' '.join(text.split()))
    text = text.replace('failed to initialize rcl: ', '')
    if 'params file' in text:
        return (f'{text}: a params file is YAML keyed `/**:` (or the node name), then '
                '`ros__parameters:`, then NAME: VALUE lines')
    if 'remap rule' in text:
        return (f'{text}: a remap is FROM:=TO with valid names (letters, digits, _ and /), e.g. '
                '-r image:=/camera/image_raw')
    return f'{text}: check --ros-args (-p NAME:=VALUE, -r FROM:=TO, --params-file FILE)'


def _fatal(logger, reason: str) -> int:
    logger.fatal(f'cannot start: {reason}')
    return CONFIG_ERROR


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (exit 0) or a start-up configuration error (exit 2)."""
    argv = list(sys.argv if args is None else args)
    user_args = argv[1:argv.index('--ros-args')] if '--ros-args' in argv else argv[1:]
    if '-h' in user_args or '--help' in user_args:
        print(usage())
        return 0
    logger = rclpy.logging.get_logger('regseg')
    try:
        rclpy.init(args=args)
    except Exception as exc:  # noqa: B902 rcl's own errors: a bad params file, a bad remap
        return _fatal(logger, _ros_args_error(str(exc)))
    node = None
    code = 0
    try:
        node = SegmentationNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        code = _fatal(exc.logger, str(exc))
    except Exception:  # noqa: B902
        # SIGTERM shuts the context down under the executor's wait; rclpy then raises RCLError
        # ('context is not valid') instead of ExternalShutdownException. That is a clean stop.
        if rclpy.ok():
            raise
    finally:
        # Ctrl-C in a terminal reaches the node twice under ros2 launch (from the terminal and
        # from launch). A second signal must not interrupt the worker's join: the process would
        # exit with the worker inside torch ('terminate called without an active exception').
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
