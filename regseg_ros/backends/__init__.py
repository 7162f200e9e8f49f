"""Inference backends behind one interface, chosen by name; each imported only when chosen."""

import importlib
from typing import Callable, Optional, Tuple

from regseg_ros.backends.base import Backend, BackendConfig, Prediction
from regseg_ros.errors import RegsegError

# name -> (module, class); a backend's heavy imports (TensorRT) happen only when it is chosen.
BACKENDS = {
    'torch': ('regseg_ros.backends.torch_backend', 'TorchBackend'),
}
CHOICES = tuple(BACKENDS) + ('auto',)


def resolve_auto(config: BackendConfig) -> Tuple[str, BackendConfig, str]:
    """Pick the fastest usable backend: torch on CUDA when a GPU is present, else torch CPU."""
    import dataclasses

    import torch
    if torch.cuda.is_available():
        return 'torch', dataclasses.replace(config, device='cuda'), (
            f'backend auto: torch on CUDA ({torch.cuda.get_device_name(0)})')
    return 'torch', dataclasses.replace(config, device='cpu', precision='fp32'), (
        'backend auto: no CUDA GPU visible, using torch on the CPU (fp32)')


def create_backend(name: str, config: BackendConfig,
                   log: Optional[Callable[[str], None]] = None) -> Backend:
    """Instantiate and load the backend ``name`` (``auto`` logs what it picked)."""
    if name == 'auto':
        name, config, message = resolve_auto(config)
        if log:
            log(message)
    if name not in BACKENDS:
        raise RegsegError(f'backend {name!r} is not one of {list(CHOICES)}')
    module, cls = BACKENDS[name]
    backend = getattr(importlib.import_module(module), cls)(config)
    backend.load()
    return backend


__all__ = ['Backend', 'BackendConfig', 'BACKENDS', 'CHOICES', 'Prediction', 'create_backend']
