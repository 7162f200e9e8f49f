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
TensorRT backend: selection, engine cache, the ONNX it builds from, the build-only command.

Most of it runs without TensorRT or a GPU: the cache and the build logic are driven through a
small stand-in for the ``tensorrt`` module (it parses the real exported ONNX for the tensor
shapes). The tests marked ``gpu`` run the real thing and are skipped without CUDA + TensorRT.
"""

import enum
import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys
import time
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from regseg_ros import RegsegError
from regseg_ros.backends import (
    BackendConfig, check_options, create_backend, resolve_auto)
from regseg_ros.backends import engine_cache as cache
from regseg_ros.backends import tensorrt_backend as trt_backend
from regseg_ros.backends import trt_build
from regseg_ros.model import build_model
from regseg_ros.tools.build_engine import main as build_engine_main
from test_model import randomise_bn
import torch

ROOT = Path(__file__).resolve().parent.parent
MISSING = (r'TensorRT \(python module tensorrt\) is not installed: install it .* or use '
           r'the torch backend \(node: -p backend:=torch; tools: --backend torch\)')


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail here, whether or not it is installed."""
    monkeypatch.setitem(sys.modules, 'tensorrt', None)


# -- selection and lazy import --------------------------------------------------------------

def test_tensorrt_backend_without_tensorrt_names_the_fix(no_tensorrt):
    with pytest.raises(RegsegError, match=MISSING):
        create_backend('tensorrt', BackendConfig(allow_untrained=True, device='cuda'))


