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
PyTorch backend: CPU (channels_last, folded BatchNorm) and CUDA (fp16, cudnn autotune).

On the CPU, ``options['torchscript']`` (default true) traces ``forward_quarter`` for one frame at
the network size and runs that instead of eager mode. The traced network runs the same kernels
(:meth:`TorchBackend.load` checks once that its logits are bit-equal to eager mode, else logs
and runs eager), but in TorchScript's interpreter, which does not hold Python's GIL: eager mode
takes the GIL back at every layer, so frames segmented side by side and the node's own Python
threads (taking frames from DDS, publishing) queued for it between layers.

On CUDA, ``options['cuda_graph']`` captures the network for the fixed input shape once and
replays it per frame, which removes the per-layer launch overhead (most useful on Jetson).

Frames are batched at the network size (each is resized first, so cameras of different
resolutions share a batch). On the CPU, oneDNN picks other convolution kernels for batch N
than for batch 1, and the logits then differ in the last bits (measured: up to 7.5e-9 with
torch 2.13, channels_last); a label on an exact tie could flip. With ``options['exact_batch']``
(the default) :meth:`TorchBackend.load` checks this once for ``max_batch`` frames and, when the
results differ, runs the network frame by frame, so a frame's labels never depend on the other
frames in its batch.

Frame by frame, the frames of a batch run in parallel, each resized, forwarded and turned into
labels as a batch of 1 (the multi-camera node's worker hands each of ``parallel_forwards`` lanes
its own frame instead, see ``regseg_ros.ros.camera_pipeline``): ``W = min(max_batch, T)`` threads
(T = torch's intra-op threads, ``cpu_threads``) each take one frame with ``T // W`` torch threads.
A small network scales badly over intra-op threads, worse on a loaded machine where the threads of
one layer wait for each other (measured on a 2-core VM: 2 frames of 1 thread side by side beat one
frame of 2 threads after the other). Every forward, in a batch of 1 too, then uses ``T // W``
threads, and the logits depend on the thread count in the last bits: a frame's labels equal those
of a ``regseg`` node with ``cpu_threads`` ``T // W`` (what vehicle_cameras.launch.py
process_per_camera starts on a CPU with fewer cores than cameras).
"""

from concurrent.futures import ThreadPoolExecutor
import re
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple
import warnings

import numpy as np
from regseg_ros.backends import default_log, max_batch_option
from regseg_ros.backends.base import Backend, BackendConfig, Prediction
from regseg_ros.backends.postprocess import upsample_argmax
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.imaging import resize_labels, resize_rgb
from regseg_ros.model import build_model, load_weights
from regseg_ros.model.optimize import fold_batchnorm
import torch
from torch.nn import functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16}


def resolve_device(spec: str) -> torch.device:
    """Turn the ``device`` setting into a torch device, or raise naming the fix."""
    if spec == 'cpu':
        return torch.device('cpu')
    match = re.fullmatch(r'cuda(?::(\d+))?', spec)
    if not match:
        raise RegsegError(f"device {spec!r} is not one of 'cpu', 'cuda', 'cuda:N'")
    if not torch.cuda.is_available():
        build = ('a CPU-only build' if torch.version.cuda is None
                 else f'built for CUDA {torch.version.cuda}, but no GPU is visible')
        raise RegsegError(
            f'device {spec!r} asked for, but CUDA is not available (torch {torch.__version__} is '
            f'{build}): set device to cpu, or install a CUDA build of PyTorch and check the GPU '
            'driver (nvidia-smi) and CUDA_VISIBLE_DEVICES')
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise RegsegError(f'device {spec!r} asked for, but only {torch.cuda.device_count()} '
                          'CUDA device(s) are visible: use cuda:0 ... cuda:N-1')
    return torch.device('cuda', index)


def load_regseg(config) -> torch.nn.Module:
    """
    Build the configured RegSeg and load its weights (or refuse to run untrained).

    Untrained weights are drawn from a fixed seed, so they are the same in every run (and an
    engine built from them is found in the cache next time).
    """
    if config.weights:
        model = build_model(config.model, config.num_classes)
        load_weights(model, config.weights, cache_dir=config.cache_dir)
    elif config.allow_untrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(config.model, config.num_classes)
    else:
        raise RegsegError(
            'weights is empty: pass a checkpoint path, an https:// URL or a released checkpoint '
            "name (e.g. 'cityscapes_exp48_trainval'); allowing untrained weights runs random "
            'weights, for demos and tests only')
    return model


def normalisation(device: torch.device, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``(scale, shift)`` with ``x * scale - shift`` the normalised input of uint8 RGB."""
    std = torch.tensor(STD, device=device).reshape(1, 3, 1, 1)
    scale = (1.0 / (255.0 * std)).to(dtype)
    shift = (torch.tensor(MEAN, device=device).reshape(1, 3, 1, 1) / std).to(dtype)
    return scale, shift


