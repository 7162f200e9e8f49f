"""
Logic behind the launch files, kept free of ROS imports so it is testable without launch.

Platform presets (``config/<platform>.yaml``), the launch arguments, the node's parameter list
(platform file, then the user's ``params_file``, then non-empty launch-argument overrides) and
the camera list of ``config/vehicle_cameras.yaml``.
"""

from dataclasses import dataclass
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from regseg_ros.backends import CHOICES as BACKEND_CHOICES
from regseg_ros.errors import RegsegError

PACKAGE = 'regseg_ros'
EXECUTABLE = 'segmentation_node'
NODE_NAME = 'regseg'

# platform -> what it is for; each has a config/<platform>.yaml
PLATFORMS = {
    'desktop_gpu': 'x86-64 PC with an NVIDIA GPU (CUDA, fp16, full 1024x2048 network)',
    'jetson_orin': 'Jetson AGX Orin / Orin NX (CUDA, fp16, 768x1536 network, 15 Hz)',
    'jetson_xavier': 'Jetson AGX Xavier / Xavier NX (CUDA, fp16, 512x1024 network, 10 Hz)',
    'cpu': 'any machine without a usable GPU (fp32, 512x1024 network, 5 Hz)',
}
DEFAULT_PLATFORM = 'desktop_gpu'
TRANSPORTS = ('raw', 'compressed')
DEFAULT_IMAGE = '/camera/image_raw'
CAMERAS_FILE = 'vehicle_cameras.yaml'
RVIZ_FILE = 'regseg.rviz'
RESPAWN_DELAY_S = 2.0

_TRUE = ('true', '1')    # what launch's IfCondition accepts, in any case
_FALSE = ('false', '0')
_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')
_NAMESPACE = re.compile(r'/?([A-Za-z][A-Za-z0-9_]*)(/[A-Za-z][A-Za-z0-9_]*)*')
_TOPIC = re.compile(r'/?([A-Za-z][A-Za-z0-9_]*)(/[A-Za-z][A-Za-z0-9_]*)*')

# Launch arguments: (name, default, description). Both launch files share COMMON_ARGUMENTS.
COMMON_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('platform', DEFAULT_PLATFORM,
     'Hardware preset: loads config/<platform>.yaml (one of: '
     + ', '.join(f'{k}: {v}' for k, v in PLATFORMS.items()) + ')'),
    ('params_file', '',
     'Your parameter YAML (keyed /**: ros__parameters:), applied after the platform file so '
     'its values win; empty: none'),
    ('weights', '',
     'Checkpoint: a path, an https:// URL or a released name such as '
     'cityscapes_exp48_trainval; empty: keep the value of the YAML files'),
    ('backend', '',
     f'Inference backend, one of {list(BACKEND_CHOICES)}; empty: keep the value of the YAML '
     'files'),
    ('use_sim_time', 'false',
     'true when replaying a bag with `ros2 bag play --clock` (node clock follows /clock)'),
    ('allow_untrained', 'false',
     'true runs an UNTRAINED network when weights is empty (demos and tests only; the labels '
     'are meaningless); false leaves the YAML value (default false)'),
    ('respawn', 'false',
     f'true restarts the node {RESPAWN_DELAY_S:g} s after it exits (also after a start-up error: '
     'check the log)'),
)
SEGMENTATION_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('image', DEFAULT_IMAGE,
     'Camera image topic (sensor_msgs/Image); with input_transport compressed the node '
     'subscribes <image>/compressed'),
    ('namespace', '',
     'Namespace of the node: outputs go to <namespace>/regseg/labels etc.; empty: none'),
    ('input_transport', '',
     f'Input transport, one of {list(TRANSPORTS)}; empty: keep the value of the YAML files '
     '(raw unless set)'),
) + COMMON_ARGUMENTS + (
    ('rviz', 'false',
     'true also starts rviz2 with config/regseg.rviz showing the camera, overlay, colour and '
     'drivable mask'),
)
VEHICLE_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('cameras_file', '',
     'YAML listing the cameras (name, topic, transport, enabled, optional namespace); '
     'empty: config/vehicle_cameras.yaml of this package'),
) + COMMON_ARGUMENTS
# Arguments whose values launch itself checks (DeclareLaunchArgument choices).
ARGUMENT_CHOICES: Dict[str, List[str]] = {'platform': list(PLATFORMS)}


