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
Build a TensorRT engine from the exported ONNX, for TensorRT 8.5 (JetPack 5) through 10.x.

Every function takes the imported ``tensorrt`` module as an argument, so importing this module
never imports TensorRT. Feature differences between versions are detected by attribute, not by
version number: the progress monitor (TensorRT 10), the explicit-batch flag (needed before 10,
gone in 11), implicit int8 calibration (deprecated in 10.1, gone in 11) and the FP16 builder
flag (gone in 11).
"""

import os
from pathlib import Path
import re
import threading
import time
from typing import Callable, Optional, Sequence, Tuple

from regseg_ros.core.errors import RegsegError
from regseg_ros.core.files import write_atomic

Log = Callable[[str], None]
MIN_VERSION = (8, 5)
HEARTBEAT_S = 30.0
PRECISIONS = ('fp32', 'fp16', 'int8')
INSTALL_HINT = ('install it (x86-64: pip install tensorrt-cu12 matching your CUDA; Jetson: it '
                'comes with JetPack as python3-libnvinfer) or use the torch backend (node: -p '
                'backend:=torch; tools: --backend torch)')
MISSING_MESSAGE = f'TensorRT (python module tensorrt) is not installed: {INSTALL_HINT}'


def version_tuple(version: str) -> Tuple[int, ...]:
    """Turn ``'8.5.2.2'`` into ``(8, 5, 2, 2)``; a part with letters ends the tuple."""
    parts = []
    for part in str(version).split('.'):
        match = re.match(r'\d+', part)
        if not match:
            break
        parts.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(parts)


def import_tensorrt():
    """Import and return the ``tensorrt`` module, or raise RegsegError naming the fix."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError as exc:
        if exc.name not in (None, 'tensorrt'):
            raise RegsegError(f'TensorRT (python module tensorrt) fails to import: {exc}; '
                              f'repair the installation: {INSTALL_HINT}') from None
        raise RegsegError(MISSING_MESSAGE) from None
    except (ImportError, OSError) as exc:
        raise RegsegError(
            f'TensorRT (python module tensorrt) is installed but fails to load ({exc}): check '
            'that its libraries (libnvinfer) match the python module and the CUDA driver, '
            f'or {INSTALL_HINT.split(" or ")[-1]}') from None
    check_version(trt)
    return trt


def check_version(trt) -> None:
    """Refuse TensorRT older than 8.5: the name-based tensor API this backend uses is missing."""
    version = getattr(trt, '__version__', '0')
    if version_tuple(version)[:2] < MIN_VERSION:
        raise RegsegError(
            f'TensorRT {version} is too old: the backend needs 8.5 or newer (JetPack 5.1+) for '
            'set_input_shape / set_tensor_address / execute_async_v3; upgrade TensorRT or use '
            'backend torch')


def check_precision(trt, precision: str, log: Log) -> None:
    """Raise RegsegError when this TensorRT cannot build ``precision`` the way the backend does."""
    version = getattr(trt, '__version__', '?')
    if precision not in PRECISIONS:
        raise RegsegError(f'precision {precision!r} is not one of {list(PRECISIONS)} for the '
                          'tensorrt backend')
    if precision in ('fp16', 'int8') and not hasattr(trt.BuilderFlag, 'FP16'):
        raise RegsegError(
            f'precision {precision!r} needs BuilderFlag.FP16, which TensorRT {version} no longer '
            'has (TensorRT 11 builds only strongly typed networks): use TensorRT 8.5 to 10.x, '
            'precision fp32, or backend torch')
    if precision == 'int8':
        if not hasattr(trt, 'IInt8EntropyCalibrator2') or not hasattr(trt.BuilderFlag, 'INT8'):
            raise RegsegError(
                f'precision int8 needs implicit int8 calibration (IInt8EntropyCalibrator2), '
                f'which TensorRT {version} no longer has: use precision fp16, TensorRT 8.5 to '
                '10.x, or an explicitly quantised (Q/DQ) ONNX from NVIDIA Model Optimizer')
        if version_tuple(version)[:2] >= (10, 1):
            log(f'TensorRT {version}: int8 calibration (IInt8EntropyCalibrator2) is deprecated '
                'since 10.1 and removed in 11; it still works here')


