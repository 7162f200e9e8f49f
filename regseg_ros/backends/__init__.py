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
Inference backends behind one interface, chosen by name; each imported only when chosen.

``torch`` runs on the CPU or CUDA; ``tensorrt`` runs a cached TensorRT engine on CUDA;
``auto`` picks TensorRT when it imports and a GPU is present, else torch on CUDA, else torch on
the CPU, and logs what it picked and why.
"""

import dataclasses
import importlib
import logging
from typing import Callable, Mapping, Optional, Tuple

from regseg_ros.backends.base import Backend, BackendConfig, Prediction
from regseg_ros.core.errors import RegsegError

Log = Callable[[str], None]
LOGGER_NAME = 'regseg_ros'

# name -> (module, class); a backend's heavy imports (TensorRT) happen only when it is chosen.
BACKENDS = {
    'torch': ('regseg_ros.backends.torch_backend', 'TorchBackend'),
    'tensorrt': ('regseg_ros.backends.tensorrt_backend', 'TensorRTBackend'),
}
CHOICES = tuple(BACKENDS) + ('auto',)

# BackendConfig.options key -> the backend that reads it.
OPTIONS = {
    'cuda_graph': 'torch',
    'engine_path': 'tensorrt',
    'workspace_mb': 'tensorrt',
    'int8_calibration_dir': 'tensorrt',
    'timing_cache': 'tensorrt',
    'exact_batch': 'torch',
    'torchscript': 'torch',
}
# Options every backend reads: the largest batch ``infer`` gets (TensorRT builds its engine's
# optimisation profile for batch 1..max_batch).
SHARED_OPTIONS = ('max_batch',)


def default_log() -> Log:
    """Return the log callable used when none is given: ``logging`` logger ``regseg_ros``."""
    return logging.getLogger(LOGGER_NAME).info


def probe_tensorrt() -> Tuple[bool, str]:
    """Try to import TensorRT: ``(True, version)``, or ``(False, why not)``."""
    from regseg_ros.backends.trt_build import import_tensorrt
    try:
        return True, import_tensorrt().__version__
    except RegsegError as exc:
        return False, str(exc)


def resolve_auto(config: BackendConfig, cuda_available: Optional[bool] = None,
                 tensorrt_probe: Callable[[], Tuple[bool, str]] = probe_tensorrt,
                 gpu_name: Optional[str] = None) -> Tuple[str, BackendConfig, str]:
    """
    Pick the fastest usable backend; return its name, the config for it and a log line.

    TensorRT is probed (imported) only when a GPU is present. The arguments after ``config``
    replace the machine's answers, for tests.
    """
    import torch
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return 'torch', dataclasses.replace(config, device='cpu', precision='fp32'), (
            'backend auto: no CUDA GPU visible, using torch on the CPU (fp32)')
    device = config.device if str(config.device).startswith('cuda') else 'cuda'
    if gpu_name is None:
        from regseg_ros.backends.torch_backend import resolve_device
        gpu_name = torch.cuda.get_device_name(resolve_device(device))
    config = dataclasses.replace(config, device=device)
    ok, detail = tensorrt_probe()
    if ok:
        return 'tensorrt', config, (
            f'backend auto: TensorRT {detail} on {device} ({gpu_name}), {config.precision}')
    return 'torch', config, (
        f'backend auto: torch on {device} ({gpu_name}), {config.precision}; TensorRT not '
        f'used: {detail}')


def max_batch_option(options: Mapping[str, object]) -> int:
    """Return the ``max_batch`` option (default 1), or raise naming a bad value."""
    value = options.get('max_batch', 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise RegsegError(f'option max_batch is {value!r}: set it to a whole number from 1 to 64')
    return value


def check_options(name: str, options: Mapping[str, object], log: Log) -> None:
    """Reject unknown option keys; log (never silently drop) keys of another backend."""
    for key in options:
        if key in SHARED_OPTIONS:
            continue
        owner = OPTIONS.get(key)
        if owner is None:
            raise RegsegError(f'backend option {key!r} is unknown: use one of '
                              f'{sorted(OPTIONS) + list(SHARED_OPTIONS)}')
        if owner != name:
            log(f'backend option {key!r} applies to backend {owner!r} only: ignored by {name!r}')


def _instantiate(name: str, config: BackendConfig, log: Log) -> Backend:
    module, cls = BACKENDS[name]
    check_options(name, config.options, log)
    backend = getattr(importlib.import_module(module), cls)(config, log=log)
    backend.load()
    return backend


def create_backend(name: str, config: BackendConfig, log: Optional[Log] = None) -> Backend:
    """
    Instantiate and load the backend ``name``.

    ``log`` receives progress lines (auto's choice, engine builds); it defaults to the
    ``logging`` logger ``regseg_ros``.
    """
    log = log or default_log()
    if name == 'auto':
        name, config, message = resolve_auto(config)
        log(message)
        if name == 'tensorrt':
            try:
                return _instantiate(name, config, log)
            except RegsegError as exc:
                log(f'backend auto: TensorRT failed ({exc}); falling back to torch on '
                    f'{config.device}')
                name = 'torch'
    if name not in BACKENDS:
        raise RegsegError(f'backend {name!r} is not one of {list(CHOICES)}')
    return _instantiate(name, config, log)


__all__ = ['Backend', 'BackendConfig', 'BACKENDS', 'CHOICES', 'OPTIONS', 'Prediction',
           'SHARED_OPTIONS', 'max_batch_option',
           'create_backend', 'default_log', 'resolve_auto']