def prepare_on_gpu(images: Sequence[np.ndarray], size: Tuple[int, int], device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """Upload uint8 RGB frames and resize them on the GPU; return (N, 3, H, W) in ``dtype``."""
    h, w = size
    parts = []
    for img in images:
        t = torch.from_numpy(np.ascontiguousarray(img)).to(device, non_blocking=True)
        t = t.permute(2, 0, 1).unsqueeze(0).to(dtype)
        if t.shape[-2:] != (h, w):
            shrink = t.shape[-2] > h and t.shape[-1] > w
            t = F.interpolate(t, size=(h, w), mode='bilinear', align_corners=False,
                              antialias=shrink)
        parts.append(t)
    return torch.cat(parts)


def predictions_from_quarter(quarter: torch.Tensor, size: Tuple[int, int],
                             output_sizes: Sequence[Tuple[int, int]],
                             with_confidence: bool) -> List[Prediction]:
    """
    Turn 1/4-resolution logits into uint8 labels (and confidence) at each output size.

    Labels are exact argmax of the bilinearly upsampled logits (sparse on class boundaries);
    on a GPU everything stays there and only uint8 images are copied back.
    """
    on_gpu = quarter.device.type == 'cuda'
    labels = upsample_argmax(quarter, size)
    conf = None
    if with_confidence:
        # Softmax at 1/4 size: the top probability is smooth, so upsample one channel.
        top = torch.softmax(quarter.float(), 1).amax(1, keepdim=True)
        conf = F.interpolate(top, size=tuple(size), mode='bilinear', align_corners=False)
        conf = (conf[:, 0] * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)
    results = []
    for i, (oh, ow) in enumerate(output_sizes):
        if on_gpu:
            lab = F.interpolate(labels[i:i + 1, None].float(), size=(oh, ow), mode='nearest')
            lab = lab[0, 0].to(torch.uint8).cpu().numpy()
            cf = None
            if conf is not None:
                cf = F.interpolate(conf[i:i + 1, None].float(), size=(oh, ow),
                                   mode='bilinear', align_corners=False)
                cf = cf[0, 0].round().clamp_(0, 255).to(torch.uint8).cpu().numpy()
        else:
            lab = resize_labels(labels[i].numpy(), oh, ow)
            cf = None if conf is None else resize_rgb(conf[i].numpy(), oh, ow)
        results.append(Prediction(lab, cf))
    return results


class _Quarter(torch.nn.Module):
    """``model.forward_quarter`` as a module's forward, for tracing."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_quarter(x)


class TorchBackend(Backend):
    """RegSeg in PyTorch eager mode, tuned per device; optionally a CUDA graph on the GPU."""

    name = 'torch'
    options = ('cuda_graph', 'exact_batch', 'torchscript')

    def __init__(self, config: BackendConfig, log: Optional[Callable[[str], None]] = None):
        super().__init__(config)
        self.log = log or default_log()
        self.device = None
        self._graph = None
        self._script = None   # forward_quarter traced for batch 1 (CPU, see load)
        self._bench_input = None
        self.per_sample = False   # run the network frame by frame (see exact_batch)
        self.max_batch = 1
        self._pool: Optional[ThreadPoolExecutor] = None   # parallel forwards (per_sample)
        self.forward_threads = 0   # torch threads of one forward in the pool
        self.parallel_forwards = 1
        self._local = threading.local()

    @property
    def last_forward_s(self) -> Optional[float]:
        """Seconds of the network in this thread's last ``infer`` (lanes infer in parallel)."""
        return getattr(self._local, 'forward_s', None)

    @last_forward_s.setter
    def last_forward_s(self, value: Optional[float]) -> None:
        self._local.forward_s = value

    def load(self) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device)
        if cfg.precision not in PRECISIONS:
            raise RegsegError(
                f'precision {cfg.precision!r} is not one of {sorted(PRECISIONS)}')
        if cfg.precision == 'fp16' and self.device.type != 'cuda':
            raise RegsegError(
                "precision 'fp16' needs a CUDA device: set precision to fp32 for device "
                f'{cfg.device!r}')
        cuda_graph = cfg.options.get('cuda_graph', False)
        exact = cfg.options.get('exact_batch', True)
        script = cfg.options.get('torchscript', True)
        for key, value in (('cuda_graph', cuda_graph), ('exact_batch', exact),
                           ('torchscript', script)):
            if not isinstance(value, bool):
                raise RegsegError(f'option {key} is {value!r}: set it to true or false')
        self.max_batch = max_batch_option(cfg.options)
        self.dtype = PRECISIONS[cfg.precision]
        model = fold_batchnorm(load_regseg(cfg))
        self.model = model.to(self.device, self.dtype, memory_format=torch.channels_last)
        self.scale, self.shift = normalisation(self.device, self.dtype)
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
        if cuda_graph and self.device.type != 'cuda':
            self.log(f'option cuda_graph ignored: it needs a CUDA device, not {cfg.device!r}')
        elif cuda_graph:
            self._graph = self._capture_graph()
        if script and self.device.type == 'cpu':
            self._script = self._trace()
        if exact and self.device.type == 'cpu' and self.max_batch > 1:
            self.per_sample = not self.batch_is_exact(self.max_batch)
            self.log(f'exact_batch: batch {self.max_batch} logits are '
                     + ('not bit-equal to batch 1 on this CPU: the network runs frame by frame '
                        '(set exact_batch false to batch it, faster)' if self.per_sample
                        else 'bit-equal to batch 1: batching'))
            if self.per_sample:
                self._start_pool()

    def _start_pool(self) -> None:
        """Run the frames of a batch in parallel forwards, each with a share of the threads."""
        threads = torch.get_num_threads()
        workers = min(self.max_batch, threads)
        if workers < 2:
            return
        self.forward_threads = threads // workers
        self.parallel_forwards = workers
        # Process-wide, and meant so: every forward of this node (batch of 1 too) then uses the
        # same thread count, so a frame's labels do not depend on the size of its batch.
        torch.set_num_threads(self.forward_threads)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix='regseg-forward')
        self.log(f'exact_batch: {workers} frames of a batch at a time, each forward with '
                 f'{self.forward_threads} torch thread(s) (labels as a regseg node with '
                 f'cpu_threads {self.forward_threads})')

    @torch.inference_mode()
    def _infer_one(self, image: np.ndarray, output_size: Tuple[int, int],
                   with_confidence: bool) -> Tuple[Prediction, float, float]:
        """One frame in a pool thread, as a batch of 1: return (prediction, forward start, end)."""
        x = self._prepare([image])   # inference mode is per thread: the decorator sets it here
        start = time.perf_counter()
        quarter = self._forward_quarter(x)
        end = time.perf_counter()
        pred = predictions_from_quarter(quarter, tuple(x.shape[-2:]), [output_size],
                                        with_confidence)[0]
        return pred, start, end

    @torch.inference_mode()
    def batch_is_exact(self, batch: int) -> bool:
        """Return whether ``batch`` frames at once give bit-equal logits to one at a time."""
        h, w = self.config.input_size
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, h, w, generator=gen).to(self.device, self.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        together = self.model.forward_quarter(x)
        alone = torch.cat([self.model.forward_quarter(x[i:i + 1]) for i in range(batch)])
        return bool(torch.equal(together, alone))

    @torch.inference_mode()
    def _trace(self):
        """
        Trace ``forward_quarter`` for one frame at the network size; None (logged) on failure.

        The traced network runs the same kernels in TorchScript's interpreter, which holds no
        GIL: frames side by side (and the node's other threads) no longer queue for it at every
        layer. Used only where its logits are bit-equal to eager mode, checked here once.
        """
        h, w = self.config.input_size
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(1, 3, h, w, generator=gen).to(self.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', torch.jit.TracerWarning)
                traced = torch.jit.trace(_Quarter(self.model), x, check_trace=False)
            for _ in range(3):   # the profiling executor settles on its graph in two runs
                out = traced(x)
        except Exception as exc:  # noqa: B902 tracing fails on some torch builds and ops
            self.log(f'option torchscript: tracing failed ({type(exc).__name__}: {exc}); '
                     'running eager')
            return None
        if not torch.equal(out, self.model.forward_quarter(x)):
            self.log('option torchscript: traced logits are not bit-equal to eager mode on '
                     'this CPU; running eager')
            return None
        return traced

    @torch.inference_mode()
    def _capture_graph(self):
        """Capture ``forward_quarter`` for the fixed input shape; None (logged) on failure."""
        h, w = self.config.input_size
        try:
            static_in = torch.zeros(1, 3, h, w, device=self.device, dtype=self.dtype
                                    ).contiguous(memory_format=torch.channels_last)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up: cudnn picks its kernels before capture
                for _ in range(3):
                    self.model.forward_quarter(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model.forward_quarter(static_in)
            torch.cuda.synchronize(self.device)
        except Exception as exc:  # capture fails on some ops, drivers and memory limits
            self.log(f'option cuda_graph: capture failed ({type(exc).__name__}: {exc}); '
                     'running eager instead')
            return None
        self.log(f'option cuda_graph: captured the network for {w}x{h} batch 1')
        return graph, static_in, static_out

    def _prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = self.config.input_size
        if self.device.type == 'cpu':
            # Resize the uint8 frame first: normalising a full camera frame would waste the CPU.
            batch = np.stack([resize_rgb(img, h, w) for img in images])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.dtype)
        else:
            x = prepare_on_gpu(images, (h, w), self.device, self.dtype)
        x = x * self.scale - self.shift
        return x.contiguous(memory_format=torch.channels_last)

    def _forward_quarter(self, x: torch.Tensor) -> torch.Tensor:
        if self._graph is not None and x.shape[0] == 1:
            graph, static_in, static_out = self._graph
            static_in.copy_(x)
            graph.replay()
            return static_out  # overwritten by the next replay: used up before infer returns
        if self._script is not None and x.shape[0] == 1:
            return self._script(x)
        if self.per_sample and x.shape[0] > 1:
            return torch.cat([self._forward_quarter(x[i:i + 1]) for i in range(len(x))])
        return self.model.forward_quarter(x)

    @torch.inference_mode()
    def infer(self, images: Sequence[np.ndarray], output_sizes: Sequence[Tuple[int, int]],
              with_confidence: bool = False) -> List[Prediction]:
        if self._pool is not None and len(images) > 1:
            # Each frame whole (resize, forward, labels) in a pool thread, exactly as a batch
            # of 1: the frames of a batch overlap, and so do their pre- and post-processing.
            done = list(self._pool.map(self._infer_one, images, output_sizes,
                                       [with_confidence] * len(images)))
            self.last_forward_s = max(d[2] for d in done) - min(d[1] for d in done)
            return [d[0] for d in done]
        x = self._prepare(images)
        start = time.perf_counter()
        quarter = self._forward_quarter(x)
        if self.device.type == 'cpu':  # CUDA runs asynchronously: no honest time without a sync
            self.last_forward_s = time.perf_counter() - start
        return predictions_from_quarter(quarter, tuple(x.shape[-2:]), output_sizes,
                                        with_confidence)

    @torch.inference_mode()
    def infer_protocol(self, images: Sequence[np.ndarray],
                       output_sizes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
        x = self._prepare(images)
        quarter = self._forward_quarter(x)
        # The network's own final upsample (RegSeg.forward), then the authors' resize to the
        # label size; both bilinear, align_corners=False; argmax at the output size.
        logits = F.interpolate(quarter, size=tuple(x.shape[-2:]), mode='bilinear',
                               align_corners=False)
        results = []
        for i, (oh, ow) in enumerate(output_sizes):
            one = logits[i:i + 1]
            if tuple(one.shape[-2:]) != (oh, ow):
                one = F.interpolate(one, size=(oh, ow), mode='bilinear', align_corners=False)
            results.append(one[0].argmax(0).to(torch.uint8).cpu().numpy())
        return results

    @property
    def forward_only_output(self) -> str:
        """Name what :meth:`forward_only` computes, for benchmark reports."""
        if self._graph is not None:
            return '1/4-resolution logits (CUDA graph replay)'
        return 'full-resolution logits (x4 bilinear upsample included, as in the paper)'

    @torch.inference_mode()
    def forward_only(self) -> None:
        if self._graph is not None:
            self._graph[0].replay()
        else:
            if self._bench_input is None:
                h, w = self.config.input_size
                self._bench_input = torch.randn(1, 3, h, w, device=self.device,
                                                dtype=self.dtype
                                                ).contiguous(memory_format=torch.channels_last)
            # What the model's forward does, through the traced network where the node uses it.
            F.interpolate(self._forward_quarter(self._bench_input),
                          size=self._bench_input.shape[-2:], mode='bilinear',
                          align_corners=False)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def describe(self):
        info = super().describe()
        info['torch'] = torch.__version__
        if self.device.type == 'cuda':
            info['gpu'] = torch.cuda.get_device_name(self.device)
            info['cuda_graph'] = str(self._graph is not None).lower()
        else:
            info['threads'] = str(torch.get_num_threads())
            info['forward'] = 'torchscript' if self._script is not None else 'eager'
        if self.max_batch > 1:
            info['max_batch'] = str(self.max_batch)
            info['batch_forward'] = 'per_frame' if self.per_sample else 'batched'
            if self._pool is not None:
                info['batch_forward'] = (f'per_frame, {self.parallel_forwards} in parallel '
                                         f'of {self.forward_threads} thread(s)')
        return info

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.model = None
        self._graph = None
        self._script = None
        if getattr(self, 'device', None) is not None and self.device.type == 'cuda':
            torch.cuda.empty_cache()
