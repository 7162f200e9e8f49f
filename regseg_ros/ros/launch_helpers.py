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
Logic behind the launch files, kept free of ROS imports so it is testable without launch.

Platform presets (``config/<platform>.yaml``) and ``platform:=auto``, the launch arguments, the
node's parameter list (platform file, then the user's ``params_file``, then non-empty
launch-argument overrides, written to a file of :class:`LaunchFiles`), the camera list of
``config/vehicle_cameras.yaml``, the CPU thread split between cameras, and what happens when a
node exits (:class:`ExitWatcher`). Only :func:`supervised_node` imports launch, when called.
"""

import atexit
from dataclasses import dataclass
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from regseg_ros.backends import CHOICES as BACKEND_CHOICES
from regseg_ros.core.errors import RegsegError

PACKAGE = 'regseg_ros'
EXECUTABLE = 'segmentation_node'
NODE_NAME = 'regseg'
MULTI_EXECUTABLE = 'multi_camera_node'
MULTI_NODE_NAME = 'multi_camera'
FREESPACE_EXECUTABLE = 'freespace_node'
FREESPACE_NODE_NAME = 'freespace'
FREESPACE_FILE = 'freespace.yaml'

# platform -> what it is for; each has a config/<platform>.yaml
# (network sizes width x height)
PLATFORMS = {
    'desktop_gpu': 'x86-64 PC with an NVIDIA GPU (CUDA, fp16, full 2048x1024 network)',
    'jetson_orin': 'Jetson AGX Orin / Orin NX (CUDA, fp16, 1536x768 network, 15 Hz)',
    'jetson_xavier': 'Jetson AGX Xavier / Xavier NX (CUDA, fp16, 1024x512 network, 10 Hz)',
    'cpu': 'any machine without a usable GPU (fp32, 1024x512 network, 5 Hz)',
}
AUTO_PLATFORM = 'auto'
DEFAULT_PLATFORM = AUTO_PLATFORM
# The node's exit code for a configuration error at start-up (after one FATAL line); crashes
# exit 1 or by a signal, SIGINT/SIGTERM exit 0.
CONFIG_ERROR_EXIT = 2
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
     + ', '.join(f'{k}: {v}' for k, v in PLATFORMS.items())
     + '); auto picks jetson_orin / jetson_xavier on a Jetson, desktop_gpu where torch sees '
     'CUDA, else cpu, and logs why'),
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
    ('cpu_threads', '',
     'Torch CPU threads of each node (0: one per core); empty: the YAML value, except that '
     'vehicle_cameras on the CPU splits the cores between the enabled cameras'),
    ('respawn', 'false',
     f'true restarts a node {RESPAWN_DELAY_S:g} s after it crashes; a configuration error at '
     f'start-up (exit code {CONFIG_ERROR_EXIT}) is never respawned and ends the launch with its '
     'reason'),
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
     'drivable mask (skipped with a warning when rviz2 is not installed)'),
)
VEHICLE_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('cameras_file', '',
     'YAML listing the cameras (name, topic, transport, enabled, optional namespace, '
     'camera_info, pose); empty: config/vehicle_cameras.yaml of this package'),
    ('process_per_camera', 'false',
     'false: ONE multi_camera_node segments every enabled camera with one model, in batches '
     '(max_batch of the platform file); true: one segmentation_node process per camera '
     '(process isolation, N copies of the model). Output topics are the same either way'),
    ('freespace', 'true',
     'true also starts freespace_node (node name freespace, config/freespace.yaml) fusing the '
     "cameras' labels into a grid and a scan in base_link; false: segmentation only"),
    ('freespace_label_set', '',
     'Classes of the labels for freespace_node: cityscapes, camvid, a classes YAML or a '
     'checkpoint written by train (give your fine-tuned weights here too); empty: the value '
     'of config/freespace.yaml (cityscapes)'),
) + COMMON_ARGUMENTS
# Arguments whose values launch itself checks (DeclareLaunchArgument choices).
ARGUMENT_CHOICES: Dict[str, List[str]] = {'platform': [AUTO_PLATFORM] + list(PLATFORMS)}


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


def parse_cpu_threads(value: str) -> Optional[int]:
    """Turn the cpu_threads launch argument into an int (None when empty)."""
    text = str(value).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 256:
        raise RegsegError(f'launch argument cpu_threads:={value!r} is not a thread count: use a '
                          'whole number from 0 (one per core) to 256, or leave it empty')
    return int(text)


def node_overrides(weights: str = '', backend: str = '', input_transport: str = '',
                   use_sim_time: bool = False, allow_untrained: bool = False,
                   cpu_threads: Optional[int] = None) -> Dict[str, object]:
    """
    Build the parameters set by launch arguments.

    Empty ``weights``, ``backend`` and ``input_transport`` keep the YAML values;
    ``allow_untrained`` is passed only when true, so false leaves the YAML value;
    ``cpu_threads`` only when not None; ``use_sim_time`` is always passed, as ROS launch files
    do.
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
    if cpu_threads is not None:
        overrides['cpu_threads'] = int(cpu_threads)
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
    """
    One camera of ``vehicle_cameras.yaml``: its outputs are published under ``namespace``.

    ``camera_info`` is its CameraInfo topic; ``pose`` (x, y, z, roll, pitch, yaw) the camera
    body frame in base_link (metres, radians; REP-103: x along the optical axis, y left, z up;
    pitch > 0 looks down), or None: the freespace node then asks tf2.
    """

    name: str
    topic: str
    transport: str = 'raw'
    enabled: bool = True
    namespace: str = ''
    camera_info: str = ''
    pose: Optional[Tuple[float, float, float, float, float, float]] = None

    def describe(self) -> str:
        """Summarise the camera's input and output topics for the launch log."""
        return (f'camera {self.name}: {input_topic(self.topic, self.transport)} '
                f'({self.transport}) -> {output_topic(self.namespace, "*")}')