class Heartbeat:
    """
    Log a "still building" line every ``interval`` seconds while a long step runs.

    Use as a context manager around a blocking call, so nobody waits minutes without a word.
    """

    def __init__(self, log: Log, what: str, interval: float = HEARTBEAT_S):
        self.log = log
        self.what = what
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='regseg-build-heartbeat')
        self.start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.log(f'still {self.what} ({time.monotonic() - self.start:.0f} s so far)')

    def __enter__(self) -> 'Heartbeat':
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_logger(trt, log: Log):
    """Return a TensorRT logger that forwards warnings and errors to ``log``."""
    severity = getattr(trt.ILogger, 'Severity', trt.ILogger)
    names = {int(getattr(severity, n)): n.lower().replace('_', ' ')
             for n in ('INTERNAL_ERROR', 'ERROR', 'WARNING', 'INFO', 'VERBOSE')
             if hasattr(severity, n)}
    threshold = int(severity.WARNING)

    class Logger(trt.ILogger):

        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, level, msg):
            if int(level) <= threshold:
                log(f'TensorRT {names.get(int(level), "message")}: {msg}')

    return Logger()


def make_progress_monitor(trt, log: Log, interval: float = 10.0):
    """Return an IProgressMonitor logging the builder's phases (TensorRT 10+), else None."""
    if not hasattr(trt, 'IProgressMonitor'):
        return None

    class Monitor(trt.IProgressMonitor):

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._parents = {}
            self._steps = {}
            self._last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                with self._lock:
                    self._parents[phase_name] = parent_phase
                    self._steps[phase_name] = num_steps
                    if parent_phase is None or self._parents.get(parent_phase, '') is None:
                        log(f'TensorRT build: {phase_name} ({num_steps} steps)')
            except Exception:  # never let a log line cancel the build
                pass

        def step_complete(self, phase_name, step):
            try:
                with self._lock:
                    now = time.monotonic()
                    if self._parents.get(phase_name, '') is None and now - self._last > interval:
                        self._last = now
                        log(f'TensorRT build: {phase_name} step {step + 1}/'
                            f'{self._steps.get(phase_name, "?")}')
            except Exception:
                pass
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            try:
                with self._lock:
                    if self._parents.pop(phase_name, '') is None:
                        log(f'TensorRT build: {phase_name} done')
            except Exception:
                pass

    return Monitor()


def make_calibrator(trt, images: Sequence[os.PathLike], prepare: Callable, cache_file: Path,
                    log: Log):
    """
    Return an IInt8EntropyCalibrator2 feeding ``images`` one at a time.

    ``prepare(path)`` returns the network input for one image as a contiguous CUDA tensor.
    The calibration table is kept in ``cache_file`` so a rebuild skips calibration.
    """
    class Calibrator(trt.IInt8EntropyCalibrator2):

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.batch = None  # keeps the device buffer alive while TensorRT reads it
            self.start = time.monotonic()

        def get_batch_size(self):
            return 1

        def get_batch(self, names, *args):
            if self.index >= len(images):
                return None
            path = images[self.index]
            self.index += 1
            try:
                self.batch = prepare(path)
            except Exception as exc:  # TensorRT would swallow it
                log(f'int8 calibration: skipping {os.fspath(path)!r}: {exc}')
                return self.get_batch(names)
            if self.index % 25 == 0 or self.index == len(images):
                log(f'int8 calibration: {self.index}/{len(images)} images '
                    f'({time.monotonic() - self.start:.0f} s)')
            return [int(self.batch.data_ptr())]

        def read_calibration_cache(self):
            if cache_file.is_file():
                log(f'int8 calibration: reusing the table {str(cache_file)!r}')
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            write_atomic(cache_file, bytes(cache))

    return Calibrator()


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, 'EXPLICIT_BATCH', None)
    # Required before TensorRT 10, deprecated (and ignored) in 10, gone in 11.
    if flag is not None and version_tuple(trt.__version__)[:1] < (10,):
        return 1 << int(flag)
    return 0


