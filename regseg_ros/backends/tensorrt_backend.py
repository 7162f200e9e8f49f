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
TensorRT backend: one code path for TensorRT 8.5 (JetPack 5) through 10.x.

The engine is built from an ONNX export of the network that ends at the decoder's 1/4-resolution
logits. Pre-processing (uint8 upload, resize, normalise) and post-processing (the exact sparse
x4 upsample + argmax of :func:`upsample_argmax`, confidence) run on the GPU in torch, on the
same CUDA stream as the engine; only uint8 images come back to the CPU. Ending the engine at 1/4
resolution spares it the largest tensor of the network (19 full-size logit planes) and keeps the
labels identical in definition to the torch backend's.

Engines are cached under ``<cache_dir>/engines``, keyed by the ONNX hash, TensorRT version, GPU
name and compute capability, precision, input shape and batch profile (see :mod:`engine_cache`).
With ``options['max_batch']`` N > 1 (multi_camera_node) the ONNX has a dynamic batch axis and the
engine an optimisation profile for batch 1..N: a batch of cameras runs as one execution. TensorRT
is imported in :meth:`TensorRTBackend.load`, never when this module is imported.
"""

import os
from pathlib import Path
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from regseg_ros.backends import default_log, max_batch_option
from regseg_ros.backends.base import Backend, BackendConfig, Prediction
from regseg_ros.backends.engine_cache import (
    build_lock, calibration_hash, calibration_images, engine_dir, engine_files, engine_metadata,
    newest_sibling, read_metadata, stale_reason, write_metadata)
from regseg_ros.backends.torch_backend import (
    load_regseg, normalisation, predictions_from_quarter, prepare_on_gpu, resolve_device)
from regseg_ros.backends.trt_build import (
    build_serialized_engine, check_precision, import_tensorrt, make_calibrator, make_logger)
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.files import write_atomic
from regseg_ros.model.export import export_onnx, INPUT_NAME, OUTPUT_NAME
from regseg_ros.model.optimize import fold_batchnorm
from regseg_ros.model.weights import file_sha256
import torch
from torch import nn

OPTIONS = ('engine_path', 'workspace_mb', 'int8_calibration_dir', 'timing_cache', 'max_batch')


class QuarterLogits(nn.Module):
    """The network as TensorRT runs it: normalised image in, 1/4-resolution logits out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_quarter(x)


def export_network_onnx(model: nn.Module, path: os.PathLike, height: int, width: int,
                        dynamic_batch: bool = False) -> str:
    """
    Write the ONNX the TensorRT engine is built from (opset 17, static shape, fp32).

    Input ``image`` (1, 3, H, W) normalised RGB; output ``logits`` (1, C, H/4, W/4); with
    ``dynamic_batch`` the batch axis is symbolic. BatchNorm is folded first; the bytes are
    deterministic, so their hash can key the engine cache.
    """
    model = fold_batchnorm(model).float().cpu()
    return export_onnx(QuarterLogits(model), path, height, width, dynamic_batch=dynamic_batch)


def gpu_identity(device: torch.device) -> Tuple[str, str]:
    """Return the GPU's name and compute capability (``'8.7'``) for the engine cache key."""
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f'{major}.{minor}'


def torch_dtype(trt, dtype) -> torch.dtype:
    """Map a TensorRT data type to torch's."""
    for name, ours in (('float32', torch.float32), ('float16', torch.float16),
                       ('int32', torch.int32), ('int8', torch.int8), ('bool', torch.bool)):
        if hasattr(trt, name) and dtype == getattr(trt, name):
            return ours
    raise RegsegError(f'engine tensor type {dtype} is not supported: rebuild the engine with '
                      'build_engine')


