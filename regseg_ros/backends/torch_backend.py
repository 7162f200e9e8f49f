"""PyTorch backend: CPU (channels_last, folded BatchNorm) and CUDA (plus fp16, cudnn autotune)."""

import re
from typing import List, Sequence, Tuple

import numpy as np
from regseg_ros.backends.base import Backend, Prediction
from regseg_ros.backends.postprocess import upsample_argmax
from regseg_ros.errors import RegsegError
from regseg_ros.imaging import resize_labels, resize_rgb
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
    """Build the configured RegSeg and load its weights (or refuse to run untrained)."""
    model = build_model(config.model, config.num_classes)
    if config.weights:
        load_weights(model, config.weights, cache_dir=config.cache_dir)
    elif not config.allow_untrained:
        raise RegsegError(
            'weights is empty: pass a checkpoint path, an https:// URL or a released checkpoint '
            "name (e.g. 'cityscapes_exp48_trainval'); allow_untrained: true runs random "
            'weights for demos and tests only')
    return model


class TorchBackend(Backend):
    """RegSeg in PyTorch eager mode, tuned per device."""

    name = 'torch'

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
        self.dtype = PRECISIONS[cfg.precision]
        model = fold_batchnorm(load_regseg(cfg))
        self.model = model.to(self.device, self.dtype, memory_format=torch.channels_last)
        std = torch.tensor(STD, device=self.device).reshape(1, 3, 1, 1)
        self.scale = (1.0 / (255.0 * std)).to(self.dtype)
        self.shift = (torch.tensor(MEAN, device=self.device).reshape(1, 3, 1, 1) / std
                      ).to(self.dtype)
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
        self._bench_input = None

    def _prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = self.config.input_size
        if self.device.type == 'cpu':
            # Resize the uint8 frame first: normalising a full camera frame would waste the CPU.
            batch = np.stack([resize_rgb(img, h, w) for img in images])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.dtype)
        else:
            parts = []
            for img in images:
                t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device, non_blocking=True)
                t = t.permute(2, 0, 1).unsqueeze(0).to(self.dtype)
                if t.shape[-2:] != (h, w):
                    shrink = t.shape[-2] > h and t.shape[-1] > w
                    t = F.interpolate(t, size=(h, w), mode='bilinear', align_corners=False,
                                      antialias=shrink)
                parts.append(t)
            x = torch.cat(parts)
        x = x * self.scale - self.shift
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer(self, images: Sequence[np.ndarray], output_sizes: Sequence[Tuple[int, int]],
              with_confidence: bool = False) -> List[Prediction]:
        x = self._prepare(images)
        quarter = self.model.forward_quarter(x)
        labels = upsample_argmax(quarter, x.shape[-2:])
        conf = None
        if with_confidence:
            # Softmax at 1/4 size: the top probability is smooth, so upsample one channel.
            top = torch.softmax(quarter.float(), 1).amax(1, keepdim=True)
            conf = F.interpolate(top, size=x.shape[-2:], mode='bilinear', align_corners=False)
            conf = (conf[:, 0] * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)
        results = []
        for i, (oh, ow) in enumerate(output_sizes):
            if self.device.type == 'cuda':
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

    @torch.inference_mode()
    def forward_only(self) -> None:
        if self._bench_input is None:
            h, w = self.config.input_size
            self._bench_input = torch.randn(1, 3, h, w, device=self.device, dtype=self.dtype
                                            ).contiguous(memory_format=torch.channels_last)
        self.model(self._bench_input)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def describe(self):
        info = super().describe()
        info['torch'] = torch.__version__
        if self.device.type == 'cuda':
            info['gpu'] = torch.cuda.get_device_name(self.device)
        else:
            info['threads'] = str(torch.get_num_threads())
        return info

    def close(self) -> None:
        self.model = None
        if getattr(self, 'device', None) is not None and self.device.type == 'cuda':
            torch.cuda.empty_cache()