def test_tensorrt_is_imported_only_when_chosen():
    code = (
        'import sys\n'
        'import numpy as np\n'
        'import regseg_ros.tools.benchmark, regseg_ros.tools.build_engine\n'
        'from regseg_ros.backends import BackendConfig, create_backend\n'
        "b = create_backend('torch', BackendConfig(allow_untrained=True, input_size=(64, 128)))\n"
        'b.infer([np.zeros((64, 128, 3), np.uint8)], [(64, 128)])\n'
        "loaded = [m for m in ('tensorrt', 'regseg_ros.backends.tensorrt_backend',\n"
        "                      'regseg_ros.backends.trt_build') if m in sys.modules]\n"
        'assert not loaded, loaded\n'
        "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr


@pytest.mark.parametrize('cuda,tensorrt,expected_name,expected_message', [
    (False, (True, '10.3.0'), 'torch',
     'backend auto: no CUDA GPU visible, using torch on the CPU (fp32)'),
    (True, (True, '10.3.0'), 'tensorrt',
     'backend auto: TensorRT 10.3.0 on cuda (Tesla T4), fp16'),
    (True, (False, trt_build.MISSING_MESSAGE), 'torch',
     'backend auto: torch on cuda (Tesla T4), fp16; TensorRT not used: TensorRT (python '
     'module tensorrt) is not installed: install it'),
])
def test_auto_picks_tensorrt_then_torch_cuda_then_cpu_and_says_so(
        cuda, tensorrt, expected_name, expected_message):
    probed = []

    def probe():
        probed.append(True)
        return tensorrt

    config = BackendConfig(precision='fp16')
    name, chosen, message = resolve_auto(config, cuda_available=cuda, tensorrt_probe=probe,
                                         gpu_name='Tesla T4')
    assert name == expected_name
    assert message.startswith(expected_message)
    assert chosen.device == ('cuda' if cuda else 'cpu')
    assert chosen.precision == ('fp16' if cuda else 'fp32')
    assert probed == ([True] if cuda else [])  # TensorRT is not even probed without a GPU


def test_auto_on_this_machine_without_gpu_uses_torch_cpu_and_never_imports_tensorrt():
    if torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    messages = []
    backend = create_backend('auto', BackendConfig(allow_untrained=True, input_size=(64, 128)),
                             log=messages.append)
    assert messages == ['backend auto: no CUDA GPU visible, using torch on the CPU (fp32)']
    assert backend.name == 'torch' and 'tensorrt' not in sys.modules


def test_auto_falls_back_to_torch_when_tensorrt_fails_and_logs_it(monkeypatch, no_tensorrt):
    import regseg_ros.backends as backends
    monkeypatch.setattr(backends, 'resolve_auto', lambda config: (
        'tensorrt', config, 'backend auto: TensorRT 10.3.0 on cuda (Tesla T4), fp32'))
    messages = []
    backend = create_backend('auto', BackendConfig(allow_untrained=True, input_size=(64, 128)),
                             log=messages.append)
    assert backend.name == 'torch'
    assert messages[0] == 'backend auto: TensorRT 10.3.0 on cuda (Tesla T4), fp32'
    assert messages[1].startswith('backend auto: TensorRT failed (TensorRT (python module '
                                  'tensorrt) is not installed')
    assert messages[1].endswith('falling back to torch on cpu')


def test_backend_options_are_checked_and_never_dropped_silently():
    messages = []
    check_options('torch', {'cuda_graph': True, 'workspace_mb': 512}, messages.append)
    assert messages == ["backend option 'workspace_mb' applies to backend 'tensorrt' only: "
                        "ignored by 'torch'"]
    with pytest.raises(RegsegError, match=r"backend option 'workspace' is unknown: use one of "
                                          r"\['cuda_graph', 'engine_path', "):
        check_options('tensorrt', {'workspace': 512}, messages.append)


def test_tensorrt_version_checks():
    assert trt_build.version_tuple('8.5.2.2') == (8, 5, 2, 2)
    assert trt_build.version_tuple('10.0.0b6') == (10, 0, 0)
    with pytest.raises(RegsegError, match=r'TensorRT 8.4.3.1 is too old: .*8.5 or newer'):
        trt_build.check_version(types.SimpleNamespace(__version__='8.4.3.1'))
    trt_build.check_version(types.SimpleNamespace(__version__='8.5.2.2'))


# -- engine cache ---------------------------------------------------------------------------

BASE = {'onnx_sha256': 'a' * 64, 'tensorrt_version': '10.3.0', 'gpu_name': 'Orin',
        'compute_capability': '8.7', 'precision': 'fp16', 'input_shape': (1, 3, 1024, 2048)}


@pytest.mark.parametrize('field,value', [
    ('onnx_sha256', 'b' * 64), ('tensorrt_version', '8.5.2.2'), ('gpu_name', 'Tesla T4'),
    ('compute_capability', '7.5'), ('precision', 'fp32'), ('input_shape', (1, 3, 512, 1024)),
    ('calibration', '0123456789abcdef'), ('max_batch', 4),
])
def test_engine_key_changes_with_each_input_that_makes_an_engine(field, value):
    key = cache.engine_key(cache.engine_metadata(**BASE))
    assert cache.engine_key(cache.engine_metadata(**BASE)) == key   # stable
    changed = cache.engine_key(cache.engine_metadata(**dict(BASE, **{field: value})))
    assert changed != key and len(changed) == len(key) == 20


def test_engine_key_ignores_extra_metadata_and_list_or_tuple_shapes():
    meta = cache.engine_metadata(**BASE)
    assert cache.engine_key(dict(meta, built='yesterday', weights='x.pth')) == \
        cache.engine_key(cache.engine_metadata(**dict(BASE, input_shape=[1, 3, 1024, 2048])))


def test_stale_reason_decides_rebuilds():
    expected = cache.engine_metadata(**BASE)
    assert cache.stale_reason(expected, dict(expected, built='2024-01-01')) is None
    assert cache.stale_reason(expected, None, engine_exists=False).startswith(
        'no engine in the cache')
    assert cache.stale_reason(expected, None) == \
        'the cached engine has no readable metadata file'
    old = dict(expected, tensorrt='8.5.2.2', input_shape=[1, 3, 512, 1024])
    assert cache.stale_reason(expected, old) == (
        "the cached engine was built for another setup: tensorrt '8.5.2.2' -> '10.3.0', "
        'input_shape [1, 3, 512, 1024] -> [1, 3, 1024, 2048]')


def test_metadata_files_round_trip_and_garbage_reads_as_none(tmp_path):
    meta = cache.engine_metadata(**BASE)
    engine, meta_file = cache.engine_files(tmp_path, 'regseg', meta)
    assert engine.name == f'regseg-{cache.engine_key(meta)}.engine'
    cache.write_metadata(meta_file, meta)
    assert cache.read_metadata(meta_file) == meta
    meta_file.write_text('{not json')
    assert cache.read_metadata(meta_file) is None
    assert cache.read_metadata(tmp_path / 'missing.json') is None


def test_engine_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv('REGSEG_CACHE_DIR', str(tmp_path))
    assert cache.engine_dir() == tmp_path / 'engines'
    assert cache.engine_dir('/data/regseg') == Path('/data/regseg/engines')


def test_calibration_folder_checks_and_hash(tmp_path):
    with pytest.raises(RegsegError, match=r"int8_calibration_dir '.*nope' is not a folder"):
        cache.calibration_images(tmp_path / 'nope')
    (tmp_path / 'notes.txt').write_text('x')
    with pytest.raises(RegsegError, match='holds no .jpg/.jpeg/.png/.bmp images'):
        cache.calibration_images(tmp_path)
    for name in ('b.PNG', 'a.jpg'):
        (tmp_path / name).write_bytes(b'123')
    files = cache.calibration_images(tmp_path)
    assert [f.name for f in files] == ['a.jpg', 'b.PNG']
    first = cache.calibration_hash(files)
    (tmp_path / 'a.jpg').write_bytes(b'1234')
    assert cache.calibration_hash(files) != first


# -- the ONNX TensorRT builds from ------------------------------------------------------------

def test_tensorrt_onnx_matches_pytorch_quarter_logits_and_is_byte_stable(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(build_model('exp48_decoder26'), seed=5)
    path = trt_backend.export_network_onnx(model, tmp_path / 'a.onnx', 64, 128)
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == 17
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (graph.graph.input[0], graph.graph.output[0])]
    assert dims == [[1, 3, 64, 128], [1, 19, 16, 32]]   # static, 1/4-resolution logits
    assert [graph.graph.input[0].name, graph.graph.output[0].name] == ['image', 'logits']
    assert 'BatchNormalization' not in {n.op_type for n in graph.graph.node}

    x = torch.randn(1, 3, 64, 128)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    ours = session.run(None, {'image': x.numpy()})[0]
    with torch.no_grad():
        ref = model.eval().forward_quarter(x).numpy()
    assert ref.std() > 1e-3
    assert np.abs(ours - ref).max() <= 1e-3

    again = trt_backend.export_network_onnx(model, tmp_path / 'b.onnx', 64, 128)
    assert Path(path).read_bytes() == Path(again).read_bytes()  # the cache key relies on it


# -- building and caching, with a stand-in for the tensorrt module ----------------------------

class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


def fake_tensorrt(version='10.3.0', calibrator=True, fp16=True, monitor=True):
    """Return a stand-in for ``tensorrt`` with the API surface the backend uses."""
    trt = types.SimpleNamespace(__version__=version, calls=[])
    trt.float32, trt.float16 = 'float32', 'float16'
    trt.TensorIOMode = types.SimpleNamespace(INPUT='input', OUTPUT='output')
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    flags = ['TF32', 'INT8'] + (['FP16'] if fp16 else [])
    trt.BuilderFlag = types.SimpleNamespace(**{f: f for f in flags})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE='workspace')

    class ILogger:

        Severity = _Severity

        def __init__(self):
            pass

    trt.ILogger = ILogger
    if monitor:
        trt.IProgressMonitor = type('IProgressMonitor', (), {'__init__': lambda self: None})
    if calibrator:
        trt.IInt8EntropyCalibrator2 = type('IInt8EntropyCalibrator2', (),
                                           {'__init__': lambda self: None})

    class Network:

        shapes = None

        def get_input(self, i):
            return types.SimpleNamespace(name='image', shape=self.shapes['image'])

    class Parser:

        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse(self, data):
            graph = onnx.load_from_string(data)
            self.network.shapes = {   # a symbolic axis (dim_param) reads -1, as in TensorRT
                v.name: tuple(d.dim_value if d.dim_value else -1
                              for d in v.type.tensor_type.shape.dim)
                for v in (graph.graph.input[0], graph.graph.output[0])}
            return True

    class TimingCache:

        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data + b'+timing'

    class Config:

        def __init__(self):
            self.flags, self.limits, self.cache = set(), {}, None
            self.progress_monitor = self.int8_calibrator = None
            self.profiles, self.calibration_profile = [], None

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile

        def set_memory_pool_limit(self, pool, size):
            self.limits[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            profile = types.SimpleNamespace(shapes={})
            profile.set_shape = lambda name, low, opt, high: profile.shapes.__setitem__(
                name, [list(low), list(opt), list(high)])
            return profile

        def build_serialized_network(self, network, config):
            trt.calls.append(('build', sorted(config.flags), dict(config.limits)))
            if config.progress_monitor is not None:
                config.progress_monitor.phase_start('Building engine', None, 2)
                config.progress_monitor.step_complete('Building engine', 0)
                config.progress_monitor.phase_finish('Building engine')
            self.logger.log(_Severity.WARNING, 'a builder warning')
            self.logger.log(_Severity.INFO, 'chatter nobody needs')
            trt.profiles = [p.shapes for p in config.profiles]
            if any(-1 in v for v in network.shapes.values()) and not config.profiles:
                return None   # TensorRT: a dynamic input needs an optimisation profile
            data = {k: list(v) for k, v in network.shapes.items()}
            if config.profiles:
                data['_profile'] = config.profiles[0].shapes['image']
            return json.dumps(data).encode()

    class Engine:

        def __init__(self, shapes):
            self.profile = shapes.pop('_profile', None)
            self.shapes = shapes
            self.num_io_tensors = len(shapes)

        def get_tensor_profile_shape(self, name, index):
            assert name == 'image' and index == 0 and self.profile is not None
            return [tuple(s) for s in self.profile]

        def get_tensor_name(self, i):
            return list(self.shapes)[i]

        def get_tensor_mode(self, name):
            return 'input' if name == 'image' else 'output'

        def get_tensor_shape(self, name):
            return self.shapes[name]

    class Runtime:

        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            trt.calls.append(('deserialize',))
            try:
                return Engine({k: (v if k == '_profile' else tuple(v))
                               for k, v in json.loads(data).items()})
            except ValueError:
                return None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt


def make_backend(tmp_path, fake, messages, gpu=('Tesla T4', '7.5'), **config):
    config = dict({'allow_untrained': True, 'device': 'cuda', 'precision': 'fp16',
                   'input_size': (64, 128), 'cache_dir': str(tmp_path)}, **config)
    backend = trt_backend.TensorRTBackend(BackendConfig(**config), log=messages.append)
    backend.trt, backend.gpu = fake, gpu
    backend.runtime = fake.Runtime(None)
    return backend


def prepare(backend):
    engine = backend.prepare_engine(backend._options())
    trt_backend.check_io(backend.trt, engine, backend.config.input_size,
                         backend.config.num_classes, 'engine')
    return engine


def test_engine_is_built_once_then_loaded_from_the_cache(tmp_path):
    fake, messages = fake_tensorrt(), []
    prepare(make_backend(tmp_path, fake, messages, options={'workspace_mb': 256}))
    assert [c[0] for c in fake.calls] == ['build', 'deserialize']
    assert fake.calls[0][1:] == (['FP16'], {'workspace': 256 << 20})
    engines = sorted((tmp_path / 'engines').glob('*.engine'))
    assert [e.name[:-len('-0123456789abcdef0123.engine')] for e in engines] == [
        'regseg-exp48_decoder26-19c-128x64-fp16']
    meta = json.loads(engines[0].with_suffix('.json').read_text())
    assert (meta['tensorrt'], meta['gpu'], meta['compute_capability'], meta['precision'],
            meta['input_shape']) == ('10.3.0', 'Tesla T4', '7.5', 'fp16', [1, 3, 64, 128])
    text = '\n'.join(messages)
    assert 'building a TensorRT engine for exp48_decoder26 128x64 fp16 on Tesla T4: no engine ' \
           'in the cache' in text
    assert 'TensorRT build: Building engine (2 steps)' in text      # IProgressMonitor
    assert 'TensorRT warning: a builder warning' in text and 'chatter' not in text
    assert (tmp_path / 'engines' / 'timing-trt10.3.0-sm7.5.cache').read_bytes() == b'+timing'

    fake.calls.clear()
    messages.clear()
    second = make_backend(tmp_path, fake, messages, options={'workspace_mb': 256})
    prepare(second)
    assert [c[0] for c in fake.calls] == ['deserialize']
    assert second.engine_source == 'cache' and second.engine_file == engines[0]
    assert not any('building' in m for m in messages)


def test_another_precision_gpu_or_tensorrt_builds_another_engine_and_says_why(tmp_path):
    fake, messages = fake_tensorrt(), []
    prepare(make_backend(tmp_path, fake, messages))
    messages.clear()
    newer = fake_tensorrt(version='10.4.0')
    backend = make_backend(tmp_path, newer, messages)
    prepare(backend)
    assert [c[0] for c in newer.calls] == ['build', 'deserialize']
    assert backend.build_reason.startswith('no engine in the cache')
    assert "tensorrt '10.3.0' -> '10.4.0'" in backend.build_reason
    prepare(make_backend(tmp_path, newer, messages, precision='fp32'))
    assert newer.calls[-2][1] == []   # fp32: no FP16 flag, TF32 cleared
    assert len(list((tmp_path / 'engines').glob('*.engine'))) == 3


def test_stale_metadata_or_a_broken_engine_is_rebuilt_with_a_log_line(tmp_path):
    fake, messages = fake_tensorrt(), []
    first = make_backend(tmp_path, fake, messages)
    prepare(first)
    meta_file = first.engine_file.with_suffix('.json')
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(dict(meta, gpu='Tesla V100')))
    messages.clear()
    prepare(make_backend(tmp_path, fake, messages))
    assert any("gpu 'Tesla V100' -> 'Tesla T4'" in m for m in messages)
    first.engine_file.write_bytes(b'truncated')
    messages.clear()
    fake.calls.clear()
    again = make_backend(tmp_path, fake, messages)
    prepare(again)
    assert [c[0] for c in fake.calls] == ['deserialize', 'build', 'deserialize']
    assert again.build_reason == 'the cached engine failed to deserialize with TensorRT 10.3.0'
    assert again.engine_source == 'built'