CAMERA_KEYS = ('name', 'topic', 'transport', 'enabled', 'namespace', 'camera_info', 'pose')
POSE_KEYS = ('x', 'y', 'z', 'roll', 'pitch', 'yaw')


def sibling_camera_info(topic: str) -> str:
    """Return the CameraInfo topic beside an image topic (/a/image_raw -> /a/camera_info)."""
    head, _sep, _tail = topic.rpartition('/')
    return f'{head}/camera_info' if head or topic.startswith('/') else 'camera_info'


def _pose(value: object, where: str) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    numbers = (isinstance(value, list) and len(value) == 6
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not numbers or not all(math.isfinite(v) for v in value):
        raise RegsegError(f'{where} pose is {value!r}: give 6 numbers [x, y, z, roll, pitch, '
                          'yaw] of the camera in base_link (metres, radians; pitch > 0 looks '
                          'down), e.g. [1.8, 0.0, 1.5, 0.0, 0.17, 0.0], or leave pose out to '
                          'use tf2')
    return tuple(float(v) for v in value)


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
    camera_info = entry.get('camera_info', sibling_camera_info(topic))
    if not isinstance(camera_info, str) or not _TOPIC.fullmatch(camera_info.strip()):
        raise RegsegError(f'{where} camera_info is {camera_info!r}: give its CameraInfo topic, '
                          f'e.g. {sibling_camera_info(topic)}, or leave it out for that default')
    return Camera(name=name, topic=topic, transport=transport, enabled=enabled,
                  namespace=normalize_namespace(namespace), camera_info=camera_info.strip(),
                  pose=_pose(entry.get('pose'), where))


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


def multi_camera_parameters(cameras: Sequence[Camera]) -> Dict[str, object]:
    """Return the multi_camera_node parameters naming ``cameras`` (topics, namespaces)."""
    params: Dict[str, object] = {'cameras': [cam.name for cam in cameras]}
    for cam in cameras:
        params[f'{cam.name}.topic'] = cam.topic
        params[f'{cam.name}.transport'] = cam.transport
        params[f'{cam.name}.namespace'] = cam.namespace.strip('/')
    return params


def freespace_parameters(cameras: Sequence[Camera], base_frame: str = 'base_link',
                         label_set: str = '') -> Dict[str, object]:
    """
    Return the freespace_node parameters for ``cameras`` (and ``label_set`` when not empty).

    Per camera NAME: ``NAME.labels_topic`` and ``NAME.confidence_topic`` (the segmentation
    outputs under its namespace), ``NAME.camera_info_topic`` and, when the cameras file gives
    one, ``NAME.pose`` (6 floats; without it the freespace node looks the camera up in tf2).
    """
    params: Dict[str, object] = {'cameras': [cam.name for cam in cameras],
                                 'base_frame': base_frame}
    if label_set.strip():
        params['label_set'] = label_set.strip()
    for cam in cameras:
        params[f'{cam.name}.labels_topic'] = output_topic(cam.namespace, 'labels')
        params[f'{cam.name}.confidence_topic'] = output_topic(cam.namespace, 'confidence')
        params[f'{cam.name}.camera_info_topic'] = cam.camera_info or sibling_camera_info(
            cam.topic)
        if cam.pose is not None:
            params[f'{cam.name}.pose'] = [float(v) for v in cam.pose]
    return params


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


# -- platform:=auto ----------------------------------------------------------------------------

JETSON_MODEL_FILE = '/proc/device-tree/model'
TEGRA_RELEASE_FILE = '/etc/nv_tegra_release'
# Run in a child process: the launch process stays free of torch (and of a CUDA context).
_CUDA_PROBE = ('import json\n'
               'try:\n'
               '    import torch\n'
               'except Exception as exc:\n'
               '    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))\n'
               'else:\n'
               '    ok = bool(torch.cuda.is_available())\n'
               '    print(json.dumps({"cuda": ok, "torch": torch.__version__,\n'
               '                      "gpu": torch.cuda.get_device_name(0) if ok else ""}))\n')
CUDA_PROBE_TIMEOUT_S = 120.0


def _read_text(path: str) -> str:
    try:
        with open(path, 'rb') as f:
            return f.read(4096).decode(errors='replace').replace('\0', '').strip()
    except OSError:
        return ''


def probe_cuda(timeout: float = CUDA_PROBE_TIMEOUT_S) -> Tuple[bool, str]:
    """Ask torch, in a child python, whether CUDA is usable; return (usable, what it said)."""
    try:
        out = subprocess.run([sys.executable, '-c', _CUDA_PROBE], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f'the torch CUDA check did not answer within {timeout:g} s'
    except OSError as exc:
        return False, f'the torch CUDA check did not run ({exc})'
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        said = (out.stderr.strip().splitlines() or ['no output'])[-1]
        return False, f'the torch CUDA check failed (exit code {out.returncode}: {said})'
    if 'error' in result:
        return False, f'torch cannot be imported ({result["error"]})'
    if result['cuda']:
        return True, f'torch {result["torch"]} sees CUDA ({result["gpu"]})'
    return False, f'torch {result["torch"]}: torch.cuda.is_available() is False'


def jetson_platform(read_text: Callable[[str], str] = _read_text) -> Tuple[str, str]:
    """
    Return (jetson preset, how it was recognised), or ('', '') when this is not a Jetson.

    The device-tree model names the module (``NVIDIA Jetson AGX Orin Developer Kit``);
    /etc/nv_tegra_release names the L4T release: R36 (JetPack 6) runs only on Orin, R35
    (JetPack 5) on Orin and Xavier, older releases on older modules, which get the lighter
    jetson_xavier preset.
    """
    model = read_text(JETSON_MODEL_FILE)
    tegra = read_text(TEGRA_RELEASE_FILE)
    lowered = model.lower()
    if 'orin' in lowered:
        return 'jetson_orin', f'{JETSON_MODEL_FILE}: {model!r}'
    if 'xavier' in lowered:
        return 'jetson_xavier', f'{JETSON_MODEL_FILE}: {model!r}'
    release = re.search(r'\bR(\d+)\b', tegra)
    if release and int(release.group(1)) >= 36:
        return 'jetson_orin', f'{TEGRA_RELEASE_FILE}: L4T R{release.group(1)} (JetPack 6: Orin)'
    if tegra or 'jetson' in lowered:
        seen = (f'{TEGRA_RELEASE_FILE}: {tegra.splitlines()[0]!r}' if tegra
                else f'{JETSON_MODEL_FILE}: {model!r}')
        return 'jetson_xavier', (f'{seen}, a Jetson that is not recognisably an Orin: the '
                                 'lighter jetson_xavier preset')
    return '', ''


def detect_platform(read_text: Callable[[str], str] = _read_text,
                    cuda_probe: Optional[Callable[[], Tuple[bool, str]]] = None
                    ) -> Tuple[str, str]:
    """Pick the preset for this machine; return (platform, why) for the launch log."""
    jetson, seen = jetson_platform(read_text)
    usable, said = (cuda_probe or probe_cuda)()
    if jetson:
        if usable:
            return jetson, f'Jetson ({seen}) and {said}'
        return 'cpu', (f'Jetson ({seen}) but {said}: install PyTorch for Jetson (JetPack) to use '
                       f'the GPU, or pass platform:={jetson}')
    if usable:
        return 'desktop_gpu', said
    return 'cpu', f'{said}; pass platform:=desktop_gpu (or a jetson_* preset) to insist'


def resolve_platform(platform: str,
                     detect: Optional[Callable[[], Tuple[str, str]]] = None
                     ) -> Tuple[str, str]:
    """Return (platform, why): ``auto`` is detected, a named preset is kept ('' for why)."""
    platform = platform.strip()
    if platform == AUTO_PLATFORM:
        return (detect or detect_platform)()
    return platform, ''


# -- CPU threads -------------------------------------------------------------------------------

def cpu_count() -> int:
    """Return the cores this process may run on (its affinity, e.g. in a container)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def params_file_values(path: str) -> Dict[str, object]:
    """
    Return the parameters a YAML params file sets, merged over all its node sections.

    Good enough to see whether it sets ``device`` or ``cpu_threads``; raise naming the file
    when it is not a ROS params file.
    """
    if not path:
        return {}
    import yaml
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise RegsegError(f'cannot read params file {path!r} ({exc.strerror})') from exc
    except yaml.YAMLError as exc:
        raise RegsegError(f'params file {path!r} is not valid YAML: {exc}') from exc
    values: Dict[str, object] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'ros__parameters' and isinstance(value, dict):
                    values.update(value)
                else:
                    walk(value)
    walk(data)
    return values


def split_cpu_threads(cameras: int, cores: Optional[int] = None) -> int:
    """Threads per node so that ``cameras`` CPU nodes share the cores (at least 1 each)."""
    cores = cpu_count() if cores is None else cores
    return max(1, cores // max(1, cameras))


def vehicle_cpu_threads(requested: Optional[int], platform_file: str, params_file: str,
                        cameras: int, cores: Optional[int] = None) -> Tuple[Optional[int], str]:
    """
    Decide the cpu_threads override of each vehicle node; return (threads or None, why).

    The user's choice wins: the cpu_threads launch argument, else a cpu_threads in params_file.
    Otherwise, when the nodes run on the CPU (device of the files), the cores are split between
    the cameras, so N nodes do not each start one torch thread per core. None: keep the files.
    """
    if requested is not None:
        return requested, ''
    platform_values = params_file_values(platform_file)
    user_values = params_file_values(params_file)
    if 'cpu_threads' in user_values:
        return None, ''
    device = str(user_values.get('device', platform_values.get('device', 'cpu')))
    if not device.startswith('cpu'):
        return None, ''
    cores = cpu_count() if cores is None else cores
    threads = split_cpu_threads(cameras, cores)
    return threads, (f'{cores} core(s) shared by {cameras} camera node(s) on the CPU: '
                     f'cpu_threads {threads} each (cpu_threads:=N or cpu_threads in params_file '
                     'to choose)')


# -- files the launch writes -------------------------------------------------------------------

class LaunchFiles:
    """
    A private temporary folder for what one launch writes (parameter and RViz files).

    launch_ros writes a ``/tmp/launch_params_*`` file for every dict of parameters and never
    removes it; the launch files pass only file paths, written here, and remove the folder at
    shutdown (:meth:`cleanup`, also run at interpreter exit).
    """

    def __init__(self, prefix: str = 'regseg_launch_'):
        self.path = tempfile.mkdtemp(prefix=prefix)
        atexit.register(self.cleanup)

    def write_text(self, name: str, text: str) -> str:
        """Write ``name`` in the folder and return its path."""
        path = os.path.join(self.path, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def write_params(self, name: str, params: Mapping[str, object]) -> str:
        """Write ``params`` as a ``/**: ros__parameters:`` file; return its path."""
        import yaml
        text = yaml.safe_dump({'/**': {'ros__parameters': dict(params)}},
                              default_flow_style=False)
        return self.write_text(name, text)

    def parameter_files(self, parameters: Sequence[Union[str, Mapping[str, object]]],
                        stem: str) -> List[str]:
        """Return ``parameters`` with each dict replaced by the path of a file holding it."""
        paths = []
        for i, entry in enumerate(parameters):
            if isinstance(entry, Mapping):
                entry = self.write_params(f'{stem}_{i}.yaml', entry)
            paths.append(entry)
        return paths

    def cleanup(self, *_args) -> None:
        """Remove the folder (safe to call more than once; takes and ignores handler args)."""
        shutil.rmtree(self.path, ignore_errors=True)


def file_stem(namespace: str) -> str:
    """Name files after a node's namespace: '' -> regseg, /vehicle/front -> vehicle_front."""
    return normalize_namespace(namespace).strip('/').replace('/', '_') or NODE_NAME


# -- RViz --------------------------------------------------------------------------------------

def rviz_missing(find_prefix: Optional[Callable[[str], str]] = None) -> str:
    """Return why rviz2 cannot start ('' when its package is installed)."""
    if find_prefix is None:
        from ament_index_python.packages import get_package_prefix as find_prefix
    try:
        find_prefix('rviz2')
    except Exception as exc:  # noqa: B902 (PackageNotFoundError, or no ament index at all)
        why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError quotes
        return (f'rviz:=true but rviz2 is not installed ({why}): starting without RViz; install '
                'ros-$ROS_DISTRO-rviz2 (or ros-$ROS_DISTRO-desktop) for it')
    return ''


# -- what happens when a node exits ------------------------------------------------------------

_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
_FATAL = re.compile(r'\[FATAL\] \[[^\]]*\] \[[^\]]*\]: cannot start: (.*\S)')


def describe_exit(returncode: int) -> str:
    """Say what an exit code means for the node."""
    if returncode == 0:
        return 'exit code 0, a clean stop'
    if returncode == CONFIG_ERROR_EXIT:
        return f'exit code {CONFIG_ERROR_EXIT}, a configuration error'
    if returncode < 0:
        try:
            return f'killed by {signal.Signals(-returncode).name}, a crash'
        except ValueError:
            return f'killed by signal {-returncode}, a crash'
    return f'exit code {returncode}, a crash'


class LaunchFailure(RegsegError):
    """Raised in a launch event handler: ros2 launch logs it and exits non-zero."""


@dataclass(frozen=True)
class ExitDecision:
    """What the launch does after a node exits: ignore, respawn or fail, and the message."""

    action: str
    message: str = ''


class ExitWatcher:
    """
    Follows one node process: reads its output for the FATAL line, decides at its exit.

    - launch shutting down, or exit 0: nothing (the node was stopped);
    - exit 2, a configuration error: fail the launch with the node's reason, also with
      respawn (the same error would come back on every start);
    - any other exit (a crash): respawn when asked, else fail the launch.
    """

    def __init__(self, label: str, respawn: bool = False,
                 respawn_delay: float = RESPAWN_DELAY_S):
        self.label, self.respawn, self.respawn_delay = label, respawn, respawn_delay
        self.reason: Optional[str] = None
        self._partial = ''

    def feed(self, data: Union[bytes, str]) -> None:
        """Take a chunk of the node's stdout or stderr; remember its 'cannot start' reason."""
        text = data.decode(errors='replace') if isinstance(data, bytes) else data
        lines = (self._partial + text).split('\n')
        self._partial = lines.pop()[-4096:]
        for line in lines:
            self._scan(line)

    def _scan(self, line: str) -> None:
        found = _FATAL.search(_ANSI.sub('', line))
        if found and self.reason is None:
            self.reason = found.group(1)

    def decide(self, returncode: int, shutting_down: bool = False) -> ExitDecision:
        """Decide what follows the node's exit with ``returncode``."""
        if self._partial:
            self._scan(self._partial)
        if shutting_down or returncode == 0:
            return ExitDecision('ignore')
        what = describe_exit(returncode)
        if returncode == CONFIG_ERROR_EXIT:
            reason = self.reason or 'see its FATAL line above'
            tail = (' (not respawned: a configuration error comes back on every start)'
                    if self.respawn else '')
            return ExitDecision('fail', f'{self.label} cannot start ({what}): {reason}{tail}')
        if self.respawn:
            return ExitDecision('respawn', f'{self.label} exited ({what}): respawning in '
                                           f'{self.respawn_delay:g} s')
        reason = f': {self.reason}' if self.reason else ''
        return ExitDecision('fail', f'{self.label} exited ({what}){reason}; the launch stops '
                                    '(respawn:=true restarts crashed nodes)')


REASON_GRACE_S = 0.5


def supervised_node(make_node: Callable[[], object], label: str, respawn: bool,
                    respawn_delay: float = RESPAWN_DELAY_S) -> List[object]:
    """
    Return launch entities that start ``make_node()`` and act on its exit (:class:`ExitWatcher`).

    The event handlers are registered before the node, so launch_ros' own handlers (which
    print the node's last output) run first. A failure raises :class:`LaunchFailure` from the
    handler: LaunchService logs 'Caught exception in launch', shuts down and returns 1, which
    ``ros2 launch`` exits with (Humble to Kilted). A respawn is a new node action after
    ``respawn_delay`` (a TimerAction, cancelled at shutdown) rather than launch's own respawn,
    which restarts on any exit code.
    """
    import launch.logging
    from launch.actions import OpaqueFunction, RegisterEventHandler, TimerAction
    from launch.event_handlers import OnProcessExit, OnProcessIO

    node = make_node()
    watcher = ExitWatcher(label, respawn, respawn_delay)

    def on_output(event):
        watcher.feed(event.text)

    def fail(returncode):
        raise LaunchFailure(watcher.decide(returncode).message)

    def on_exit(event, context):
        decision = watcher.decide(event.returncode, context.is_shutdown)
        if decision.action == 'respawn':
            launch.logging.get_logger('regseg').warning(decision.message)
            return TimerAction(period=respawn_delay, actions=supervised_node(
                make_node, label, respawn, respawn_delay))
        if decision.action == 'fail':
            if event.returncode == CONFIG_ERROR_EXIT and watcher.reason is None:
                # The FATAL line may still be in the pipe: read it before failing.
                return TimerAction(period=REASON_GRACE_S, actions=[OpaqueFunction(
                    function=lambda _context: fail(event.returncode))])
            raise LaunchFailure(decision.message)
        return None

    return [RegisterEventHandler(OnProcessIO(target_action=node, on_stdout=on_output,
                                             on_stderr=on_output)),
            RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit)),
            node]