def check_io(trt, engine, input_size: Tuple[int, int], num_classes: int, source: str
             ) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """
    Check an engine's tensors against the network settings; return input, output shapes.

    The shapes are at the engine's largest batch (its profile's maximum; 1 for a static engine).
    """
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise RegsegError(
            f'{source} has inputs {inputs} and outputs {outputs}, not [{INPUT_NAME!r}] and '
            f'[{OUTPUT_NAME!r}]: it was not built by regseg_ros; build one with build_engine')
    h, w = input_size
    in_shape = tuple(engine.get_tensor_shape(INPUT_NAME))
    if in_shape[:1] == (-1,):   # dynamic batch: the profile says how large
        in_shape = tuple(engine.get_tensor_profile_shape(INPUT_NAME, 0)[2])
    if in_shape[1:] != (3, h, w):
        raise RegsegError(
            f'{source} takes input {in_shape}, but the network size is {w}x{h} (expects '
            f'{(in_shape[0], 3, h, w)}): set network_height/network_width to the size of the '
            'engine, '
            'or '
            f'rebuild it with build_engine --network-size {w}x{h}')
    out_shape = (in_shape[0],) + tuple(engine.get_tensor_shape(OUTPUT_NAME))[1:]
    if len(out_shape) != 4 or out_shape[1] != num_classes:
        raise RegsegError(
            f'{source} outputs {out_shape}, not {num_classes} classes: use the label set the '
            'engine was built for, or rebuild it with build_engine')
    return in_shape, out_shape