def test_prebuilt_engine_path(tmp_path):
    fake, messages = fake_tensorrt(), []
    missing = tmp_path / 'front.engine'
    with pytest.raises(RegsegError, match=r"engine_path '.*front.engine' does not exist: build "
                                          r'it with `ros2 run regseg_ros build_engine '):
        prepare(make_backend(tmp_path, fake, messages, options={'engine_path': str(missing)}))
    built = make_backend(tmp_path, fake, messages)
    prepare(built)
    backend = make_backend(tmp_path, fake, messages,
                           options={'engine_path': str(built.engine_file)})
    prepare(backend)
    assert backend.engine_source == 'engine_path'
    wrong_size = make_backend(tmp_path, fake, messages, input_size=(128, 256),
                              options={'engine_path': str(built.engine_file)})
    with pytest.raises(RegsegError, match=r'takes input \(1, 3, 64, 128\), but the network size '
                                          r'is 256x128'):
        prepare(wrong_size)
    missing.write_bytes(b'garbage')
    with pytest.raises(RegsegError, match=r"engine_path '.*' cannot be loaded by TensorRT "
                                          r'10.3.0 on Tesla T4 .* rebuild it on this machine'):
        prepare(make_backend(tmp_path, fake, messages, options={'engine_path': str(missing)}))


