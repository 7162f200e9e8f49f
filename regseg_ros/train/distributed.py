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
torch.distributed for training: one process per GPU (or CPU share), started by ``torchrun``.

``torchrun --nproc_per_node N $(which train) ...`` (or ``python -m torch.distributed.run``) sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them the
run is a single process. NCCL on CUDA, gloo on CPU (so CI runs two processes on one machine).
"""

import dataclasses
import os
from typing import Optional

from regseg_ros.core.errors import RegsegError
import torch
from torch import distributed as dist
from torch import nn


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def main(self) -> bool:
        """Tell whether this is rank 0, the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Tell whether more than one process trains."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, '')
    try:
        return int(value) if value else default
    except ValueError:
        raise RegsegError(f'environment variable {name}={value!r} is not a whole number (set '
                          'by torchrun)') from None


def setup(device: str = 'cpu', timeout_s: Optional[float] = None) -> Context:
    """
    Join the process group torchrun describes (if any) and pick this process's device.

    ``device`` is ``cpu``, ``cuda`` or ``cuda:N``; with several processes on CUDA each takes
    ``cuda:LOCAL_RANK``. CPU processes split the cores between them.
    """
    world = _env_int('WORLD_SIZE', 1)
    rank, local_rank = _env_int('RANK', 0), _env_int('LOCAL_RANK', 0)
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise RegsegError(f'--device {device}: CUDA is not available here; use --device cpu')
        dev = torch.device('cuda', local_rank if world > 1 or device == 'cuda'
                           else torch.device(device).index or 0)
        torch.cuda.set_device(dev)
    elif device == 'cpu':
        dev = torch.device('cpu')
        local_world = _env_int('LOCAL_WORLD_SIZE', 1)
        if local_world > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    else:
        raise RegsegError(f'--device {device!r}: use cpu, cuda or cuda:N')
    if world > 1 and not dist.is_initialized():
        import datetime
        kwargs = {'timeout': datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo', init_method='env://',
                                rank=rank, world_size=world, **kwargs)
    return Context(rank, world, local_rank, dev)


def wrap(model: nn.Module, ctx: Context, sync_bn: bool = False) -> nn.Module:
    """Move ``model`` to the device; under several processes wrap it in DDP (optional SyncBN)."""
    if ctx.distributed and sync_bn:
        if ctx.device.type != 'cuda':
            raise RegsegError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs "
                              'only): leave it off on CPU')
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device)
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == 'cuda' else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """Return the plain network inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum ``tensor`` over the processes (in place; a no-op for one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: Context) -> None:
    """Wait for every process."""
    if ctx.distributed:
        dist.barrier()


def cleanup(ctx: Context) -> None:
    """Leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
