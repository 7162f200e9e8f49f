"""
Launch configuration without launch installed: platform files, camera lists, launch files.

Every config/<platform>.yaml is loaded by the real node executable (with CPU overrides) and read
back over GetParameters. The launch files run against small stand-ins of the launch API, and
the Node actions they return are started the way launch_ros starts them (--params-file per
parameter entry, -r remappings), so the whole path from launch arguments to topics is checked.
"""

import importlib.util
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
from regseg_ros import launch_helpers as helpers
from regseg_ros.backends import CHOICES as BACKEND_CHOICES
from regseg_ros.errors import RegsegError
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


def ros_args_of(node, tmp_path):
    """Turn a Node action's arguments into the --ros-args launch_ros would pass."""
    kw = node.kwargs
    args = ['-r', f'__node:={kw["name"]}']
    if kw.get('namespace'):
        args += ['-r', f'__ns:=/{kw["namespace"].strip("/")}']
    for i, entry in enumerate(kw.get('parameters', [])):
        if isinstance(entry, dict):  # launch_ros writes a dict to a temporary /**: params file
            path = tmp_path / f'{kw["name"]}_{kw.get("namespace", "")}_{i}.yaml'
            path.write_text(yaml.safe_dump({'/**': {'ros__parameters': entry}}))
            entry = str(path)
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
        'launch', 'launch.actions', 'launch.conditions', 'launch.substitutions', 'launch_ros',
        'launch_ros.actions')}
    mods['launch'].LaunchDescription = lambda entities: list(entities)
    mods['launch.actions'].DeclareLaunchArgument = _DeclareLaunchArgument
    mods['launch.actions'].OpaqueFunction = type('OpaqueFunction', (_Entity,), {})
    mods['launch.actions'].LogInfo = type('LogInfo', (_Entity,), {})
    mods['launch.conditions'].IfCondition = type('IfCondition', (_Entity,), {})
    mods['launch.substitutions'].LaunchConfiguration = _LaunchConfiguration
    mods['launch_ros.actions'].Node = type('Node', (_Entity,), {})
    return mods


def run_launch_file(monkeypatch, filename, **arguments):
    """Run ``launch/<filename>`` with ``name:=value`` arguments; return (declared, actions)."""
    for name, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    import ament_index_python.packages as packages
    monkeypatch.setattr(packages, 'get_package_share_directory', lambda pkg: str(ROOT))
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


def nodes_of(actions):
    return [a for a in actions if type(a).__name__ == 'Node']


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


@pytest.fixture(scope='module')
def fleet(tmp_path_factory, cameras_file):
    """Start every platform node, the unmodified desktop_gpu node and the launched vehicle."""
    pytest.importorskip('torch')
    tmp = tmp_path_factory.mktemp('fleet')
    procs = {}
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
                params_file=str(tmp / 'small.yaml'), cameras_file=str(cameras_file))
        finally:
            mp.undo()
        for node in nodes_of(actions):
            procs[node.kwargs['namespace']] = NodeProcess(tmp, *ros_args_of(node, tmp))
        yield procs
    finally:
        codes = {name: proc.stop() for name, proc in procs.items()}
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
    assert yamls - {Path(helpers.CAMERAS_FILE).stem} == set(helpers.PLATFORMS)
    assert helpers.DEFAULT_PLATFORM in helpers.PLATFORMS


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
    assert proc.wait(timeout=START_S) == 1, proc.log()
    log = proc.log()
    assert 'cannot start' in log and "device 'cuda' asked for, but CUDA is not available" in log
    assert 'set device to cpu' in log


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
    assert not any(ns == '/lc_rear' for _name, ns in names)
    got = get_parameters(peer, fleet['lc_left'], '/lc_left/regseg',
                         ['input_transport', 'network_width', 'max_rate_hz', 'use_sim_time'])
    assert {k: v for k, (_t, v) in got.items()} == {
        'input_transport': 'compressed', 'network_width': 128,  # params_file beats platform
        'max_rate_hz': platform_values('cpu')['max_rate_hz'], 'use_sim_time': False}


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
                 'allow_untrained', 'respawn'):
        assert name in declared
    assert declared['platform'].default_value == 'desktop_gpu'
    assert declared['platform'].choices == list(helpers.PLATFORMS)
    assert nodes_of(actions)


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
    assert kw['parameters'] == [str(CONFIG / 'jetson_orin.yaml'), str(params), {
        'weights': '/w/regseg.pth', 'input_transport': 'compressed', 'use_sim_time': True}]
    assert kw['respawn'] is True and kw['respawn_delay'] > 0