@pytest.mark.parametrize('fake_kwargs,precision,options,match', [
    ({}, 'int8', {}, 'precision int8 needs option int8_calibration_dir'),
    ({'calibrator': False}, 'int8', {}, r'precision int8 needs implicit int8 calibration '
                                        r'\(IInt8EntropyCalibrator2\), which TensorRT 11.0.0'),
    ({'fp16': False}, 'fp16', {}, "precision 'fp16' needs BuilderFlag.FP16"),
    ({}, 'fp16', {'workspace_mb': -1}, 'option workspace_mb is -1: set it to a positive'),
    ({}, 'bf16', {}, r"precision 'bf16' is not one of \['fp32', 'fp16', 'int8'\]"),
])
def test_unsupported_settings_raise_clear_errors(tmp_path, fake_kwargs, precision, options,
                                                 match):
    version = '11.0.0' if fake_kwargs else '10.3.0'
    fake = fake_tensorrt(version=version, **fake_kwargs)
    backend = make_backend(tmp_path, fake, [], precision=precision, options=options)
    with pytest.raises(RegsegError, match=match):
        trt_build.check_precision(fake, precision, backend.log)
        prepare(backend)


def test_int8_calibration_on_tensorrt_10_is_flagged_deprecated():
    messages = []
    trt_build.check_precision(fake_tensorrt(version='10.3.0'), 'int8', messages.append)
    assert messages and 'deprecated since 10.1' in messages[0]
    messages.clear()
    trt_build.check_precision(fake_tensorrt(version='8.5.2.2'), 'int8', messages.append)
    assert messages == []