def parse_bool(value: Union[str, bool], name: str) -> bool:
    """Turn a launch argument (true, false, 1 or 0 in any case, as IfCondition) into a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RegsegError(f'launch argument {name}:={value!r} is not a boolean: use true or false')


def platform_params_file(platform: str, config_dir: str) -> str:
    """Return ``<config_dir>/<platform>.yaml``; raise naming the valid platforms."""
    if platform not in PLATFORMS:
        raise RegsegError(
            f'platform {platform!r} is unknown: use one of {list(PLATFORMS)} '
            '(or platform:=cpu plus params_file:=<your.yaml> for other hardware)')
    path = os.path.join(config_dir, f'{platform}.yaml')
    if not os.path.isfile(path):
        raise RegsegError(f'platform file {path!r} is missing: reinstall regseg_ros '
                          '(colcon build) so config/ is in its share folder')
    return path


def check_params_file(path: str) -> str:
    """Return ``path`` ('' for none) after checking the file exists."""
    path = os.path.expanduser(path.strip())
    if path and not os.path.isfile(path):
        raise RegsegError(f'params_file {path!r} does not exist: pass the path of a YAML file '
                          'keyed /**: ros__parameters:, or leave params_file empty')
    return path


def node_overrides(weights: str = '', backend: str = '', input_transport: str = '',
                   use_sim_time: bool = False, allow_untrained: bool = False
                   ) -> Dict[str, object]:
    """
    Build the parameters set by launch arguments.

    Empty ``weights``, ``backend`` and ``input_transport`` keep the YAML values;
    ``allow_untrained`` is passed only when true, so false leaves the YAML value;
    ``use_sim_time`` is always passed, as ROS launch files do.
    """
    overrides: Dict[str, object] = {}
    weights, backend, input_transport = (v.strip() for v in (weights, backend, input_transport))
    if weights:
        overrides['weights'] = weights
    if backend:
        if backend not in BACKEND_CHOICES:
            raise RegsegError(f'launch argument backend:={backend!r} is not a backend: use one '
                              f'of {list(BACKEND_CHOICES)}, or leave it empty for the YAML value')
        overrides['backend'] = backend
    if input_transport:
        if input_transport not in TRANSPORTS:
            raise RegsegError(
                f'launch argument input_transport:={input_transport!r} is not a transport: use '
                f'one of {list(TRANSPORTS)}, or leave it empty for the YAML value')
        overrides['input_transport'] = input_transport
    if allow_untrained:
        overrides['allow_untrained'] = True
    overrides['use_sim_time'] = bool(use_sim_time)
    return overrides


def node_parameters(platform_file: str, params_file: str = '',
                    overrides: Optional[Mapping[str, object]] = None
                    ) -> List[Union[str, Dict[str, object]]]:
    """Order the node's parameters: platform file, then params_file, then overrides (last wins)."""
    params: List[Union[str, Dict[str, object]]] = [platform_file]
    if params_file:
        params.append(params_file)
    if overrides:
        params.append(dict(overrides))
    return params


def normalize_namespace(namespace: str) -> str:
    """Strip blanks and trailing slashes; '' and '/' mean no namespace; raise on invalid names."""
    ns = namespace.strip().rstrip('/')
    if ns and not _NAMESPACE.fullmatch(ns):
        raise RegsegError(f'namespace {namespace!r} is not a valid ROS namespace: use letters, '
                          'digits and _ in /-separated tokens that start with a letter, e.g. '
                          '/front')
    return ns


def node_prefix(namespace: str, node_name: str = NODE_NAME) -> str:
    """Return the node's private topic prefix, e.g. /front/regseg/ ('' gives /regseg/)."""
    ns = normalize_namespace(namespace).strip('/')
    return '/' + (ns + '/' if ns else '') + node_name + '/'


def output_topic(namespace: str, output: str, node_name: str = NODE_NAME) -> str:
    """Return where the node in ``namespace`` publishes ``output`` (e.g. /front/regseg/labels)."""
    return node_prefix(namespace, node_name) + output


def input_topic(image: str, transport: str) -> str:
    """Return the topic the node subscribes for ``image`` with ``transport``."""
    return image + '/compressed' if transport == 'compressed' else image


@dataclass(frozen=True)
class Camera:
    """One camera of ``vehicle_cameras.yaml``: a regseg node runs in ``namespace``."""

    name: str
    topic: str
    transport: str = 'raw'
    enabled: bool = True
    namespace: str = ''

    def describe(self) -> str:
        """Summarise the camera's input and output topics for the launch log."""
        return (f'camera {self.name}: {input_topic(self.topic, self.transport)} '
                f'({self.transport}) -> {output_topic(self.namespace, "*")}')


CAMERA_KEYS = ('name', 'topic', 'transport', 'enabled', 'namespace')