def test_segmentation_launch_defaults_and_rviz(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py')
    (node,) = nodes_of(actions)
    assert node.kwargs['parameters'] == [str(CONFIG / 'desktop_gpu.yaml'),
                                         {'use_sim_time': False}]
    assert node.kwargs['remappings'] == [('image', '/camera/image_raw')]
    assert node.kwargs['respawn'] is False

    _declared, actions = run_launch_file(monkeypatch, 'segmentation.launch.py', rviz='true',
                                         namespace='front', image='/front_camera/image_raw')
    regseg, rviz = nodes_of(actions)
    assert rviz.kwargs['executable'] == 'rviz2'
    assert rviz.kwargs['arguments'][0] == '-d'
    config = Path(rviz.kwargs['arguments'][1])
    try:
        topics = [d['Topic']['Value'] for d in
                  yaml.safe_load(config.read_text())['Visualization Manager']['Displays']]
    finally:
        config.unlink()
    assert topics == ['/front_camera/image_raw', '/front/regseg/overlay', '/front/regseg/color',
                      '/front/regseg/drivable_mask']


@pytest.mark.parametrize('arguments,expected', [
    ({'platform': 'jetson_nano'}, 'launch rejects platform:=jetson_nano'),
    ({'params_file': '/nonexistent/mine.yaml'}, "params_file '/nonexistent/mine.yaml' does not"),
    ({'backend': 'onnx'}, "backend:='onnx' is not a backend: use one of"),
    ({'input_transport': 'theora'}, "input_transport:='theora' is not a transport"),
    ({'use_sim_time': 'maybe'}, "use_sim_time:='maybe' is not a boolean"),
    ({'rviz': 'yes'}, "rviz:='yes' is not a boolean: use true or false"),
    ({'namespace': '1st camera'}, "namespace '1st camera' is not a valid ROS namespace"),
])
def test_segmentation_launch_rejects_bad_arguments(monkeypatch, arguments, expected):
    with pytest.raises(RegsegError, match=re.escape(expected)):
        run_launch_file(monkeypatch, 'segmentation.launch.py', **arguments)


def test_vehicle_launch_builds_a_node_per_enabled_camera(monkeypatch):
    _declared, actions = run_launch_file(monkeypatch, 'vehicle_cameras.launch.py',
                                         platform='jetson_xavier', backend='auto')
    nodes = nodes_of(actions)
    assert [n.kwargs['namespace'] for n in nodes] == ['front', 'left', 'right']
    assert [n.kwargs['remappings'] for n in nodes] == [
        [('image', '/front_camera/image_raw')], [('image', '/left_camera/image_raw')],
        [('image', '/right_camera/image_raw')]]
    assert [n.kwargs['parameters'] for n in nodes] == [
        [str(CONFIG / 'jetson_xavier.yaml'),
         {'backend': 'auto', 'use_sim_time': False, 'input_transport': transport}]
        for transport in ('raw', 'compressed', 'compressed')]
    logs = ' | '.join(a.kwargs['msg'] for a in actions if type(a).__name__ == 'LogInfo')
    assert 'skipping camera rear (enabled: false' in logs
    assert 'camera left: /left_camera/image_raw/compressed (compressed) -> /left/regseg/*' in logs


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