def test_tensorrt_8_5_builds_without_a_progress_monitor_but_with_a_heartbeat(tmp_path):
    fake, messages = fake_tensorrt(version='8.5.2.2', monitor=False), []
    onnx_path = trt_backend.export_network_onnx(build_model('exp48_decoder26'),
                                                tmp_path / 'x.onnx', 64, 128)
    slow = fake.Builder.build_serialized_network

    def build(self, network, config):
        time.sleep(0.35)
        return slow(self, network, config)

    fake.Builder.build_serialized_network = build
    data = trt_build.build_serialized_engine(fake, onnx_path, 'fp16', messages.append,
                                             heartbeat_s=0.1)
    assert json.loads(data)['logits'] == [1, 19, 16, 32]
    still = [m for m in messages if m.startswith('still building the TensorRT fp16 engine')]
    assert len(still) >= 2, messages
    assert not any(m.startswith('TensorRT build:') for m in messages)


def test_an_unusable_cache_dir_names_the_fix(tmp_path):
    (tmp_path / 'file').write_text('not a folder')
    backend = make_backend(tmp_path / 'file', fake_tensorrt(), [])
    with pytest.raises(RegsegError, match=r"the engine cache '.*file/engines' cannot be used "
                                          r'.*set cache_dir to a writable folder'):
        prepare(backend)


