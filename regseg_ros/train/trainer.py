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
The training loop of the authors' recipe.

SGD (no weight decay on BatchNorm), poly schedule with linear warm-up, AMP on CUDA, cross
entropy ignoring 255, evaluation while training and atomic checkpoints.

Output folder: ``last.pth`` (everything ``--resume`` needs), ``best.pth`` (the best val mIoU so
far) and ``history.json`` (loss, lr and mIoU per iteration / evaluation). Each is written under a
temporary name and renamed, so a file there is always whole. Both checkpoints are training
dicts with ``model`` (the node's loader takes it) and ``regseg_ros``: the label set, the model
variant, the recipe and the history.
"""

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.files import writable_dir, write_atomic
from regseg_ros.core.labels import LabelSet
from regseg_ros.core.metrics import confusion_matrix, scores
from regseg_ros.model.regseg import RegSeg
from regseg_ros.model.weights import (load_weights, META_KEY, read_training_dict,
                                      save_checkpoint)
from regseg_ros.train import datasets, distributed
from regseg_ros.train.augment import normalize, resize_short_side
from regseg_ros.train.recipe import Recipe
import torch
from torch import nn
from torch.nn import functional as F

LAST, BEST, HISTORY = 'last.pth', 'best.pth', 'history.json'
FORMAT = 1


def lr_factor(iteration: int, total: int, recipe: Recipe) -> float:
    """Poly(``poly_power``) decay times a linear warm-up from ``warmup_factor`` to 1."""
    factor = (1.0 - min(iteration, total) / total) ** recipe.poly_power
    if iteration < recipe.warmup_iterations:
        alpha = iteration / recipe.warmup_iterations
        factor *= recipe.warmup_factor * (1 - alpha) + alpha
    return factor


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, object]]:
    """Two SGD groups: BatchNorm weights and biases without weight decay, the rest with it."""
    norm, other = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                norm.append(param)
            else:
                other.append(param)
    return [{'params': other, 'weight_decay': weight_decay},
            {'params': norm, 'weight_decay': 0.0}]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """Cross entropy ignoring 255, or the bootstrapped form (hardest pixels only)."""
    if recipe.loss == 'ce':
        return F.cross_entropy(logits, target, ignore_index=255)
    pixel = F.cross_entropy(logits, target, ignore_index=255, reduction='none').flatten()
    keep = max(1, target.numel() // 16)
    ordered, _ = pixel.sort(descending=True)
    if ordered.numel() > keep and ordered[keep] > recipe.bootstrap_threshold:
        return ordered[ordered > recipe.bootstrap_threshold].mean()
    return ordered[:keep].mean()


@contextlib.contextmanager
def oom_guard(recipe: Recipe, world_size: int):
    """Turn CUDA's out-of-memory error into one error naming --batch-size and --crop-size."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        per = recipe.batch_size // world_size
        raise RegsegError(
            f'CUDA ran out of memory on a batch of {per} crops of '
            f'{recipe.crop_size[0]}x{recipe.crop_size[1]} per process: lower --batch-size '
            f'(now {recipe.batch_size} in all over {world_size} process(es)) or --crop-size, '
            'or spread the batch over more GPUs with torchrun') from None


def train_step(model: nn.Module, optimizer, scaler, images: torch.Tensor,
               labels: torch.Tensor, recipe: Recipe, world_size: int = 1) -> torch.Tensor:
    """One optimizer step; returns the (local) loss. CUDA OOM raises naming --batch-size."""
    with oom_guard(recipe, world_size):
        cuda = images.device.type == 'cuda'
        with torch.autocast('cuda', dtype=torch.float16, enabled=cuda and recipe.amp):
            logits = model(images)
        loss = segmentation_loss(logits.float(), labels, recipe)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


@torch.no_grad()
def evaluate_model(model: nn.Module, pairs: Sequence[datasets.Pair], layout: str,
                   label_set: LabelSet, ctx: distributed.Context, recipe: Recipe) -> Dict:
    """
    Val mIoU with ``evaluate``'s metric (:mod:`regseg_ros.core.metrics`).

    Each process scores its share of the images; the confusion matrices are summed. Logits
    are resized bilinearly to the label size and the argmax taken there (authors' protocol).
    """
    net = distributed.unwrap(model)
    was_training = net.training
    net.eval()
    n = label_set.num_classes
    confusion = np.zeros((n, n), np.int64)
    for pair in list(pairs)[ctx.rank::ctx.world_size]:
        rgb = datasets.read_image(pair[0])
        label = datasets.read_label(pair[1], layout, label_set)
        if recipe.eval_short_side:
            rgb, _ = resize_short_side(rgb, label, recipe.eval_short_side)
        x = torch.from_numpy(normalize(rgb))[None].to(ctx.device)
        with torch.autocast('cuda', dtype=torch.float16,
                            enabled=ctx.device.type == 'cuda' and recipe.amp):
            logits = net(x)
        logits = F.interpolate(logits.float(), size=label.shape[:2], mode='bilinear',
                               align_corners=False)
        pred = logits.argmax(1)[0].cpu().numpy()
        confusion += confusion_matrix(pred, label, n)
    net.train(was_training)
    total = torch.from_numpy(confusion)
    distributed.all_reduce_sum(total, ctx)
    return scores(total.numpy())


def _check_output(output: Path, resume: Optional[str]) -> None:
    """Refuse to mix two runs in one folder; prove the folder is writable (before training)."""
    if output.exists() and not output.is_dir():
        raise RegsegError(f'--output {str(output)!r} is a file: pass a folder')
    if (output / LAST).exists() and not resume:
        raise RegsegError(f'--output {str(output)!r} already holds a training run ({LAST}): '
                          f'pass --resume {output / LAST} to continue it or choose another '
                          '--output')


class Run:
    """The state of one training run that checkpoints carry."""

    def __init__(self, recipe: Recipe, label_set: LabelSet, total: int, per_epoch: int):
        """Start at iteration 0."""
        self.recipe, self.label_set = recipe, label_set
        self.total, self.per_epoch = total, per_epoch
        self.iteration, self.best_miou = 0, -1.0
        self.history: List[Dict[str, object]] = []
        self.evals: List[Dict[str, object]] = []

    def meta(self, dataset: str, layout: str) -> Dict[str, object]:
        """Return the ``regseg_ros`` entry of a checkpoint."""
        return {'format': FORMAT, 'model': self.recipe.model,
                'num_classes': self.label_set.num_classes,
                'label_set': self.label_set.to_dict(), 'recipe': self.recipe.to_dict(),
                'iteration': self.iteration, 'total_iterations': self.total,
                'best_miou': self.best_miou, 'history': self.history, 'evals': self.evals,
                'dataset': dataset, 'layout': layout}


def _resume(path: str, model: nn.Module, optimizer, scaler, run: Run) -> None:
    ckpt = read_training_dict(path)
    meta = ckpt.get(META_KEY)
    if not isinstance(meta, dict) or 'optimizer' not in ckpt:
        raise RegsegError(f'--resume {path!r} is not a {LAST} written by train (it has no '
                          'optimizer state): pass OUTPUT/last.pth, or start a new run with '
                          '--weights')
    carried = LabelSet.from_dict(meta['label_set'], f'label set in {path!r}')
    if carried.classes != run.label_set.classes or meta['model'] != run.recipe.model:
        raise RegsegError(f'--resume {path!r} trained {meta["model"]} on classes '
                          f'{list(carried.classes)}; this run has {run.recipe.model} and '
                          f'{list(run.label_set.classes)}: resume with the same dataset classes '
                          'and --model')
    if meta['total_iterations'] != run.total:
        raise RegsegError(f'--resume {path!r} was a run of {meta["total_iterations"]} '
                          f'iterations, this one has {run.total}: pass the same --epochs / '
                          '--iterations and --batch-size')
    distributed.unwrap(model).load_state_dict(ckpt['model'])
    optimizer.load_state_dict(ckpt['optimizer'])
    if ckpt.get('scaler'):
        scaler.load_state_dict(ckpt['scaler'])
    run.iteration, run.best_miou = int(meta['iteration']), float(meta['best_miou'])
    run.history, run.evals = list(meta['history']), list(meta['evals'])


def train(dataset: os.PathLike, output: os.PathLike, recipe: Recipe, layout: str = 'auto',
          classes: Optional[str] = None, train_split: str = 'train', val_split: str = 'val',
          device: str = 'cpu', resume: Optional[str] = None, stop_after: int = 0,
          cache_dir: Optional[str] = None, progress: bool = True,
          log: Callable[[str], None] = print) -> Dict[str, object]:
    """
    Fine-tune RegSeg on ``dataset`` and write checkpoints to ``output``; return a summary.

    ``stop_after`` > 0 ends the run after that iteration (the schedule still spans the whole
    run); ``resume`` (a ``last.pth``) continues it. Under torchrun every process calls this.
    """
    recipe.validate()
    ctx = distributed.setup(device)
    try:
        return _train(ctx, Path(dataset), Path(output), recipe, layout, classes, train_split,
                      val_split, resume, stop_after, cache_dir, progress, log)
    finally:
        distributed.cleanup(ctx)


def _train(ctx, root, output, recipe, layout, classes, train_split, val_split, resume,
           stop_after, cache_dir, progress, log):
    from regseg_ros.tools.progress import Progress
    if not root.is_dir():
        raise RegsegError(f'dataset folder {str(root)!r} does not exist')
    layout = datasets.detect_layout(root) if layout == 'auto' else layout
    label_set = datasets.layout_label_set(root, layout, classes)
    train_pairs = datasets.find_pairs(root, layout, train_split)
    val_pairs = datasets.find_pairs(root, layout, val_split)
    datasets.check_labels(train_pairs + val_pairs, layout, label_set)
    if recipe.batch_size % ctx.world_size:
        raise RegsegError(f'--batch-size {recipe.batch_size} is the batch of all '
                          f'{ctx.world_size} processes together: make it a multiple of '
                          f'{ctx.world_size}')
    if len(train_pairs) < recipe.batch_size:
        raise RegsegError(f'--batch-size {recipe.batch_size} is larger than the training split '
                          f'({len(train_pairs)} images): lower it or add images')
    output = output.resolve()
    _check_output(output, resume)
    per_epoch = len(train_pairs) // recipe.batch_size
    total = recipe.iterations or recipe.epochs * per_epoch
    if ctx.main:
        log(f'{layout} dataset {root}: {len(train_pairs)} {train_split} / {len(val_pairs)} '
            f'{val_split} images, label set {label_set.name!r} ({label_set.num_classes} '
            f'classes); {total} iterations of batch {recipe.batch_size} '
            f'({per_epoch} per epoch) on {ctx.world_size} process(es), {ctx.device}')

    torch.manual_seed(recipe.seed)
    model = RegSeg(recipe.model, label_set.num_classes)
    if recipe.weights and not resume:
        load_weights(model, recipe.weights, cache_dir)
    model = distributed.wrap(model.train(), ctx, recipe.sync_bn)
    optimizer = torch.optim.SGD(param_groups(model, recipe.weight_decay), lr=recipe.lr,
                                momentum=recipe.momentum)
    amp = ctx.device.type == 'cuda' and recipe.amp
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    run = Run(recipe, label_set, total, per_epoch)
    if resume:
        _resume(resume, model, optimizer, scaler, run)
    if ctx.main:
        writable_dir(output, f'training run in --output {str(output)!r}',
                     'choose a writable folder')
    distributed.barrier(ctx)

    trainset = datasets.TrainSet(train_pairs, layout, label_set, recipe)
    per_process = recipe.batch_size // ctx.world_size
    end = min(total, stop_after) if stop_after else total
    bar = Progress(total=end * recipe.batch_size, desc='train', unit='images',
                   enabled=progress and ctx.main, initial=run.iteration * recipe.batch_size)
    eval_interval = recipe.eval_every * per_epoch
    with bar:
        while run.iteration < end:
            epoch, skip = divmod(run.iteration, per_epoch)
            sampler = torch.utils.data.DistributedSampler(
                trainset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                seed=recipe.seed, drop_last=True)
            sampler.set_epoch(epoch)
            indices = list(sampler)[skip * per_process:per_epoch * per_process]
            trainset.epoch = epoch
            loader = torch.utils.data.DataLoader(
                trainset, batch_size=per_process, sampler=indices, drop_last=True,
                num_workers=recipe.workers, pin_memory=ctx.device.type == 'cuda',
                persistent_workers=False)
            for images, labels in loader:
                lr = recipe.lr * lr_factor(run.iteration, total, recipe)
                for group in optimizer.param_groups:
                    group['lr'] = lr
                loss = train_step(model, optimizer, scaler,
                                  images.to(ctx.device, non_blocking=True),
                                  labels.to(ctx.device, non_blocking=True), recipe,
                                  ctx.world_size)
                loss = distributed.all_reduce_sum(loss.float().clone(), ctx) / ctx.world_size
                loss = float(loss)
                if not math.isfinite(loss):
                    raise RegsegError(f'the loss became {loss} at iteration {run.iteration + 1}:'
                                      f' lower --lr (now {recipe.lr}) or check the labels')
                run.iteration += 1
                run.history.append({'iteration': run.iteration, 'epoch': epoch,
                                    'loss': round(loss, 6), 'lr': lr})
                bar.postfix = f'loss {loss:.4f}, lr {lr:.3g}'
                bar.update(recipe.batch_size)
                done = run.iteration == end
                if run.iteration % eval_interval == 0 or run.iteration == total:
                    _evaluate(run, model, val_pairs, layout, ctx, recipe, bar)
                    _save(run, model, optimizer, scaler, ctx, output, root, layout, best=True)
                elif done:
                    _save(run, model, optimizer, scaler, ctx, output, root, layout, best=False)
                if done:
                    break
    last = run.evals[-1] if run.evals else {}
    return {'iterations': run.iteration, 'total_iterations': total,
            'best_miou': run.best_miou if run.evals else None, 'last_eval': last,
            'output': str(output), 'images_per_second': round(bar.rate, 3),
            'history': run.history}


def _evaluate(run, model, val_pairs, layout, ctx, recipe, bar):
    result = evaluate_model(model, val_pairs, layout, run.label_set, ctx, recipe)
    entry = {'iteration': run.iteration, 'miou': result['miou'],
             'pixel_accuracy': result['pixel_accuracy'],
             'iou': [None if math.isnan(v) else v for v in result['iou']]}
    run.evals.append(entry)
    if ctx.main:
        bar.write(f'iteration {run.iteration}/{run.total}: val mIoU {100 * result["miou"]:.2f} %'
                  f', pixel accuracy {100 * result["pixel_accuracy"]:.2f} %')


def _save(run, model, optimizer, scaler, ctx, output, root, layout, best):
    if ctx.main:
        net = distributed.unwrap(model)
        meta = run.meta(str(root), layout)
        state = {'model': net.state_dict(), 'optimizer': optimizer.state_dict(),
                 'scaler': scaler.state_dict(), 'epoch': run.iteration // run.per_epoch,
                 'best_mIU': run.best_miou, META_KEY: meta}
        miou = run.evals[-1]['miou'] if best and run.evals else None
        if miou is not None and not math.isnan(miou) and miou > run.best_miou:
            run.best_miou = miou
            meta['best_miou'] = miou
            state['best_mIU'] = miou
            save_checkpoint(output / BEST, {'model': state['model'], 'epoch': state['epoch'],
                                            'best_mIU': miou, META_KEY: meta})
        save_checkpoint(output / LAST, state)
        history = {'history': run.history, 'evals': run.evals, 'best_miou': run.best_miou}
        write_atomic(output / HISTORY, (json.dumps(history, indent=1) + '\n').encode())
    else:
        miou = run.evals[-1]['miou'] if best and run.evals else None
        if miou is not None and not math.isnan(miou) and miou > run.best_miou:
            run.best_miou = miou
    distributed.barrier(ctx)