class TensorRTBackend(Backend):
    """RegSeg as a TensorRT engine, built once per setup and cached; torch does pre/post."""

    name = 'tensorrt'
    options = OPTIONS
    forward_only_output = '1/4-resolution logits (TensorRT engine)'

    def __init__(self, config: BackendConfig, log: Optional[Callable[[str], None]] = None):
        super().__init__(config)
        self.log = log or default_log()
        self.trt = None
        self.gpu = ('', '')
        self.engine = None
        self.context = None
        self.engine_file: Optional[Path] = None
        self.engine_source = ''   # 'cache', 'built' or 'engine_path'
        self.build_reason: Optional[str] = None
        self.max_batch = max_batch_option(config.options)
        self.engine_batch = 1     # the largest batch the engine takes (its profile's maximum)

    # -- options -----------------------------------------------------------------------------
    def _options(self) -> Dict[str, object]:
        opts = dict(self.config.options)
        out = {k: opts.get(k) or None for k in OPTIONS}
        for key in ('engine_path', 'int8_calibration_dir', 'timing_cache'):
            if out[key] is not None and not isinstance(out[key], (str, os.PathLike)):
                raise RegsegError(f'option {key} is {out[key]!r}: set it to a path')
        mb = out['workspace_mb']
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, int) or mb <= 0):
            raise RegsegError(f'option workspace_mb is {mb!r}: set it to a positive number of '
                              'MiB (e.g. 1024 on Jetson), or leave it unset for no limit')
        return out

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> None:
        cfg = self.config
        opts = self._options()
        trt = import_tensorrt()
        check_precision(trt, cfg.precision, self.log)
        if not str(cfg.device).startswith('cuda'):
            raise RegsegError(
                f"backend 'tensorrt' runs on an NVIDIA GPU, but device is {cfg.device!r}: set "
                'device to cuda (or cuda:N), or use the torch backend for the CPU (node: -p '
                'backend:=torch; tools: --backend torch)')
        self.device = resolve_device(cfg.device)
        self.trt = trt
        with torch.cuda.device(self.device):
            torch.empty(1, device=self.device)  # create the CUDA context TensorRT will share
            self.gpu = gpu_identity(self.device)
            self._logger = make_logger(trt, self.log)
            self.runtime = trt.Runtime(self._logger)
            self.engine = self.prepare_engine(opts)
            self._bind()
        self.log(f'TensorRT {trt.__version__} engine ready ({cfg.precision}, '
                 f'{cfg.input_size[1]}x{cfg.input_size[0]}, {self.gpu[0]}): '
                 f'{self.engine_file} [{self.engine_source}]')

    def _deserialize(self, data: bytes):
        try:
            return self.runtime.deserialize_cuda_engine(data)
        except Exception as exc:  # some versions raise instead of returning None
            self.log(f'TensorRT could not deserialize the engine: {exc}')
            return None

    def prepare_engine(self, opts: Dict[str, object]):
        """Return a deserialized engine: the prebuilt ``engine_path``, cached, or newly built."""
        if opts['engine_path']:
            return self._load_prebuilt(Path(os.fspath(opts['engine_path'])).expanduser())
        try:
            return self._cached_engine(opts)
        except OSError as exc:
            raise RegsegError(
                f'the engine cache {str(engine_dir(self.config.cache_dir))!r} cannot be used '
                f'({exc}): set cache_dir to a writable folder, or build the engine elsewhere '
                'and pass it as engine_path') from None

    def _cached_engine(self, opts: Dict[str, object]):
        cfg, trt = self.config, self.trt
        h, w = cfg.input_size
        images, calibration = [], ''
        if cfg.precision == 'int8':
            if not opts['int8_calibration_dir']:
                raise RegsegError(
                    'precision int8 needs option int8_calibration_dir (a folder of a few '
                    'hundred camera images): set it, or use precision fp16')
            images = calibration_images(os.fspath(opts['int8_calibration_dir']))
            calibration = calibration_hash(images)
        with tempfile.TemporaryDirectory(prefix='regseg-onnx-') as tmp:
            onnx_path = Path(tmp) / 'regseg.onnx'
            start = time.monotonic()
            export_network_onnx(load_regseg(cfg), onnx_path, h, w,
                                dynamic_batch=self.max_batch > 1)
            self.log(f'exported the network to ONNX for TensorRT ({w}x{h}) in '
                     f'{time.monotonic() - start:.1f} s')
            meta = engine_metadata(file_sha256(onnx_path), trt.__version__, self.gpu[0],
                                   self.gpu[1], cfg.precision, (1, 3, h, w), calibration,
                                   max_batch=self.max_batch)
            directory = engine_dir(cfg.cache_dir)
            stem = f'regseg-{cfg.model}-{cfg.num_classes}c-{w}x{h}-{cfg.precision}' + (
                f'-b{self.max_batch}' if self.max_batch > 1 else '')
            engine_file, meta_file = engine_files(directory, stem, meta)
            self.engine_file = engine_file
            with build_lock(engine_file, self.log):
                reason = stale_reason(meta, read_metadata(meta_file), engine_file.is_file())
                if reason is None:
                    engine = self._deserialize(engine_file.read_bytes())
                    if engine is not None:
                        self.engine_source = 'cache'
                        return engine
                    reason = (f'the cached engine failed to deserialize with TensorRT '
                              f'{trt.__version__}')
                elif not engine_file.is_file():
                    sibling = newest_sibling(directory, stem, engine_file)
                    if sibling is not None:
                        why = stale_reason(meta, sibling[1]) or 'its key differs'
                        reason += f' ({sibling[0].name} does not fit: {why})'
                self.build_reason = reason
                batch = f' batch 1..{self.max_batch}' if self.max_batch > 1 else ''
                self.log(f'building a TensorRT engine for {cfg.model} {w}x{h} {cfg.precision}'
                         f'{batch} on {self.gpu[0]}: {reason}')
                calibrator = None
                if images:
                    calibrator = make_calibrator(trt, images, self._calibration_input,
                                                 engine_file.with_suffix('.calib'), self.log)
                timing = opts['timing_cache'] or directory / (
                    f'timing-trt{trt.__version__}-sm{self.gpu[1]}.cache')
                data = build_serialized_engine(
                    trt, onnx_path, cfg.precision, self.log, workspace_mb=opts['workspace_mb'],
                    timing_cache=timing, calibrator=calibrator, max_batch=self.max_batch)
                write_atomic(engine_file, data)
                write_metadata(meta_file, dict(
                    meta, model=cfg.model, num_classes=cfg.num_classes,
                    weights=str(cfg.weights or '(untrained)'),
                    workspace_mb=opts['workspace_mb'],
                    built=time.strftime('%Y-%m-%dT%H:%M:%S%z')))
                self.log(f'TensorRT engine saved to {engine_file}')
                engine = self._deserialize(data)
                if engine is None:
                    raise RegsegError(
                        f'TensorRT {trt.__version__} cannot load the engine it just built '
                        f'({engine_file}): see the TensorRT errors above')
                self.engine_source = 'built'
                return engine

    def _load_prebuilt(self, path: Path):
        cfg, trt = self.config, self.trt
        h, w = cfg.input_size
        rebuild = (f'ros2 run regseg_ros build_engine --model {cfg.model} --weights <checkpoint> '
                   f'--precision {cfg.precision} --network-size {w}x{h} --output {path}')
        if not path.is_file():
            raise RegsegError(
                f'engine_path {str(path)!r} does not exist: build it with `{rebuild}`, or leave '
                'engine_path empty to build and cache an engine automatically')
        meta = read_metadata(path.with_suffix('.json'))
        if meta is None:
            self.log(f'engine_path {str(path)!r} has no metadata file beside it: only its '
                     'tensor shapes can be checked')
        else:
            expected = dict(meta, tensorrt=trt.__version__, gpu=self.gpu[0],
                            compute_capability=self.gpu[1], precision=cfg.precision,
                            input_shape=[1, 3, h, w], batch_profile=meta.get('batch_profile'))
            why = stale_reason(expected, meta)
            if why:
                self.log(f'engine_path {str(path)!r} may not fit ({why}); trying it anyway')
        if cfg.weights:
            self.log(f'engine_path given: the weights built into {path.name} are used, '
                     f'weights {cfg.weights!r} is not loaded')
        engine = self._deserialize(path.read_bytes())
        if engine is None:
            raise RegsegError(
                f'engine_path {str(path)!r} cannot be loaded by TensorRT {trt.__version__} on '
                f'{self.gpu[0]} (an engine only runs with the TensorRT version and GPU model '
                f'that built it): rebuild it on this machine with `{rebuild}`')
        self.engine_file = path
        self.engine_source = 'engine_path'
        return engine

    def _calibration_input(self, path: os.PathLike) -> torch.Tensor:
        bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RegsegError('not a readable image')
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        x = prepare_on_gpu([rgb], self.config.input_size, self.device, torch.float32)
        scale, shift = normalisation(self.device, torch.float32)
        x = (x * scale - shift).contiguous()
        torch.cuda.synchronize(self.device)
        return x

    def _bind(self) -> None:
        """Create the execution context and its device buffers (owned by torch tensors)."""
        trt, engine, cfg = self.trt, self.engine, self.config
        in_shape, out_shape = check_io(trt, engine, cfg.input_size, cfg.num_classes,
                                       f'engine {self.engine_file}')
        self.engine_batch = in_shape[0]
        if self.engine_batch < self.max_batch:
            self.log(f'the engine takes batch 1..{self.engine_batch}, max_batch is '
                     f'{self.max_batch}: larger batches run in parts')
        self.context = engine.create_execution_context()
        self.context.set_input_shape(INPUT_NAME, in_shape)
        out_shape = (in_shape[0],) + tuple(self.context.get_tensor_shape(OUTPUT_NAME))[1:]
        self.input = torch.empty(in_shape, device=self.device,
                                 dtype=torch_dtype(trt, engine.get_tensor_dtype(INPUT_NAME)))
        self.output = torch.empty(out_shape, device=self.device,
                                  dtype=torch_dtype(trt, engine.get_tensor_dtype(OUTPUT_NAME)))
        self.context.set_tensor_address(INPUT_NAME, int(self.input.data_ptr()))
        self.context.set_tensor_address(OUTPUT_NAME, int(self.output.data_ptr()))
        self.stream = torch.cuda.Stream(self.device)
        self.scale, self.shift = normalisation(self.device, torch.float32)

    # -- running -----------------------------------------------------------------------------
    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RegsegError('TensorRT execute_async_v3 failed (see the TensorRT errors '
                              'logged above)')

    @torch.inference_mode()
    def infer(self, images: Sequence[np.ndarray], output_sizes: Sequence[Tuple[int, int]],
              with_confidence: bool = False) -> List[Prediction]:
        size = tuple(self.config.input_size)
        results = []
        step = self.engine_batch
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            for i in range(0, len(images), step):   # the engine's profile: batch 1..step
                part = images[i:i + step]
                n = len(part)
                x = prepare_on_gpu(part, size, self.device, torch.float32)
                # the first n rows of the buffers: their addresses stay the bound ones
                self.context.set_input_shape(INPUT_NAME, (n,) + tuple(self.input.shape[1:]))
                self.input[:n].copy_(x * self.scale - self.shift)
                start = time.perf_counter()
                self._execute()
                results += predictions_from_quarter(self.output[:n], size,
                                                    output_sizes[i:i + step], with_confidence)
                self.last_forward_s = time.perf_counter() - start
        return results

    def forward_only(self) -> None:
        with torch.cuda.device(self.device):
            self.context.set_input_shape(INPUT_NAME, (1,) + tuple(self.input.shape[1:]))
            self._execute()
            self.stream.synchronize()

    def describe(self) -> Dict[str, str]:
        info = super().describe()
        info.update(torch=torch.__version__, tensorrt=getattr(self.trt, '__version__', ''),
                    gpu=self.gpu[0], engine=str(self.engine_file or ''),
                    engine_source=self.engine_source)
        return info

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.runtime = None
        self.input = self.output = None
        if getattr(self, 'device', None) is not None:
            torch.cuda.empty_cache()
