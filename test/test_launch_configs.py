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
Launch configuration without launch installed: platform files, camera lists, launch files.

Every config/<platform>.yaml is loaded by the real node executable (with CPU overrides) and read
back over GetParameters. The launch files run against small stand-ins of the launch API, and
the Node actions they return are started the way launch_ros starts them (--params-file per
parameter entry, -r remappings), so the whole path from launch arguments to topics is checked.
The event handlers they register (node exit, node output, shutdown) are called the way
LaunchService calls them: a configuration error (exit code 2) raises with the node's reason,
a crash respawns when asked, the files the launch wrote are gone after shutdown.
"""

import importlib.util
import logging
import os
from pathlib import Path
import re
import sys
import types

import cv2
import numpy as np
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from regseg_ros.backends import CHOICES as BACKEND_CHOICES
from regseg_ros.core.errors import RegsegError
from regseg_ros.ros import launch_helpers as helpers
from ros_harness import make_image, NodeProcess, RosPeer, stamp_of
from sensor_msgs.msg import CompressedImage, Image
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / 'config'
LAUNCH = ROOT / 'launch'
OUTPUTS = {'labels': 'mono8', 'drivable_mask': 'mono8', 'color': 'rgb8', 'overlay': 'rgb8',
           'confidence': 'mono8'}
# What lets a platform file start on this CPU-only machine: given after --params-file, so it wins.
CPU_OVERRIDES = {'device': 'cpu', 'precision': 'fp32', 'allow_untrained': True,
                 'network_height': 64, 'network_width': 128}
SMALL_PARAMS = """/**:
  ros__parameters:
    network_height: 64
    network_width: 128
"""
START_S = 120.0


def platform_values(platform):
    """Return the ros__parameters of config/<platform>.yaml, checking its layout."""
    data = yaml.safe_load((CONFIG / f'{platform}.yaml').read_text())
    assert list(data) == ['/**'], f'{platform}.yaml must be keyed /**: (matches any namespace)'
    assert list(data['/**']) == ['ros__parameters']
    return data['/**']['ros__parameters']


def cli_value(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def ros_args_of(node):
    """Turn a Node action's arguments into the --ros-args launch_ros would pass."""
    kw = node.kwargs
    args = ['-r', f'__node:={kw["name"]}']
    if kw.get('namespace'):
        args += ['-r', f'__ns:=/{kw["namespace"].strip("/")}']
    for entry in kw.get('parameters', []):
        # a dict would make launch_ros write a /tmp/launch_params_* file it never removes
        assert isinstance(entry, str), f'parameters must be file paths, got {entry!r}'
        args += ['--params-file', entry]
    for src, dst in kw.get('remappings', []):
        args += ['-r', f'{src}:={dst}']
    return args


# -- stand-ins for the launch API, enough to run the two launch files ------------------------

class _Entity:
    """An action or condition: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _DeclareLaunchArgument(_Entity):
    """launch.actions.DeclareLaunchArgument."""

    def __init__(self, name, default_value=None, description=None, choices=None):
        super().__init__(name, default_value=default_value, description=description,
                         choices=choices)
        self.name, self.default_value, self.description = name, default_value, description
        self.choices = choices


class _LaunchConfiguration:
    """launch.substitutions.LaunchConfiguration: the argument's value in the context."""

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _fake_launch_modules():
    mods = {name: types.ModuleType(name) for name in (
        'launch', 'launch.actions', 'launch.conditions', 'launch.event_handlers', 'launch.logging',
        'launch.substitutions', 'launch_ros', 'launch_ros.actions')}
    mods['launch'].LaunchDescription = lambda entities: list(entities)
    for name in ('actions', 'conditions', 'event_handlers', 'logging', 'substitutions'):
        setattr(mods['launch'], name, mods[f'launch.{name}'])
    mods['launch_ros'].actions = mods['launch_ros.actions']
    actions = mods['launch.actions']
    actions.DeclareLaunchArgument = _DeclareLaunchArgument
    for name in ('OpaqueFunction', 'LogInfo', 'RegisterEventHandler', 'TimerAction'):
        setattr(actions, name, type(name, (_Entity,), {}))
    for name in ('OnProcessExit', 'OnProcessIO', 'OnShutdown'):
        setattr(mods['launch.event_handlers'], name, type(name, (_Entity,), {}))
    mods['launch.logging'].get_logger = lambda name: logging.getLogger(f'launch.{name}')
    mods['launch.conditions'].IfCondition = type('IfCondition', (_Entity,), {})
    mods['launch.substitutions'].LaunchConfiguration = _LaunchConfiguration
    mods['launch_ros.actions'].Node = type('Node', (_Entity,), {})
    return mods


def cuda_probe_says(usable):
    """Stand in for the torch CUDA check of platform:=auto."""
    return lambda: (usable, f'torch.cuda.is_available() is {usable} (stand-in)')


def run_launch_file(monkeypatch, filename, rviz2_installed=True, cuda=False,
                    **arguments):
    """Run ``launch/<filename>`` with ``name:=value`` arguments; return (declared, actions)."""
    for name, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    import ament_index_python.packages as packages
    monkeypatch.setattr(packages, 'get_package_share_directory', lambda pkg: str(ROOT))

    def get_package_prefix(pkg):
        if pkg == 'rviz2' and not rviz2_installed:
            raise packages.PackageNotFoundError(
                f"package '{pkg}' not found, searching: ['/opt/ros/stand-in']")
        return '/opt/ros/stand-in'
    monkeypatch.setattr(packages, 'get_package_prefix', get_package_prefix)
    # platform:=auto: what torch says about CUDA, without the child python
    monkeypatch.setattr(helpers, 'probe_cuda', cuda_probe_says(cuda))
    spec = importlib.util.spec_from_file_location(filename.replace('.', '_'), LAUNCH / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    declared = {e.name: e for e in entities if isinstance(e, _DeclareLaunchArgument)}
    unknown = set(arguments) - set(declared)
    assert not unknown, f'not launch arguments: {unknown}'
    for name, value in arguments.items():
        choices = declared[name].choices
        if choices is not None and value not in choices:
            raise RegsegError(f'launch rejects {name}:={value} (choices {choices})')
    context = types.SimpleNamespace(launch_configurations={
        name: arguments.get(name, arg.default_value) for name, arg in declared.items()})
    actions = []
    for entity in entities:
        if type(entity).__name__ == 'OpaqueFunction':
            actions += entity.kwargs['function'](context)
    return declared, actions


def of_type(actions, name):
    return [a for a in actions if type(a).__name__ == name]


def nodes_of(actions):
    return of_type(actions, 'Node')


def handlers_of(actions, name):
    """Return the event handlers of RegisterEventHandler actions, e.g. 'OnProcessExit'."""
    return [a.args[0] for a in of_type(actions, 'RegisterEventHandler')
            if type(a.args[0]).__name__ == name]


def shut_down(actions):
    """Call the OnShutdown handlers as LaunchService does at shutdown."""
    for handler in handlers_of(actions, 'OnShutdown'):
        handler.kwargs['on_shutdown'](types.SimpleNamespace(reason='test'), LaunchContext())


def launch_dirs(actions):
    """Return the folders of the files the launch wrote (its parameter and RViz files)."""
    paths = [p for node in nodes_of(actions) for p in node.kwargs.get('parameters', [])]
    return {Path(p).parent for p in paths if Path(p).parent.name.startswith('regseg_launch_')}


class LaunchContext(types.SimpleNamespace):
    """What the handlers read of launch.LaunchContext."""

    def __init__(self, is_shutdown=False):
        super().__init__(is_shutdown=is_shutdown)


def node_exits(actions, returncode, output=b'', node=None, shutting_down=False):
    """
    Play a node's output and exit through the handlers registered for it, as LaunchService.

    Returns what the exit handler returned (None, or a TimerAction); raises what it raises.
    """
    node = node or nodes_of(actions)[0]
    for handler in handlers_of(actions, 'OnProcessIO'):
        if handler.kwargs['target_action'] is node:
            for chunk in (output[i:i + 7] for i in range(0, len(output), 7)):
                handler.kwargs['on_stderr'](types.SimpleNamespace(text=chunk))
    (on_exit,) = [h.kwargs['on_exit'] for h in handlers_of(actions, 'OnProcessExit')
                  if h.kwargs['target_action'] is node]
    return on_exit(types.SimpleNamespace(returncode=returncode, action=node),
                   LaunchContext(is_shutdown=shutting_down))


def params_of(node):
    """Return the node's parameters merged over its files, as the node merges them."""
    merged = {}
    for path in node.kwargs['parameters']:
        merged.update(helpers.params_file_values(path))
    return merged


def fatal_line(reason, node='regseg'):
    return f'[FATAL] [1712345678.123456789] [{node}]: cannot start: {reason}\n'.encode()


# -- the processes: started once, in parallel ------------------------------------------------

@pytest.fixture(scope='module')
def peer():
    p = RosPeer('launch_config_test')
    yield p
    p.close()


@pytest.fixture(scope='module')
def cameras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('cameras') / 'cameras.yaml'
    path.write_text("""cameras:
  - {name: lc_front, topic: /lc_front_cam/image_raw, transport: raw}
  - {name: lc_left, topic: /lc_left_cam/image_raw, transport: compressed}
  - {name: lc_rear, topic: /lc_rear_cam/image_raw, transport: compressed, enabled: false}
""")
    return path


MULTI_CAMERAS = """cameras:
  - {name: mc_front, topic: /mc_front_cam/image_raw, pose: [1.8, 0.0, 1.5, 0.0, 0.17, 0.0]}
  - {name: mc_left, topic: /mc_left_cam/image_raw, transport: compressed, namespace: car/left}
  - {name: mc_rear, topic: /mc_rear_cam/image_raw, enabled: false}
"""


@pytest.fixture(scope='module')
def fleet(tmp_path_factory, cameras_file):
    """Start every platform node, the unmodified desktop_gpu node and the launched vehicle."""
    pytest.importorskip('torch')
    tmp = tmp_path_factory.mktemp('fleet')
    procs, actions = {}, []
    try:
        for platform in helpers.PLATFORMS:
            overrides = [a for k, v in CPU_OVERRIDES.items()
                         for a in ('-p', f'{k}:={cli_value(v)}')]
            procs[platform] = NodeProcess(
                tmp, '--params-file', str(CONFIG / f'{platform}.yaml'), *overrides,
                '-r', f'__node:=cfg_{platform}')
        procs['desktop_gpu_as_is'] = NodeProcess(
            tmp, '--params-file', str(CONFIG / 'desktop_gpu.yaml'), '-r', '__node:=cfg_as_is')
        (tmp / 'small.yaml').write_text(SMALL_PARAMS)
        mp = pytest.MonkeyPatch()
        try:
            _declared, actions = run_launch_file(
                mp, 'vehicle_cameras.launch.py', platform='cpu', allow_untrained='true',
                params_file=str(tmp / 'small.yaml'), cameras_file=str(cameras_file),
                process_per_camera='true', freespace='false')
            (tmp / 'multi_cameras.yaml').write_text(MULTI_CAMERAS)
            _declared, multi_actions = run_launch_file(
                mp, 'vehicle_cameras.launch.py', platform='cpu', allow_untrained='true',
                params_file=str(tmp / 'small.yaml'), cameras_file=str(tmp / 'multi_cameras.yaml'),
                freespace='false')
            actions += multi_actions
        finally:
            mp.undo()
        for node in nodes_of(actions):
            procs[node.kwargs.get('namespace') or node.kwargs['name']] = NodeProcess(
                tmp, *ros_args_of(node), executable=node.kwargs['executable'])
        yield procs
    finally:
        codes = {name: proc.stop() for name, proc in procs.items()}
        shut_down(actions)
    for name, code in codes.items():
        if name != 'desktop_gpu_as_is':
            assert code == 0, f'{name} exited {code}:\n{procs[name].log()}'


def get_parameters(peer, proc, node, names):
    """Return {name: (type, value)} read over ``node``'s get_parameters service."""
    client = peer.node.create_client(GetParameters, f'{node}/get_parameters')

    def alive_and(predicate):
        def check():
            assert proc.proc.poll() is None, f'{node} exited early:\n{proc.log()}'
            return predicate()
        return check
    try:
        peer.spin_until(alive_and(client.service_is_ready), START_S, f'{node}/get_parameters')
        future = client.call_async(GetParameters.Request(names=list(names)))
        peer.spin_until(alive_and(future.done), START_S, f'parameters of {node}')
    finally:
        peer.node.destroy_client(client)
    return {name: (value.type, parameter_value_to_python(value))
            for name, value in zip(names, future.result().values)}


# -- platform files ---------------------------------------------------------------------------

def test_config_folder_holds_a_file_per_platform():
    yamls = {p.stem for p in CONFIG.glob('*.yaml')}
    others = {Path(helpers.CAMERAS_FILE).stem, Path(helpers.FREESPACE_FILE).stem}
    assert yamls - others == set(helpers.PLATFORMS)
    assert helpers.DEFAULT_PLATFORM == helpers.AUTO_PLATFORM not in helpers.PLATFORMS


def test_config_figures_are_backed_and_sizes_are_width_x_height():
    """Every timing in a config names where it was measured; sizes are written width x height."""
    for path in CONFIG.glob('*.yaml'):
        text = path.read_text()
        for line in text.splitlines():
            if re.search(r'\d\s*ms\b', line):
                assert 'benchmark' in text.lower() and 'Xeon' in text, (path.name, line)
        for width, height in re.findall(r'\b(\d{3,4})x(\d{3,4})\b', text):
            assert int(width) > int(height), f'{path.name}: {width}x{height} is not width x height'
    cpu = (CONFIG / 'cpu.yaml').read_text()
    assert '140 ms' not in cpu and '74 ms' not in cpu  # never measured on the machine named
    assert '118.5 ms' in cpu and '110.9 ms' in cpu and '184 ms' in cpu


@pytest.mark.ros
@pytest.mark.parametrize('platform', list(helpers.PLATFORMS))
def test_platform_file_is_what_the_node_runs_with(platform, fleet, peer):
    values = platform_values(platform)
    got = get_parameters(peer, fleet[platform], f'/cfg_{platform}',
                         sorted(set(values) | set(CPU_OVERRIDES)))
    undeclared = [k for k, (kind, _v) in got.items() if kind == ParameterType.PARAMETER_NOT_SET]
    assert not undeclared, f'{platform}.yaml sets parameters the node does not declare (rclpy ' \
                           f'ignores them silently): {undeclared}'
    for name, value in values.items():
        if name not in CPU_OVERRIDES:
            assert got[name][1] == value, name
            assert type(got[name][1]) is type(value), name
    for name, value in CPU_OVERRIDES.items():  # the command line, after the file, wins
        assert got[name][1] == value, name
    # the values the overrides replaced must still be sound choices
    assert 'allow_untrained' not in values, 'a platform preset must never run random weights'
    device, precision = values['device'], values['precision']
    assert re.fullmatch(r'cpu|cuda(:\d+)?', device)
    assert precision in ('fp32', 'fp16')
    assert precision == 'fp32' or device.startswith('cuda'), 'fp16 needs CUDA'
    assert values['backend'] in BACKEND_CHOICES
    height, width = values['network_height'], values['network_width']
    assert isinstance(height, int) and isinstance(width, int)
    assert 64 <= height <= 4096 and 64 <= width <= 8192
    assert height % 32 == 0 and width % 32 == 0
    assert width == 2 * height, 'Cityscapes checkpoints expect a 1:2 network input'


@pytest.mark.ros
def test_desktop_gpu_file_as_is_stops_clearly_without_cuda(fleet):
    import torch
    if torch.cuda.is_available():
        pytest.skip('CUDA is available here: desktop_gpu.yaml would start')
    proc = fleet['desktop_gpu_as_is']
    assert proc.wait(timeout=START_S) == helpers.CONFIG_ERROR_EXIT, proc.log()
    log = proc.log()
    assert 'cannot start' in log and "device 'cuda' asked for, but CUDA is not available" in log
    assert 'set device to cpu' in log
    (fatal,) = [line for line in log.splitlines() if '[FATAL]' in line]
    watcher = helpers.ExitWatcher('/cfg_as_is')
    watcher.feed(log)
    assert watcher.reason and watcher.reason in fatal


# -- the vehicle launch, started as launch_ros would --------------------------------------------

@pytest.mark.ros
def test_vehicle_launch_segments_each_enabled_camera(fleet, peer):
    assert set(fleet) >= {'lc_front', 'lc_left'} and 'lc_rear' not in fleet
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[24:] = (128, 64, 128)
    raw = make_image(frame, 'rgb8', stamp=(7, 1), frame_id='lc_front')
    ok, buf = cv2.imencode('.png', frame[..., ::-1])
    assert ok
    packed = CompressedImage(format='png', data=buf.tobytes())
    packed.header = make_image(frame, 'rgb8', stamp=(7, 2), frame_id='lc_left').header
    for ns, msg_type, topic, msg in (
            ('lc_front', Image, '/lc_front_cam/image_raw', raw),
            ('lc_left', CompressedImage, '/lc_left_cam/image_raw/compressed', packed)):
        outs = {name: peer.collect(Image, helpers.output_topic(ns, name)) for name in OUTPUTS}
        pub = peer.publisher(msg_type, topic)

        def answered():
            assert fleet[ns].proc.poll() is None, fleet[ns].log()
            return all(any(stamp_of(m) == stamp_of(msg) for m in got) for got in outs.values())
        peer.publish_until(pub, msg, answered, timeout=START_S, what=f'outputs of {ns}')
        for name, encoding in OUTPUTS.items():
            out = next(m for m in outs[name] if stamp_of(m) == stamp_of(msg))
            assert (out.encoding, out.height, out.width) == (encoding, 48, 64)
            assert out.header.frame_id == ns
    names = peer.node.get_node_names_and_namespaces()
    assert ('regseg', '/lc_front') in names and ('regseg', '/lc_left') in names
    assert not any(ns in ('/lc_rear', '/mc_front', '/car/left') for _name, ns in names)
    got = get_parameters(peer, fleet['lc_left'], '/lc_left/regseg',
                         ['input_transport', 'network_width', 'max_rate_hz', 'use_sim_time',
                          'cpu_threads'])
    assert {k: v for k, (_t, v) in got.items()} == {
        'input_transport': 'compressed', 'network_width': 128,  # params_file beats platform
        'max_rate_hz': platform_values('cpu')['max_rate_hz'], 'use_sim_time': False,
        'cpu_threads': helpers.split_cpu_threads(2)}  # two enabled cameras share the cores


@pytest.mark.ros
def test_vehicle_launch_default_one_process_serves_every_camera(fleet, peer):
    proc = fleet[helpers.MULTI_NODE_NAME]
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[24:] = (128, 64, 128)
    raw = make_image(frame, 'rgb8', stamp=(8, 1), frame_id='mc_front')
    ok, buf = cv2.imencode('.png', frame[..., ::-1])
    assert ok
    packed = CompressedImage(format='png', data=buf.tobytes())
    packed.header = make_image(frame, 'rgb8', stamp=(8, 2), frame_id='mc_left').header
    for ns, msg_type, topic, msg in (
            ('mc_front', Image, '/mc_front_cam/image_raw', raw),
            ('car/left', CompressedImage, '/mc_left_cam/image_raw/compressed', packed)):
        outs = {name: peer.collect(Image, helpers.output_topic(ns, name)) for name in OUTPUTS}
        pub = peer.publisher(msg_type, topic)

        def answered():
            assert proc.proc.poll() is None, proc.log()
            return all(any(stamp_of(m) == stamp_of(msg) for m in got) for got in outs.values())
        peer.publish_until(pub, msg, answered, timeout=START_S, what=f'outputs of {ns}')
        for name, encoding in OUTPUTS.items():
            out = next(m for m in outs[name] if stamp_of(m) == stamp_of(msg))
            assert (out.encoding, out.height, out.width) == (encoding, 48, 64)
            assert out.header.frame_id == msg.header.frame_id
    got = get_parameters(peer, proc, f'/{helpers.MULTI_NODE_NAME}',
                         ['cameras', 'mc_left.transport', 'network_width', 'max_batch'])
    assert {k: v for k, (_t, v) in got.items()} == {
        'cameras': ['mc_front', 'mc_left'], 'mc_left.transport': 'compressed',
        'network_width': 128, 'max_batch': platform_values('cpu')['max_batch']}


# -- the launch files' logic ------------------------------------------------------------------

@pytest.mark.parametrize('filename,arguments', [
    ('segmentation.launch.py', helpers.SEGMENTATION_ARGUMENTS),
    ('vehicle_cameras.launch.py', helpers.VEHICLE_ARGUMENTS),
])
def test_launch_arguments_have_defaults_and_descriptions(monkeypatch, filename, arguments):
    declared, actions = run_launch_file(monkeypatch, filename, allow_untrained='true')
    assert list(declared) == [name for name, _d, _doc in arguments]
    for name, arg in declared.items():
        assert isinstance(arg.default_value, str), name
        assert arg.description and len(arg.description) > 20, name
    for name in ('platform', 'params_file', 'weights', 'backend', 'use_sim_time',
                 'allow_untrained', 'respawn', 'cpu_threads'):
        assert name in declared
    assert declared['platform'].default_value == 'auto'
    assert declared['platform'].choices == ['auto'] + list(helpers.PLATFORMS)
    assert nodes_of(actions)
    shut_down(actions)


def test_segmentation_launch_builds_the_node(monkeypatch, tmp_path):
    params = tmp_path / 'mine.yaml'
    params.write_text(SMALL_PARAMS)
    _declared, actions = run_launch_file(
        monkeypatch, 'segmentation.launch.py', platform='jetson_orin', image='/cam/image_raw',
        namespace='/vehicle/front', params_file=str(params), weights='/w/regseg.pth',
        input_transport='compressed', use_sim_time='True', respawn='true')
    (node,) = nodes_of(actions)
    kw = node.kwargs
    assert (kw['package'], kw['executable'], kw['name']) == (
        'regseg_ros', 'segmentation_node', 'regseg')
    assert kw['namespace'] == '/vehicle/front'
    assert kw['remappings'] == [('image', '/cam/image_raw')]
    platform_file, params_file, overrides = kw['parameters']
    assert (platform_file, params_file) == (str(CONFIG / 'jetson_orin.yaml'), str(params))
    assert yaml.safe_load(Path(overrides).read_text()) == {'/**': {'ros__parameters': {
        'weights': '/w/regseg.pth', 'input_transport': 'compressed', 'use_sim_time': True}}}
    # launch's own respawn restarts on every exit code: the launch file restarts crashes itself
    assert 'respawn' not in kw
    assert [type(a).__name__ for a in actions] == [
        'RegisterEventHandler', 'RegisterEventHandler', 'RegisterEventHandler', 'Node']
    assert {type(h).__name__ for h in (a.args[0] for a in actions[:3])} == {
        'OnShutdown', 'OnProcessIO', 'OnProcessExit'}
    (folder,) = launch_dirs(actions)
    shut_down(actions)
    assert not folder.exists()


def test_segmentation_launch_defaults(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py')
    (node,) = nodes_of(actions)
    # platform:=auto on a machine where torch sees no CUDA: the cpu preset, and the log says why
    assert node.kwargs['parameters'][0] == str(CONFIG / 'cpu.yaml')
    assert params_of(node) == dict(platform_values('cpu'), use_sim_time=False)
    (log,) = [a.kwargs['msg'] for a in of_type(actions, 'LogInfo')]
    assert log.startswith('regseg: platform:=auto picked cpu: torch.cuda.is_available() is '
                          'False')
    assert node.kwargs['remappings'] == [('image', '/camera/image_raw')]
    assert not of_type(actions, 'TimerAction')
    shut_down(actions)


def test_segmentation_launch_auto_picks_desktop_gpu_where_torch_sees_cuda(monkeypatch):
    monkeypatch.setattr(helpers, 'JETSON_MODEL_FILE', '/nonexistent/model')
    monkeypatch.setattr(helpers, 'TEGRA_RELEASE_FILE', '/nonexistent/nv_tegra_release')
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', cuda=True)
    (node,) = nodes_of(actions)
    assert node.kwargs['parameters'][0] == str(CONFIG / 'desktop_gpu.yaml')
    (log,) = [a.kwargs['msg'] for a in of_type(actions, 'LogInfo')]
    assert 'platform:=auto picked desktop_gpu: torch.cuda.is_available() is True' in log
    shut_down(actions)


def test_segmentation_launch_rviz_file_is_removed_at_shutdown(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', rviz='true',
                                         namespace='front', image='/front_camera/image_raw')
    regseg, rviz = nodes_of(actions)
    assert rviz.kwargs['executable'] == 'rviz2'
    assert rviz.kwargs['arguments'][0] == '-d'
    config = Path(rviz.kwargs['arguments'][1])
    topics = [d['Topic']['Value'] for d in
              yaml.safe_load(config.read_text())['Visualization Manager']['Displays']]
    # the camera displays first (config/regseg.rviz may add freespace displays after them)
    assert topics[:4] == ['/front_camera/image_raw', '/front/regseg/overlay',
                          '/front/regseg/color', '/front/regseg/drivable_mask']
    assert params_of(rviz) == {'use_sim_time': False}
    assert config.parent in launch_dirs(actions)
    shut_down(actions)
    assert not config.exists() and not config.parent.exists()


def test_segmentation_launch_without_rviz2_skips_rviz_with_a_warning(monkeypatch, caplog):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', rviz='true',
                                         rviz2_installed=False)
    (node,) = nodes_of(actions)  # the segmentation node only: no rviz2 action to fail on
    assert node.kwargs['executable'] == 'segmentation_node'
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "rviz:=true but rviz2 is not installed (package 'rviz2' not found" in warning.message
    assert 'starting without RViz' in warning.message
    (folder,) = launch_dirs(actions)
    assert not list(folder.glob('*.rviz'))
    shut_down(actions)
    assert not folder.exists()


@pytest.mark.parametrize('arguments,expected', [
    ({'platform': 'jetson_nano'}, 'launch rejects platform:=jetson_nano'),
    ({'params_file': '/nonexistent/mine.yaml'}, "params_file '/nonexistent/mine.yaml' does not"),
    ({'backend': 'onnx'}, "backend:='onnx' is not a backend: use one of"),
    ({'input_transport': 'theora'}, "input_transport:='theora' is not a transport"),
    ({'use_sim_time': 'maybe'}, "use_sim_time:='maybe' is not a boolean"),
    ({'rviz': 'yes'}, "rviz:='yes' is not a boolean: use true or false"),
    ({'namespace': '1st camera'}, "namespace '1st camera' is not a valid ROS namespace"),
    ({'cpu_threads': 'all'}, "cpu_threads:='all' is not a thread count"),
])
def test_segmentation_launch_rejects_bad_arguments(monkeypatch, arguments, expected):
    with pytest.raises(RegsegError, match=re.escape(expected)):
        run_launch_file(monkeypatch, 'segmentation.launch.py', **arguments)


def test_vehicle_launch_builds_a_node_per_enabled_camera(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='jetson_xavier', backend='auto',
                                         process_per_camera='true', freespace='false')
    nodes = nodes_of(actions)
    assert [n.kwargs['namespace'] for n in nodes] == ['front', 'left', 'right']
    assert [n.kwargs['remappings'] for n in nodes] == [
        [('image', '/front_camera/image_raw')], [('image', '/left_camera/image_raw')],
        [('image', '/right_camera/image_raw')]]
    assert [n.kwargs['parameters'][0] for n in nodes] == [str(CONFIG / 'jetson_xavier.yaml')] * 3
    # on the GPU the preset's cpu_threads (pre/post-processing) is kept
    assert [params_of(n) for n in nodes] == [
        dict(platform_values('jetson_xavier'), backend='auto', use_sim_time=False,
             input_transport=transport) for transport in ('raw', 'compressed', 'compressed')]
    logs = ' | '.join(a.kwargs['msg'] for a in actions if type(a).__name__ == 'LogInfo')
    assert 'skipping camera rear (enabled: false' in logs
    assert 'camera left: /left_camera/image_raw/compressed (compressed) -> /left/regseg/*' in logs
    assert 'platform:=auto' not in logs and 'cpu_threads' not in logs
    shut_down(actions)


def test_vehicle_launch_default_is_one_multi_camera_node_and_freespace(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='cpu', weights='/w/regseg.pth')
    multi, freespace = nodes_of(actions)
    assert (multi.kwargs['executable'], multi.kwargs['name']) == ('multi_camera_node',
                                                                  'multi_camera')
    assert 'namespace' not in multi.kwargs and 'remappings' not in multi.kwargs
    assert multi.kwargs['parameters'][0] == str(CONFIG / 'cpu.yaml')
    # one process: the cores are not split, the platform file's cpu_threads stays
    assert params_of(multi) == dict(
        platform_values('cpu'), weights='/w/regseg.pth', use_sim_time=False,
        cameras=['front', 'left', 'right'],
        **{'front.topic': '/front_camera/image_raw', 'front.transport': 'raw',
           'front.namespace': 'front', 'left.topic': '/left_camera/image_raw',
           'left.transport': 'compressed', 'left.namespace': 'left',
           'right.topic': '/right_camera/image_raw', 'right.transport': 'compressed',
           'right.namespace': 'right'})
    assert (freespace.kwargs['executable'], freespace.kwargs['name']) == ('freespace_node',
                                                                          'freespace')
    assert freespace.kwargs['parameters'][0] == str(CONFIG / 'freespace.yaml')
    cameras = helpers.enabled_cameras(helpers.load_cameras(str(CONFIG / helpers.CAMERAS_FILE)))
    assert helpers.params_file_values(freespace.kwargs['parameters'][1]) == dict(
        helpers.freespace_parameters(cameras), use_sim_time=False)
    logs = ' | '.join(a.kwargs['msg'] for a in of_type(actions, 'LogInfo'))
    assert 'one multi_camera_node for 3 camera(s)' in logs and 'cpu_threads' not in logs
    # both are supervised: a configuration error of either ends the launch with its reason
    for node, label in ((multi, '/multi_camera'), (freespace, '/freespace')):
        with pytest.raises(helpers.LaunchFailure, match=re.escape(
                f'{label} cannot start (exit code 2, a configuration error): {REASON}')):
            node_exits(actions, helpers.CONFIG_ERROR_EXIT, fatal_line(REASON, label[1:]),
                       node=node)
    shut_down(actions)


def test_vehicle_launch_gives_freespace_node_the_label_set_asked_for(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='cpu', freespace_label_set='/runs/best.pth')
    freespace = [n for n in nodes_of(actions) if n.kwargs['executable'] == 'freespace_node'][0]
    values = helpers.params_file_values(freespace.kwargs['parameters'][1])
    assert values['label_set'] == '/runs/best.pth'
    shut_down(actions)


def test_vehicle_launch_without_freespace_starts_segmentation_only(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='cpu', freespace='false')
    assert [n.kwargs['executable'] for n in nodes_of(actions)] == ['multi_camera_node']
    with pytest.raises(RegsegError, match="process_per_camera:='maybe'"):
        run_launch_file(monkeypatch, 'vehicle_cameras.launch.py', process_per_camera='maybe')
    shut_down(actions)


def test_freespace_parameters_follow_the_contract():
    cameras = helpers.parse_cameras({'cameras': [
        {'name': 'front', 'topic': '/front_camera/image_raw',
         'pose': [1.8, 0, 1.5, 0, 0.17, 0]},
        {'name': 'left', 'topic': '/left_camera/image_raw', 'namespace': '/car/left',
         'camera_info': '/left_fisheye/camera_info'},
    ]})
    assert helpers.freespace_parameters(cameras, base_frame='base_footprint') == {
        'cameras': ['front', 'left'], 'base_frame': 'base_footprint',
        'front.labels_topic': '/front/regseg/labels',
        'front.confidence_topic': '/front/regseg/confidence',
        'front.camera_info_topic': '/front_camera/camera_info',
        'front.pose': [1.8, 0.0, 1.5, 0.0, 0.17, 0.0],
        'left.labels_topic': '/car/left/regseg/labels',
        'left.confidence_topic': '/car/left/regseg/confidence',
        'left.camera_info_topic': '/left_fisheye/camera_info'}  # no pose: tf2
    assert helpers.freespace_parameters(cameras[:1], label_set=' /runs/best.pth ') == {
        'cameras': ['front'], 'base_frame': 'base_link', 'label_set': '/runs/best.pth',
        'front.labels_topic': '/front/regseg/labels',
        'front.confidence_topic': '/front/regseg/confidence',
        'front.camera_info_topic': '/front_camera/camera_info',
        'front.pose': [1.8, 0.0, 1.5, 0.0, 0.17, 0.0]}
    assert helpers.sibling_camera_info('cam/image') == 'cam/camera_info'
    assert helpers.sibling_camera_info('image') == 'camera_info'


# -- helpers ----------------------------------------------------------------------------------

def test_shipped_cameras_file_parses():
    cameras = helpers.load_cameras(str(CONFIG / helpers.CAMERAS_FILE))
    assert [(c.name, c.namespace, c.topic, c.transport, c.enabled) for c in cameras] == [
        ('front', 'front', '/front_camera/image_raw', 'raw', True),
        ('left', 'left', '/left_camera/image_raw', 'compressed', True),
        ('right', 'right', '/right_camera/image_raw', 'compressed', True),
        ('rear', 'rear', '/rear_camera/image_raw', 'compressed', False),
    ]
    assert [c.name for c in helpers.enabled_cameras(cameras)] == ['front', 'left', 'right']
    assert helpers.output_topic('front', 'labels') == '/front/regseg/labels'
    front, left, right, rear = cameras
    assert front.camera_info == '/front_camera/camera_info'
    assert front.pose[0] == 1.8 and front.pose[2] == 1.5 and 0.1 < front.pose[4] < 0.3
    assert abs(left.pose[5] - np.pi / 2) < 1e-3 and abs(right.pose[5] + np.pi / 2) < 1e-3
    assert left.pose[1] > 0 > right.pose[1]  # y left (REP-103)
    assert abs(rear.pose[5] - np.pi) < 1e-3 and rear.pose[0] < 0
    text = (CONFIG / helpers.CAMERAS_FILE).read_text()
    assert 'distortion_model equidistant' in text


def test_disabled_cameras_are_skipped_and_namespaces_can_be_set():
    cameras = helpers.parse_cameras({'cameras': [
        {'name': 'a', 'topic': '/a/image_raw', 'enabled': False},
        {'name': 'b', 'topic': 'b/image_raw', 'namespace': '/vehicle/b/'},
    ]})
    (b,) = helpers.enabled_cameras(cameras)
    assert (b.name, b.namespace, b.transport) == ('b', '/vehicle/b', 'raw')
    assert helpers.output_topic(b.namespace, 'drivable_mask') == '/vehicle/b/regseg/drivable_mask'


def test_unknown_platform_lists_the_choices():
    with pytest.raises(RegsegError) as err:
        helpers.platform_params_file('jetson_nano', str(CONFIG))
    assert "platform 'jetson_nano' is unknown: use one of ['desktop_gpu', 'jetson_orin', " \
           "'jetson_xavier', 'cpu']" in str(err.value)
    assert helpers.platform_params_file('cpu', str(CONFIG)) == str(CONFIG / 'cpu.yaml')


@pytest.mark.parametrize('text,expected', [
    ('cameras: [\n  {name: front', 'is not valid YAML'),
    ('', 'must be a mapping with a list under `cameras:`, got an empty file'),
    ('- front\n', 'got a list'),
    ('camera:\n  - {name: front, topic: /f}\n', "got the keys ['camera']"),
    ('cameras: front\n', "got cameras: 'front'"),
    ('cameras:\n  - front\n', "cameras[0] is 'front': each camera must be a mapping"),
    ('cameras:\n  - {topic: /f/image_raw}\n', 'cameras[0] name is None'),
    ('cameras:\n  - {name: front}\n', "camera 'front' topic is None: give the image topic"),
    ('cameras:\n  - {name: f, topic: /f, enable: false}\n', "unknown key(s) ['enable']"),
    ('cameras:\n  - {name: f, topic: /f, transport: h264}\n', "transport is 'h264': use one of"),
    ('cameras:\n  - {name: f, topic: /f/compressed, transport: compressed}\n',
     'ends in /compressed: give the base topic (/f)'),
    ('cameras:\n  - {name: f, topic: /f, enabled: "no"}\n', "enabled is 'no': use true or false"),
    ('cameras:\n  - {name: a, topic: /a}\n  - {name: b, topic: /b, namespace: a}\n',
     "two cameras have namespace 'a'"),
    ('cameras:\n  - {name: a, topic: /a, enabled: false}\n', 'no camera is enabled'),
    ('cameras:\n  - {name: a, topic: /a, pose: [1, 2, 3]}\n',
     'pose is [1, 2, 3]: give 6 numbers [x, y, z, roll, pitch, yaw]'),
    ('cameras:\n  - {name: a, topic: /a, pose: [1, 2, 3, 0, x, 0]}\n', "pose is [1, 2, 3, 0, 'x'"),
    ('cameras:\n  - {name: a, topic: /a, pose: [1, 2, .nan, 0, 0, 0]}\n', 'pose is [1, 2, nan'),
    ('cameras:\n  - {name: a, topic: /a, camera_info: 7}\n',
     'camera_info is 7: give its CameraInfo topic, e.g. /camera_info'),
])
def test_malformed_cameras_file_is_explained(tmp_path, text, expected):
    path = tmp_path / 'cameras.yaml'
    path.write_text(text)
    with pytest.raises(RegsegError, match=re.escape(expected)) as err:
        helpers.load_cameras(str(path))
    assert str(path) in str(err.value)


def test_missing_cameras_file():
    with pytest.raises(RegsegError, match='cannot read cameras file .*cameras_file:='):
        helpers.load_cameras('/nonexistent/cameras.yaml')


def test_overrides_keep_yaml_values_unless_given():
    assert helpers.node_overrides() == {'use_sim_time': False}
    assert helpers.node_overrides(weights=' ', backend='', input_transport='',
                                  allow_untrained=False, use_sim_time=True) == {
        'use_sim_time': True}
    assert helpers.node_overrides(weights='w.pth', backend='torch', input_transport='raw',
                                  allow_untrained=True) == {
        'weights': 'w.pth', 'backend': 'torch', 'input_transport': 'raw',
        'allow_untrained': True, 'use_sim_time': False}
    assert helpers.node_parameters('p.yaml') == ['p.yaml']
    assert helpers.node_parameters('p.yaml', 'mine.yaml', {'a': 1}) == [
        'p.yaml', 'mine.yaml', {'a': 1}]
    assert [helpers.parse_bool(v, 'x') for v in ('true', 'True', '1', 'false', 'FALSE', '0')] \
        == [True, True, True, False, False, False]
    assert helpers.normalize_namespace('/') == ''
    assert helpers.output_topic('', 'overlay') == '/regseg/overlay'


# -- cpu_threads between the cameras ------------------------------------------------------------

@pytest.mark.parametrize('cores,arguments,expected', [
    (8, {}, 2),                        # 8 cores, 3 enabled cameras: 2 threads each
    (2, {}, 1),                        # fewer cores than cameras: at least 1
    (8, {'cpu_threads': '3'}, 3),      # the launch argument wins
    (8, {'cpu_threads': '0'}, 0),      # 0 (torch default) is a choice too
])
def test_vehicle_launch_splits_the_cores_between_cpu_nodes(monkeypatch, caplog, cores,
                                                           arguments, expected):
    monkeypatch.setattr(helpers, 'cpu_count', lambda: cores)
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='cpu', process_per_camera='true',
                                         freespace='false', **arguments)
    nodes = nodes_of(actions)
    assert len(nodes) == 3
    assert [params_of(n)['cpu_threads'] for n in nodes] == [expected] * 3
    logs = ' | '.join(a.kwargs['msg'] for a in of_type(actions, 'LogInfo'))
    if not arguments:
        assert f'{cores} core(s) shared by 3 camera node(s) on the CPU: cpu_threads ' \
               f'{expected} each' in logs
    shut_down(actions)


def test_vehicle_launch_keeps_the_cpu_threads_of_params_file(monkeypatch, tmp_path):
    monkeypatch.setattr(helpers, 'cpu_count', lambda: 8)
    mine = tmp_path / 'mine.yaml'
    mine.write_text('/**:\n  ros__parameters:\n    cpu_threads: 5\n')
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='cpu', params_file=str(mine),
                                         process_per_camera='true', freespace='false')
    assert [params_of(n)['cpu_threads'] for n in nodes_of(actions)] == [5] * 3
    on_gpu = tmp_path / 'gpu.yaml'  # the user's file moves the cpu preset onto CUDA: no split
    on_gpu.write_text('regseg:\n  ros__parameters:\n    device: cuda\n')
    assert helpers.vehicle_cpu_threads(None, str(CONFIG / 'cpu.yaml'), str(on_gpu), 3, 8) == (
        None, '')
    shut_down(actions)


# -- what the launch does when a node exits ---------------------------------------------------

REASON = "weights '/nonexistent/regseg.pth' not found: pass a path, an https:// URL or a name"


def test_configuration_error_ends_the_launch_with_the_nodes_reason(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py',
                                         namespace='front', platform='cpu')
    output = b'[INFO] [1712345678.0] [front.regseg]: loading\n' + fatal_line(REASON)
    with pytest.raises(helpers.LaunchFailure) as err:
        node_exits(actions, helpers.CONFIG_ERROR_EXIT, output)
    assert str(err.value) == ('/front/regseg cannot start (exit code 2, a configuration error): '
                              + REASON)
    shut_down(actions)


def test_configuration_error_is_not_respawned(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', respawn='true',
                                         platform='cpu')
    with pytest.raises(helpers.LaunchFailure, match=re.escape(
            f'{REASON} (not respawned: a configuration error comes back on every start)')):
        node_exits(actions, helpers.CONFIG_ERROR_EXIT, fatal_line(REASON))
    shut_down(actions)


def test_configuration_error_waits_for_a_late_fatal_line(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', platform='cpu')
    timer = node_exits(actions, helpers.CONFIG_ERROR_EXIT)  # exit seen before the FATAL line
    assert type(timer).__name__ == 'TimerAction'
    assert 0 < timer.kwargs['period'] <= 1.0
    (on_output,) = [h.kwargs['on_stderr'] for h in handlers_of(actions, 'OnProcessIO')]
    on_output(types.SimpleNamespace(text=fatal_line(REASON)))
    (fail,) = timer.kwargs['actions']
    with pytest.raises(helpers.LaunchFailure, match=re.escape(REASON)):
        fail.kwargs['function'](LaunchContext())
    shut_down(actions)


def test_crash_is_respawned_when_asked(monkeypatch, caplog):
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='cpu', respawn='true',
                                         process_per_camera='true', freespace='false')
    first = nodes_of(actions)[1]
    timer = node_exits(actions, -11, b'Segmentation fault\n', node=first)
    assert type(timer).__name__ == 'TimerAction'
    assert timer.kwargs['period'] == helpers.RESPAWN_DELAY_S
    again = timer.kwargs['actions']
    (node,) = nodes_of(again)
    assert node is not first and node.kwargs == first.kwargs  # same camera, same files
    assert '/left/regseg exited (killed by SIGSEGV, a crash): respawning in 2 s' in caplog.text
    # the respawned node is supervised too: its configuration error still ends the launch
    with pytest.raises(helpers.LaunchFailure, match='/left/regseg cannot start'):
        node_exits(again, helpers.CONFIG_ERROR_EXIT, fatal_line(REASON))
    assert isinstance(node_exits(again, 1), type(timer))
    shut_down(actions)


@pytest.mark.parametrize('returncode,respawn,shutting_down,action', [
    (0, 'false', False, None),       # stopped from outside: nothing to do
    (0, 'true', False, None),        # a clean stop is not a crash: not restarted
    (-2, 'true', True, None),        # Ctrl-C: the launch is shutting down, nothing to do
    (2, 'true', True, None),
    (1, 'false', False, 'fail'),     # a crash without respawn: the launch stops, non-zero
    (-9, 'false', False, 'fail'),
    (1, 'true', False, 'respawn'),
])
def test_exit_handler_decides(monkeypatch, returncode, respawn, shutting_down, action):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', respawn=respawn,
                                         platform='cpu')
    if action == 'fail':
        with pytest.raises(helpers.LaunchFailure, match=r'/regseg exited \((exit code 1|killed '
                                                        r'by SIGKILL), a crash\); the launch'):
            node_exits(actions, returncode, shutting_down=shutting_down)
    else:
        got = node_exits(actions, returncode, shutting_down=shutting_down)
        assert (type(got).__name__ == 'TimerAction') == (action == 'respawn')
        assert got is None or action == 'respawn'
    shut_down(actions)


def test_exit_watcher_reads_the_fatal_line_whole():
    watcher = helpers.ExitWatcher('/regseg')
    line = fatal_line(REASON, node='front.regseg')
    coloured = b'\x1b[31m' + line.rstrip(b'\n') + b'\x1b[0m\n'
    for text in (line, coloured):
        watcher = helpers.ExitWatcher('/regseg')
        for i in range(len(text)):
            watcher.feed(text[i:i + 1])
        assert watcher.reason == REASON
    watcher = helpers.ExitWatcher('/regseg')
    watcher.feed(line.rstrip(b'\n'))  # no newline before the exit
    assert REASON in watcher.decide(2).message
    watcher = helpers.ExitWatcher('/regseg')
    watcher.feed('[ERROR] [1.0] [regseg]: frame dropped\n')
    assert watcher.decide(2) == helpers.ExitDecision(
        'fail', '/regseg cannot start (exit code 2, a configuration error): see its FATAL line '
                'above')


@pytest.mark.ros
def test_real_node_reason_reaches_the_launch(monkeypatch, tmp_path):
    """The node's own FATAL line and exit code, through the launch file's handlers."""
    pytest.importorskip('torch')
    _declared, actions = run_launch_file(
        monkeypatch, 'segmentation.launch.py', platform='cpu', namespace='lc_fail',
        weights=str(tmp_path / 'missing.pth'), respawn='true')
    proc = NodeProcess(tmp_path, *ros_args_of(nodes_of(actions)[0]))
    try:
        code = proc.wait(timeout=START_S)
    finally:
        proc.stop()
    assert code == helpers.CONFIG_ERROR_EXIT, proc.log()
    with pytest.raises(helpers.LaunchFailure) as err:
        node_exits(actions, code, proc.log().encode())
    message = str(err.value)
    assert message.startswith('/lc_fail/regseg cannot start (exit code 2, a configuration error)')
    assert 'missing.pth' in message and 'not respawned' in message
    shut_down(actions)


# -- platform:=auto ---------------------------------------------------------------------------

ORIN = 'NVIDIA Jetson AGX Orin Developer Kit'
XAVIER_NX = 'NVIDIA Jetson Xavier NX Developer Kit'
R36 = '# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64'
R35 = '# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64'


@pytest.mark.parametrize('model,tegra,cuda,platform,why', [
    ('', '', True, 'desktop_gpu', 'torch.cuda.is_available() is True'),
    ('', '', False, 'cpu', 'is False (stand-in); pass platform:=desktop_gpu'),
    (ORIN, R36, True, 'jetson_orin', f"Jetson (/proc/device-tree/model: '{ORIN}')"),
    (XAVIER_NX, R35, True, 'jetson_xavier', f"'{XAVIER_NX}'"),
    ('', R36, True, 'jetson_orin', 'L4T R36 (JetPack 6: Orin)'),
    ('', R35, True, 'jetson_xavier', 'not recognisably an Orin'),
    (ORIN, R36, False, 'cpu', 'but torch.cuda.is_available() is False (stand-in): install '
                              'PyTorch for Jetson'),
])
def test_auto_platform_detection(model, tegra, cuda, platform, why):
    files = {helpers.JETSON_MODEL_FILE: model, helpers.TEGRA_RELEASE_FILE: tegra}
    got, reason = helpers.detect_platform(files.get, cuda_probe_says(cuda))
    assert got == platform
    assert why in reason
    assert helpers.resolve_platform('cpu') == ('cpu', '')


def test_cuda_probe_runs_torch_in_a_child(monkeypatch):
    pytest.importorskip('torch')
    import torch
    usable, said = helpers.probe_cuda()
    assert usable == torch.cuda.is_available()
    assert f'torch {torch.__version__}' in said
    monkeypatch.setattr(helpers, '_CUDA_PROBE', 'import sys; sys.exit("no driver")')
    assert helpers.probe_cuda() == (False, 'the torch CUDA check failed (exit code 1: no driver)')
    assert helpers.detect_platform(lambda path: '', helpers.probe_cuda)[0] == 'cpu'


# -- files the launch writes ------------------------------------------------------------------

@pytest.mark.parametrize('filename', ['segmentation.launch.py', 'vehicle_cameras.launch.py'])
def test_launch_files_leave_no_temporary_files(monkeypatch, tmp_path, filename):
    monkeypatch.setattr(helpers.tempfile, 'tempdir', str(tmp_path))
    _declared, actions = run_launch_file(monkeypatch, filename, platform='cpu',
                                         **({'rviz': 'true'} if 'segmentation' in filename
                                            else {}))
    for node in nodes_of(actions):
        assert all(isinstance(p, str) for p in node.kwargs['parameters'])
    (folder,) = launch_dirs(actions)
    assert folder.parent == tmp_path and os.listdir(folder)
    shut_down(actions)
    assert os.listdir(tmp_path) == []
    helpers.LaunchFiles().cleanup()  # also safe when called twice (and at exit)
