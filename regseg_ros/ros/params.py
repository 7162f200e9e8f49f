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
What the ``regseg`` and ``multi_camera`` nodes share: parameters, the model, start and stop.

Both nodes declare the same model and backend parameters, build one backend and segmenter from
them, report start-up configuration errors in one FATAL line (exit 2) and stop the same way on
SIGINT/SIGTERM; this module holds that once.
"""

from typing import Dict, Iterable, List, Tuple

from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
from rclpy.exceptions import ParameterException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from regseg_ros.backends import BackendConfig, CHOICES as BACKEND_CHOICES, create_backend
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.imaging import DEFAULT_MAX_INPUT_PIXELS
from regseg_ros.core.labels import LABEL_SETS, LabelSet
from regseg_ros.model import VARIANTS
from regseg_ros.model.weights import resolve_label_set
from regseg_ros.ros import node_main
from regseg_ros.segmenter import RESOLUTIONS, Segmenter

# How the nodes start and stop (node_main, shared with freespace_node, which needs no torch).
CONFIG_ERROR = node_main.CONFIG_ERROR
StartupError = node_main.StartupError
startup = node_main.startup
run = node_main.run

QOS_CHOICES = ('sensor_data', 'reliable')

# name -> (default, description, choices or None, read_only)
STRING_PARAMS = {
    'weights': ('', 'Checkpoint: a path, an https:// URL or a released checkpoint name', None,
                True),
    'model': ('exp48_decoder26', 'RegSeg variant of the checkpoint', tuple(VARIANTS), True),
    'label_set': ('', 'Classes the checkpoint predicts; empty: those a checkpoint written by '
                  'train carries, else cityscapes', ('',) + tuple(LABEL_SETS), True),
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
    ('max_batch', 4,
     'multi_camera_node: most camera frames segmented in one batch (the regseg node segments '
     'one camera, batch 1; tensorrt builds its engine for batch 1..max_batch)', (1, 64)),
    ('exact_batch', True,
     'torch on the CPU: labels of a batch bit-equal to batch 1 (the network runs frame by '
     'frame when a start-up check finds batched results differ); false: batched, faster, '
     'logits may differ by ~1e-8', None),
)
RUNTIME_PARAMS = frozenset(('max_rate_hz', 'overlay_alpha', 'max_input_pixels',
                            'drivable_classes', 'output_resolution'))
# Options passed to the backend (BackendConfig.options), per backend.
BACKEND_OPTION_PARAMS = {'tensorrt': ('engine_path', 'int8_calibration_dir', 'timing_cache',
                                      'workspace_mb'),
                         'torch': ('cuda_graph',)}


def type_hint(error: str) -> str:
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
                '--help of the node lists it)')
    return ''


def descriptor(description, read_only=False, choices=None, **ranges) -> ParameterDescriptor:
    """Describe a parameter for ``ros2 param describe`` (choices listed in the text)."""
    text = description + (f' (one of: {", ".join(choices)})' if choices else '')
    return ParameterDescriptor(description=text, read_only=read_only,
                               additional_constraints=f'one of {list(choices)}' if choices
                               else '', **ranges)


def _ranges(default, limits) -> Dict[str, list]:
    if limits is None:
        return {}
    low, high = limits
    if isinstance(default, float):
        return {'floating_point_range': [FloatingPointRange(from_value=low, to_value=high,
                                                            step=0.0)]}
    return {'integer_range': [IntegerRange(from_value=low, to_value=high, step=1)]}


def qos(name: str, depth: int) -> QoSProfile:
    """Return the QoS profile ``name`` (sensor_data: best effort; reliable) with ``depth``."""
    reliability = (ReliabilityPolicy.RELIABLE if name == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def label_set_for(params: Dict[str, object]) -> LabelSet:
    """Return the label set both nodes segment with (the one place that chooses it)."""
    return resolve_label_set(params.get('label_set') or None, params.get('weights') or '',
                             params.get('cache_dir') or None)


def declare_model_parameters(node) -> LabelSet:
    """
    Declare every shared parameter on ``node``; raise RegsegError naming a bad value.

    Return the label set the parameters choose (read once: a checkpoint's is loaded from it).
    """
    try:
        for name, (default, doc, choices, read_only) in STRING_PARAMS.items():
            node.declare_parameter(name, default, descriptor(doc, read_only, choices))
        for name, default, doc, limits in OTHER_PARAMS:
            node.declare_parameter(name, default, descriptor(
                doc, name not in RUNTIME_PARAMS, **_ranges(default, limits)))
        values = {name: node.get_parameter(name).value
                  for name in ('label_set', 'weights', 'cache_dir')}
        label_set = label_set_for(values)
        if not values['label_set'] and label_set.name != 'cityscapes':
            node.get_logger().info(label_set.from_checkpoint_message())
        node.declare_parameter('drivable_classes', list(label_set.default_drivable), descriptor(
            f'Class names ~/drivable_mask marks 255, e.g. [road] (classes of {label_set.name}: '
            f'{", ".join(label_set.classes)})'))
    except ParameterException as exc:
        raise RegsegError(f'{exc}: fix the value in the params file or the -p override'
                          f'{type_hint(str(exc))}') from None
    return label_set


def node_params(node) -> Dict[str, object]:
    """Return every declared parameter's value by name."""
    return {name: param.value for name, param in node._parameters.items()}


def warn_unknown(node, prefixes: Iterable[str] = ()) -> None:
    """Warn about parameters given to ``node`` that it does not declare (typos)."""
    skip = ('qos_overrides.',) + tuple(prefixes)
    unknown = sorted(name for name in getattr(node, '_parameter_overrides', {})
                     if name not in node._parameters and not name.startswith(skip))
    if unknown:
        node.get_logger().warning(
            f'ignoring parameters this node does not have: {unknown} (a typo?); it has '
            f'{sorted(node._parameters)}')


def check_choices(p: Dict[str, object]) -> None:
    """Raise RegsegError for a string parameter outside its choices."""
    for name, (_default, _doc, choices, _ro) in STRING_PARAMS.items():
        if choices and p[name] not in choices:
            raise RegsegError(f'parameter {name!r} is {p[name]!r}: set it to one of '
                              f'{list(choices)}')


def backend_options(p) -> Dict[str, object]:
    """Backend options the user set (unset ones are left out, so nothing is logged)."""
    names = BACKEND_OPTION_PARAMS.get(
        p['backend'], tuple(name for names in BACKEND_OPTION_PARAMS.values() for name in names))
    return {name: p[name] for name in names if p[name]}


def build_segmenter(node, p: Dict[str, object], label_set: LabelSet,
                    max_batch: int = 1) -> Segmenter:
    """Load the backend the parameters ask for, warm it up and return its Segmenter."""
    options = backend_options(p)
    if max_batch > 1:
        options['max_batch'] = max_batch
        options['exact_batch'] = p['exact_batch']
    config = BackendConfig(
        model=p['model'], num_classes=label_set.num_classes, weights=p['weights'],
        allow_untrained=p['allow_untrained'], device=p['device'], precision=p['precision'],
        input_size=(p['network_height'], p['network_width']),
        cache_dir=p['cache_dir'] or None, options=options)
    log = node.get_logger()
    if not p['weights'] and p['allow_untrained']:
        log.warning('no weights: running an UNTRAINED RegSeg (allow_untrained is true); its '
                    'labels are meaningless. Set weights to a released checkpoint for real '
                    'output.')
    if p['cpu_threads'] > 0:
        import torch
        torch.set_num_threads(p['cpu_threads'])
    log.info(f'loading {p["model"]} on {p["backend"]}/{p["device"]} ({p["precision"]}), '
             f'network input {p["network_width"]}x{p["network_height"]}'
             + (f', batch 1..{max_batch}' if max_batch > 1 else ''))
    backend = create_backend(p['backend'], config, log=log.info)
    segmenter = Segmenter(backend, label_set, p['drivable_classes'], p['overlay_alpha'],
                          p['output_resolution'])
    backend.warmup()
    return segmenter


def validate_runtime(segmenter: Segmenter, params) -> None:
    """Raise RegsegError for a run-time parameter change the node must refuse."""
    for param in params:
        if param.name == 'drivable_classes':
            segmenter.label_set.class_ids(param.value or [])
            if not param.value:
                raise RegsegError('drivable_classes is empty: name at least one class')
        elif param.name == 'output_resolution' and param.value not in RESOLUTIONS:
            raise RegsegError(f'output_resolution {param.value!r} is not one of '
                              f'{list(RESOLUTIONS)}')


def apply_runtime(segmenter: Segmenter, settings, params) -> SetParametersResult:
    """Check and apply run-time changes; ``settings`` (a dict) gets max_rate_hz etc."""
    try:
        validate_runtime(segmenter, params)
    except RegsegError as exc:
        return SetParametersResult(successful=False, reason=str(exc))
    for param in params:
        if param.name == 'drivable_classes':
            segmenter.set_drivable_classes(list(param.value))
        elif param.name == 'overlay_alpha':
            segmenter.set_overlay_alpha(param.value)
        elif param.name == 'output_resolution':
            segmenter.output_resolution = param.value
        elif param.name in ('max_rate_hz', 'max_input_pixels'):
            settings[param.name] = param.value
    return SetParametersResult(successful=True)


def usage_rows(extra: Iterable[Tuple[str, str, str]] = ()) -> List[str]:
    """Return one ``--help`` line per parameter (default; * = changeable at run time)."""
    rows = [(name, repr(default), doc) for name, (default, doc, _c, _ro) in STRING_PARAMS.items()]
    rows += [(name, repr(default), doc) for name, default, doc, _limits in OTHER_PARAMS]
    rows.append(('drivable_classes', "['road']", 'Class names ~/drivable_mask marks 255'))
    rows += list(extra)
    lines = []
    for name, default, doc in sorted(rows):
        live = '*' if name in RUNTIME_PARAMS else ' '
        lines.append(f' {live} {name:22s} {default:20s} {doc}')
    return lines