def _attach_timing_cache(trt, config, path: Optional[Path], log: Log):
    data = b''
    if path is not None and path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, False):
        if data:
            log(f'TensorRT timing cache: {str(path)!r} ({len(data) // 1024} KiB)')
        return cache
    log(f'TensorRT timing cache {str(path)!r} was made by another TensorRT or GPU: starting a '
        'new one')
    cache = config.create_timing_cache(b'')
    config.set_timing_cache(cache, False)
    return cache


def add_batch_profile(builder, network, config, max_batch: int) -> None:
    """Add an optimisation profile for batch 1..max_batch of the network's (dynamic) input."""
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if len(shape) != 4 or shape[0] != -1:
        raise RegsegError(f'the ONNX input {tensor.name!r} has shape {shape}, not a dynamic batch '
                          f'axis: it cannot take batch 1..{max_batch} (export it with '
                          'dynamic_batch=True)')
    rest = tuple(int(d) for d in shape[1:])
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, (1,) + rest, (max_batch,) + rest, (max_batch,) + rest)
    config.add_optimization_profile(profile)
    if hasattr(config, 'set_calibration_profile'):
        # int8: the calibrator feeds one image at a time (batch 1, min = opt = max)
        single = builder.create_optimization_profile()
        single.set_shape(tensor.name, (1,) + rest, (1,) + rest, (1,) + rest)
        config.set_calibration_profile(single)


def build_serialized_engine(trt, onnx_path: os.PathLike, precision: str, log: Log,
                            workspace_mb: Optional[int] = None,
                            timing_cache: Optional[os.PathLike] = None,
                            calibrator=None, heartbeat_s: float = HEARTBEAT_S,
                            max_batch: int = 1) -> bytes:
    """
    Parse ``onnx_path`` and build a serialized engine at ``precision``; log progress meanwhile.

    ``workspace_mb`` caps the builder's scratch memory (Jetson: GPU and CPU share RAM);
    ``timing_cache`` is read before and written after the build, so rebuilds are faster.
    ``max_batch`` > 1 needs an ONNX with a dynamic batch axis: the engine gets an optimisation
    profile for batch 1..max_batch, tuned for max_batch (every camera in one batch).
    """
    check_precision(trt, precision, log)
    logger = make_logger(trt, log)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(getattr(parser, 'num_errors', 0))]
        raise RegsegError(
            f'TensorRT {trt.__version__} cannot parse the ONNX {os.fspath(onnx_path)!r}: '
            f'{"; ".join(errors) or "no details"}; report this with the TensorRT version')
    config = builder.create_builder_config()
    if max_batch > 1:
        add_batch_profile(builder, network, config, max_batch)
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == 'fp32' and hasattr(trt.BuilderFlag, 'TF32'):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32, as in PyTorch
    if precision in ('fp16', 'int8'):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 falls back to fp16, not fp32
    if precision == 'int8':
        if calibrator is None:
            raise RegsegError('precision int8 needs int8_calibration_dir (a folder of camera '
                              'images): set it, or use precision fp16')
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    cache_path = Path(timing_cache) if timing_cache else None
    cache = _attach_timing_cache(trt, config, cache_path, log)
    monitor = make_progress_monitor(trt, log)
    if monitor is not None and hasattr(config, 'progress_monitor'):
        config.progress_monitor = monitor
    start = time.monotonic()
    with Heartbeat(log, f'building the TensorRT {precision} engine (a first build takes 1 to '
                        '20 minutes; later starts load it from the cache)', heartbeat_s):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RegsegError(
            f'TensorRT {trt.__version__} failed to build the {precision} engine (see the '
            'TensorRT errors logged above): give the builder more memory (workspace_mb), free '
            'GPU memory, or try precision fp16/fp32')
    if cache_path is not None:
        try:
            used = config.get_timing_cache() or cache
            write_atomic(cache_path, bytes(memoryview(used.serialize())))
        except OSError as exc:
            log(f'could not save the TensorRT timing cache {str(cache_path)!r}: {exc}')
    log(f'TensorRT engine built in {time.monotonic() - start:.0f} s')
    return bytes(memoryview(serialized))