def test_build_lock_is_exclusive(tmp_path):
    engine = tmp_path / 'engines' / 'x.engine'
    with cache.build_lock(engine, print):
        assert (tmp_path / 'engines' / 'x.engine.lock').exists()
        import fcntl
        with open(f'{engine}.lock') as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


# -- the build-only command -----------------------------------------------------------------

def test_build_engine_without_tensorrt_exits_1_with_the_fix(no_tensorrt, capsys):
    assert build_engine_main(['--allow-untrained', '--network-size', '64x128']) == 1
    err = capsys.readouterr().err
    assert err.startswith('build_engine: error: TensorRT (python module tensorrt) is not '
                          'installed: install it')
    assert err.rstrip().endswith('or use the torch backend (node: -p backend:=torch; tools: '
                                 '--backend torch)')


def test_build_engine_rejects_a_bad_size(capsys):
    with pytest.raises(SystemExit) as exc:
        build_engine_main(['--network-size', '1024'])
    assert exc.value.code == 2
    assert ("size '1024' is not WIDTHxHEIGHT in whole pixels, e.g. 1024x512"
            in capsys.readouterr().err)


# -- on a GPU with TensorRT -----------------------------------------------------------------

def _gpu_with_tensorrt():
    return torch.cuda.is_available() and importlib.util.find_spec('tensorrt') is not None


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_with_tensorrt(), reason='needs a CUDA GPU and TensorRT')
def test_tensorrt_fp16_labels_agree_with_cpu_fp32(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(build_model('exp48_decoder26'), seed=9)
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    frame = np.random.default_rng(1).integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    common = {'weights': str(tmp_path / 'w.pth'), 'input_size': (512, 1024),
              'cache_dir': str(tmp_path / 'cache')}
    cpu = create_backend('torch', BackendConfig(**common)).infer([frame], [(512, 1024)])[0]
    messages = []
    backend = create_backend('tensorrt', BackendConfig(device='cuda', precision='fp16',
                                                       **common), log=messages.append)
    assert backend.engine_source == 'built'
    pred = backend.infer([frame], [(512, 1024)], with_confidence=True)[0]
    assert pred.labels.dtype == np.uint8 and pred.confidence.dtype == np.uint8
    assert (pred.labels == cpu.labels).mean() >= 0.995
    small = backend.infer([frame], [(256, 512)])[0].labels
    assert small.shape == (256, 512)
    backend.forward_only()
    backend.close()
    again = create_backend('tensorrt', BackendConfig(device='cuda', precision='fp16', **common))
    assert again.engine_source == 'cache'
    assert (again.infer([frame], [(512, 1024)])[0].labels == pred.labels).all()
    again.close()


def test_onnx_with_a_dynamic_batch_axis_runs_any_batch_like_batch_1(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(build_model('exp48_decoder26'), seed=5)
    path = trt_backend.export_network_onnx(model, tmp_path / 'dyn.onnx', 64, 128,
                                           dynamic_batch=True)
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (graph.graph.input[0], graph.graph.output[0])]
    assert dims == [['batch', 3, 64, 128], ['batch', 19, 16, 32]]
    x = torch.randn(3, 3, 64, 128)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    together = session.run(None, {'image': x.numpy()})[0]
    alone = np.concatenate([session.run(None, {'image': x[i:i + 1].numpy()})[0]
                            for i in range(3)])
    assert together.shape == (3, 19, 16, 32)
    assert np.abs(together - alone).max() <= 1e-4


def test_max_batch_builds_an_engine_with_a_batch_profile_and_its_own_cache_key(tmp_path):
    fake, messages = fake_tensorrt(), []
    single = make_backend(tmp_path, fake, messages)
    prepare(single)
    batched = make_backend(tmp_path, fake, messages, options={'max_batch': 4})
    engine = prepare(batched)
    assert [c[0] for c in fake.calls] == ['build', 'deserialize', 'build', 'deserialize']
    assert fake.profiles == [{'image': [[1, 3, 64, 128], [4, 3, 64, 128], [4, 3, 64, 128]]}]
    assert batched.engine_file != single.engine_file and '-b4-' in batched.engine_file.name
    meta = json.loads(batched.engine_file.with_suffix('.json').read_text())
    assert meta['batch_profile'] == [1, 4] and meta['input_shape'] == [1, 3, 64, 128]
    assert trt_backend.check_io(fake, engine, (64, 128), 19, 'engine') == (
        (4, 3, 64, 128), (4, 19, 16, 32))
    assert any('batch 1..4' in m for m in messages)
    fake.calls.clear()
    prepare(make_backend(tmp_path, fake, messages, options={'max_batch': 4}))
    assert [c[0] for c in fake.calls] == ['deserialize']   # found in the cache next time
    with pytest.raises(RegsegError, match='option max_batch is 0: set it to a whole number'):
        make_backend(tmp_path, fake, messages, options={'max_batch': 0})


def test_a_batch_profile_needs_a_dynamic_onnx(tmp_path):
    fake = fake_tensorrt()
    model = build_model('exp48_decoder26')
    static = trt_backend.export_network_onnx(model, tmp_path / 's.onnx', 64, 128)
    with pytest.raises(RegsegError, match=r'has shape \(1, 3, 64, 128\), not a dynamic batch '
                                          r'axis: it cannot take batch 1..4'):
        trt_build.build_serialized_engine(fake, static, 'fp16', [].append, max_batch=4)