def _camera(entry: object, index: int, source: str) -> Camera:
    where = f'{source}: cameras[{index}]'
    if not isinstance(entry, dict):
        raise RegsegError(f'{where} is {entry!r}: each camera must be a mapping with keys '
                          f'{list(CAMERA_KEYS)} (name and topic required)')
    unknown = sorted(set(map(str, entry)) - set(CAMERA_KEYS))
    if unknown:
        raise RegsegError(f'{where} has unknown key(s) {unknown}: the keys are '
                          f'{list(CAMERA_KEYS)}')
    name = entry.get('name')
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegsegError(f'{where} name is {name!r}: give a name of letters, digits and _ that '
                          'starts with a letter, e.g. front')
    where = f'{source}: camera {name!r}'
    topic = entry.get('topic')
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic.strip()):
        raise RegsegError(f'{where} topic is {topic!r}: give the image topic, e.g. '
                          f'/{name}_camera/image_raw')
    topic = topic.strip()
    transport = entry.get('transport', 'raw')
    if transport not in TRANSPORTS:
        raise RegsegError(f'{where} transport is {transport!r}: use one of {list(TRANSPORTS)}')
    if transport == 'compressed' and topic.endswith('/compressed'):
        raise RegsegError(f'{where} topic {topic!r} ends in /compressed: give the base topic '
                          f'({topic[:-len("/compressed")]}); the node appends /compressed')
    enabled = entry.get('enabled', True)
    if not isinstance(enabled, bool):
        raise RegsegError(f'{where} enabled is {enabled!r}: use true or false')
    namespace = entry.get('namespace', name)
    if not isinstance(namespace, str) or not normalize_namespace(namespace):
        raise RegsegError(f'{where} namespace is {namespace!r}: give a namespace such as '
                          f'{name}, or leave it out to use the camera name')
    return Camera(name=name, topic=topic, transport=transport, enabled=enabled,
                  namespace=normalize_namespace(namespace))


def parse_cameras(data: object, source: str = 'cameras file') -> List[Camera]:
    """Validate the parsed YAML of a cameras file and return every camera, enabled or not."""
    if not isinstance(data, dict):
        got = 'an empty file' if data is None else f'a {type(data).__name__}'
    elif not isinstance(data.get('cameras'), list):
        got = (f'cameras: {data["cameras"]!r}' if 'cameras' in data
               else f'the keys {sorted(map(str, data))}')
    else:
        got = ''
    if got:
        raise RegsegError(f'{source} must be a mapping with a list under `cameras:`, got {got}: '
                          f'see config/{CAMERAS_FILE} of regseg_ros for the format')
    cameras = [_camera(entry, i, source) for i, entry in enumerate(data['cameras'])]
    for key in ('name', 'namespace'):
        seen = set()
        for cam in cameras:
            value = getattr(cam, key).strip('/')
            if value in seen:
                raise RegsegError(f'{source}: two cameras have {key} {value!r}: their outputs '
                                  f'would collide; give each camera its own {key}')
            seen.add(value)
    if not any(cam.enabled for cam in cameras):
        raise RegsegError(f'{source}: no camera is enabled (found {[c.name for c in cameras]}): '
                          'set enabled: true on at least one')
    return cameras


def load_cameras(path: str) -> List[Camera]:
    """Read a cameras YAML file; return every camera (see :func:`enabled_cameras`)."""
    import yaml
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise RegsegError(f'cannot read cameras file {path!r} ({exc.strerror}): pass '
                          'cameras_file:=<path to your cameras YAML>') from exc
    except yaml.YAMLError as exc:
        raise RegsegError(f'cameras file {path!r} is not valid YAML: {exc}') from exc
    return parse_cameras(data, source=f'cameras file {path!r}')


def enabled_cameras(cameras: Sequence[Camera]) -> List[Camera]:
    """Return the cameras with ``enabled: true``."""
    return [cam for cam in cameras if cam.enabled]


def launch_values(context_values: Mapping[str, str],
                  arguments: Sequence[Tuple[str, str, str]]) -> Dict[str, str]:
    """Return every argument's value, the default where ``context_values`` lacks it."""
    return {name: str(context_values.get(name, default)).strip()
            for name, default, _doc in arguments}


def render_rviz_config(text: str, namespace: str = '', image: str = DEFAULT_IMAGE,
                       transport: str = 'raw') -> str:
    """Point ``config/regseg.rviz`` (written for /camera/image_raw and /regseg/) at real topics."""
    text = text.replace(f'Value: /{NODE_NAME}/', f'Value: {node_prefix(namespace)}')
    return text.replace(f'Value: {DEFAULT_IMAGE}\n', f'Value: {input_topic(image, transport)}\n')
