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
Measure a RegSeg checkpoint on a labelled dataset: per-class IoU, mIoU, pixel accuracy.

The metric follows the RegSeg paper's evaluation (see REGSEG.md): one confusion matrix summed over
every pixel of every image whose label is a class id (``0 <= target < num_classes``; 255 and any
other id are ignored), then per class ``IoU = diag / (row + col - diag)`` (rows: ground truth,
columns: prediction). The mean runs over every class of the label set, except that a class that
is absent from both the ground truth and the predictions has no IoU (0 / 0): it is reported as
``null`` and left out of the mean. On the full Cityscapes and CamVid evaluation splits every class
is present, so this is the paper's "mean over all classes". A class that is predicted but absent
from the ground truth scores IoU 0 and counts.

Predictions follow the authors' protocol: the network's logits at the network input size are
resized bilinearly (align_corners=False) to the label size and the argmax is taken there
(:meth:`Backend.infer_protocol`). The live node takes the argmax at the network size and resizes
the labels, which is faster and differs on class boundaries when the sizes differ.

:func:`confusion_matrix`, :func:`scores` and :func:`evaluate` are plain numpy and take any
``predict(rgb) -> labels`` callable; :func:`evaluate_pairs` takes ``predict(rgb, (h, w))``;
only :func:`main` loads a network.

Dataset layouts (``--layout auto`` picks by the folders present):

* cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (made by cityscapesscripts'
  ``createTrainIdLabelImgs``); default split ``val``, label set cityscapes.
* camvid (the authors' CamVid, the 720x960 release): ``<split>/NAME.png`` with colour-coded
  ``<split>_labels/NAME_L.png``; the 11 classes' CamVid colours map to the label set's ids, every
  other colour is ignored; default split ``test`` (the split RegSeg reports), label set camvid.
* camvid_segnet (SegNet's CamVid, 360x480): ``<split>/NAME.png`` with ``<split>annot/NAME.png``
  holding SegNet's ids (Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car,
  Pedestrian, Bicyclist; 11 = unlabelled, ignored), remapped to the label set's order; default
  split ``test``, label set camvid.
* generic (the ``train`` tool's own layout): ``classes.yaml`` with ``images/<split>/NAME.png|jpg``
  and ``labels/<split>/NAME.png`` (class ids in the YAML's order, 255 = ignore); default split
  ``val``, the label set of the checkpoint (written by ``train``) or of ``classes.yaml``.
"""

import argparse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import json
import math
import os
from pathlib import Path
import sys
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.files import writable_dir, write_atomic
from regseg_ros.core.imaging import png_size
from regseg_ros.core.labels import (CAMVID, camvid_segnet_lut, CAMVID_SEGNET_UNLABELLED,
                                    get_label_set, IGNORE_ID, LABEL_SETS, LabelSet)
from regseg_ros.core.metrics import confusion_matrix, MEAN_RULE, scores
from regseg_ros.tools.cli import add_model_arguments, ArgumentParser, build_segmenter, format_size
from regseg_ros.tools.progress import Progress

LAYOUTS = ('cityscapes', 'camvid', 'camvid_segnet', 'generic')
DEFAULT_SPLIT = {'cityscapes': 'val', 'camvid': 'test', 'camvid_segnet': 'test', 'generic': 'val'}
DEFAULT_LABEL_SET = {'cityscapes': 'cityscapes', 'camvid': 'camvid', 'camvid_segnet': 'camvid'}
LABEL_FORMAT = {
    'cityscapes': 'cityscapes trainIds (*_gtFine_labelTrainIds.png)',
    'camvid': "colour-coded CamVid labels (*_L.png), the 11 classes' colours, others ignored",
    'camvid_segnet': "SegNet's CamVid ids (<split>annot/), remapped to the label set's order",
    'generic': 'class ids in the order of classes.yaml (labels/<split>/NAME.png, 255 = ignore)',
}
SIZE_LIMITS = (32, 8192)         # network input sides, as --network-size accepts
PROTOCOL = ('logits at the network input size resized bilinearly (align_corners=False) to the '
            "label size, argmax there (the RegSeg authors' evaluation)")

Pair = Tuple[Path, Path]


# -- metric ----------------------------------------------------------------------------------

def evaluate(samples: Iterable[Tuple[np.ndarray, np.ndarray]],
             predict: Callable[[np.ndarray], np.ndarray], num_classes: int,
             progress: Optional[Progress] = None) -> np.ndarray:
    """
    Sum the confusion matrix of ``predict`` over ``(rgb, target)`` samples.

    A prediction of another size than its label is resized to the label (nearest neighbour), so
    the comparison is always at label resolution.
    """
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for rgb, target in samples:
        pred = np.asarray(predict(rgb))
        if pred.shape != target.shape:
            if pred.ndim != 2:
                raise RegsegError(f'predict returned shape {pred.shape}: return (H, W) class ids')
            pred = cv2.resize(pred.astype(np.int32), (target.shape[1], target.shape[0]),
                              interpolation=cv2.INTER_NEAREST)
        confusion += confusion_matrix(pred, target, num_classes)
        if progress is not None:
            progress.update()
    return confusion


# -- datasets --------------------------------------------------------------------------------

def _cityscapes(root: Path, split: str) -> List[Pair]:
    images = sorted((root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))
    if not images:
        raise RegsegError(f'no images match {root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png: '
                          'check DATASET_DIR and --split')
    pairs, missing = [], []
    for image in images:
        stem = image.name[:-len('_leftImg8bit.png')]
        label = root / 'gtFine' / split / image.parent.name / f'{stem}_gtFine_labelTrainIds.png'
        (pairs if label.exists() else missing).append((image, label))
    if missing:
        raise RegsegError(
            f'{len(missing)} of {len(images)} images have no label file, e.g. '
            f'{str(missing[0][1])!r}: make the *_gtFine_labelTrainIds.png files with '
            'cityscapesscripts (csCreateTrainIdLabelImgs)')
    return pairs


def _camvid(root: Path, split: str, layout: str) -> List[Pair]:
    images = sorted((root / split).glob('*.png'))
    if not images:
        raise RegsegError(f'no images match {root}/{split}/*.png: check DATASET_DIR and --split')
    if layout == 'camvid':
        pairs = [(image, root / f'{split}_labels' / f'{image.stem}_L.png') for image in images]
        rule = "the authors' CamVid layout pairs <split>/NAME.png with <split>_labels/NAME_L.png"
    else:
        pairs = [(image, root / f'{split}annot' / image.name) for image in images]
        rule = "SegNet's CamVid layout pairs <split>/NAME.png with <split>annot/NAME.png"
    missing = [label for _, label in pairs if not label.exists()]
    if missing:
        raise RegsegError(f'{len(missing)} of {len(images)} images have no label file, e.g. '
                          f'{str(missing[0])!r}: {rule}')
    return pairs


def detect_layout(root: Path) -> str:
    """Tell the layout of a dataset folder from the folders present."""
    from regseg_ros.train.datasets import CLASSES_FILE
    if (root / CLASSES_FILE).is_file():
        return 'generic'
    if (root / 'leftImg8bit').is_dir():
        return 'cityscapes'
    folders = [p.name for p in root.iterdir() if p.is_dir()]
    if any(f'{name}_labels' in folders for name in folders):
        return 'camvid'
    if any(f'{name}annot' in folders for name in folders):
        return 'camvid_segnet'
    raise RegsegError(
        f'cannot tell the layout of {str(root)!r}: expected leftImg8bit/ and gtFine/ '
        "(cityscapes), <split>/ with <split>_labels/ (camvid, the authors' layout) or <split>/ "
        "with <split>annot/ (camvid_segnet, SegNet's); pass --layout")


def find_samples(root, layout: str = 'auto',
                 split: Optional[str] = None) -> Tuple[str, str, List[Pair]]:
    """Return ``(layout, split, [(image, label), ...])`` for a dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise RegsegError(f'dataset folder {str(root)!r} does not exist')
    if layout == 'auto':
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise RegsegError(f'layout {layout!r} is not one of {list(LAYOUTS)}')
    split = split or DEFAULT_SPLIT[layout]
    if layout == 'generic':
        from regseg_ros.train.datasets import find_pairs
        pairs = find_pairs(root, layout, split)
    elif layout == 'cityscapes':
        pairs = _cityscapes(root, split)
    else:
        pairs = _camvid(root, split, layout)
    return layout, split, pairs


def prediction_name(layout: str, image: Path) -> str:
    """Return the name predictions of ``image`` are saved under (Cityscapes: city_seq_frame)."""
    name = Path(image).name
    if layout == 'cityscapes' and name.endswith('_leftImg8bit.png'):
        return name[:-len('_leftImg8bit.png')]
    return Path(name).stem


def _bad_ids(raw: np.ndarray, allowed: np.ndarray, path: Path, rule: str) -> None:
    counts = np.bincount(raw.ravel(), minlength=256)
    bad = np.flatnonzero((counts > 0) & ~allowed)
    if bad.size:
        raise RegsegError(
            f'label image {str(path)!r} holds id {int(bad[0])} ({int(counts[bad[0]])} pixels)'
            f'{f" and {bad.size - 1} other unexpected ids" if bad.size > 1 else ""}: {rule}')


def _allowed(ids: Iterable[int]) -> np.ndarray:
    allowed = np.zeros(256, bool)
    allowed[list(ids)] = True
    return allowed


_CITYSCAPES_IDS = _allowed(list(range(19)) + [IGNORE_ID])
_SEGNET_IDS = _allowed(range(CAMVID_SEGNET_UNLABELLED + 1))
_SEGNET_LUT = camvid_segnet_lut()


def read_label(path: Path, layout: str = 'cityscapes') -> np.ndarray:
    """
    Read a label image as (H, W) uint8 ids of the layout's label set (255 = ignore).

    Cityscapes trainIds must be 0-18 or 255; SegNet's CamVid ids must be 0-11 and are remapped
    to the authors' order; the authors' CamVid labels are colour-coded and mapped by colour.
    """
    target = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if target is None:
        raise RegsegError(f'cannot read label image {str(path)!r}')
    if target.dtype != np.uint8:
        raise RegsegError(f'label image {str(path)!r} has {target.dtype} pixels: expected 8-bit')
    if layout == 'camvid':
        if target.ndim != 3:
            raise RegsegError(
                f'label image {str(path)!r} has one channel: the camvid layout (release of the '
                'authors) has colour-coded *_L.png labels; for class-id images in '
                '<split>annot/ use --layout camvid_segnet')
        rgb = cv2.cvtColor(target, cv2.COLOR_BGRA2RGB if target.shape[2] == 4
                           else cv2.COLOR_BGR2RGB)
        return CAMVID.ids_from_colors(rgb)
    if target.ndim != 2:
        raise RegsegError(
            f'label image {str(path)!r} has {target.shape[2]} channels: use single-channel '
            'class-id images (*_labelTrainIds.png, SegNet annot); colour-coded CamVid labels '
            '(*_L.png in <split>_labels/) are --layout camvid')
    if layout == 'generic':
        return target  # ids >= the class count raise in generic_label_set's check
    if layout == 'camvid_segnet':
        _bad_ids(target, _SEGNET_IDS, path,
                 "SegNet's CamVid ids are 0-10 and 11 (unlabelled): wrong label files?")
        return _SEGNET_LUT[target]
    _bad_ids(target, _CITYSCAPES_IDS, path,
             'Cityscapes trainIds are 0-18 and 255 (ignore): use the *_gtFine_labelTrainIds.png '
             'files of cityscapesscripts (csCreateTrainIdLabelImgs), not *_labelIds.png')
    return target


def load_pair(pair: Pair, layout: str = 'cityscapes') -> Tuple[np.ndarray, np.ndarray]:
    """Read an image as RGB uint8 and its label image as (H, W) class ids of the label set."""
    image, label = pair
    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RegsegError(f'cannot read image {str(image)!r}: missing, unreadable or not an '
                          'image')
    return np.ascontiguousarray(bgr[..., ::-1]), read_label(label, layout)


def _iter_loaded(pairs: Sequence[Pair], layout: str, workers: int,
                 ahead: int) -> Iterator[Tuple[Pair, np.ndarray, np.ndarray]]:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='evaluate-read') as pool:
        todo = iter(pairs)
        futures = deque((p, pool.submit(load_pair, p, layout))
                        for _, p in zip(range(ahead), todo))
        while futures:
            pair, future = futures.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                futures.append((nxt, pool.submit(load_pair, nxt, layout)))
            yield (pair,) + future.result()


def iter_samples(pairs: Sequence[Pair], workers: int = 2, ahead: int = 4,
                 layout: str = 'cityscapes') -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield ``load_pair`` of each pair in order, reading the next ones in background threads."""
    for _pair, rgb, target in _iter_loaded(pairs, layout, workers, ahead):
        yield rgb, target


def size_mismatch(pair: Pair, image_size: Sequence[int], label_size: Sequence[int]) -> str:
    """Describe an image and label of different sizes (sizes written WxH)."""
    return (f'label {str(pair[1])!r} is {format_size(label_size)} but its image '
            f'{str(pair[0])!r} is {format_size(image_size)}')


def header_sizes(pair: Pair) -> Tuple[Optional[Tuple[int, int]], Optional[Tuple[int, int]]]:
    """Return the (height, width) of a pair's image and label from their PNG headers (or None)."""
    sizes = []
    for path in pair:
        try:
            with open(path, 'rb') as f:
                sizes.append(png_size(f.read(24)))
        except OSError:
            sizes.append(None)
    return sizes[0], sizes[1]


def native_network_size(image_size: Sequence[int]) -> Tuple[int, int]:
    """
    Return the network input (height, width) for images of ``image_size``: their own size.

    A side outside [32, 8192] is scaled into it, keeping the aspect ratio as far as possible.
    """
    height, width = (int(v) for v in image_size[:2])
    low, high = SIZE_LIMITS
    scale = min(1.0, high / max(height, width))
    scale = max(scale, low / min(height, width))
    if scale == 1.0:
        return height, width

    def fit(v):
        return min(high, max(low, int(round(v * scale))))
    return fit(height), fit(width)


Predictor = Callable[[np.ndarray, Tuple[int, int]], np.ndarray]


def evaluate_pairs(pairs: Sequence[Pair], predict: Predictor,
                   num_classes: int, layout: str = 'cityscapes',
                   progress: Optional[Progress] = None,
                   save: Optional[Callable[[Pair, np.ndarray], None]] = None,
                   skip_mismatched: bool = False, workers: int = 2
                   ) -> Tuple[np.ndarray, int, List[str]]:
    """
    Sum the confusion matrix of ``predict(rgb, label_size)`` over a dataset's pairs.

    ``predict`` returns class ids at the label size it is given. An image whose label has
    another size raises RegsegError naming both, or with ``skip_mismatched`` is skipped.
    Returns ``(confusion, images scored, skip messages)``.
    """
    confusion = np.zeros((num_classes, num_classes), np.int64)
    scored, skipped = 0, []
    for pair, rgb, target in _iter_loaded(pairs, layout, workers, 4):
        if rgb.shape[:2] != target.shape[:2]:
            message = size_mismatch(pair, rgb.shape, target.shape)
            if not skip_mismatched:
                raise RegsegError(f'{message}: a label must be as large as its image; '
                                  '--skip-mismatched skips such pairs')
            skipped.append(message)
        else:
            pred = np.asarray(predict(rgb, target.shape[:2]))
            confusion += confusion_matrix(pred, target, num_classes)
            scored += 1
            if save is not None:
                save(pair, pred)
        if progress is not None:
            progress.update()
    return confusion, scored, skipped


# -- outputs ---------------------------------------------------------------------------------

def default_report(layout: str, split: str) -> Path:
    """Return ./regseg_eval_<layout>_<split>.json, or the first free _2, _3 ... name after it."""
    first = Path(f'regseg_eval_{layout}_{split}.json')
    path, n = first, 1
    while path.exists() or path.is_symlink():   # an earlier run's report is never replaced
        n += 1
        path = first.with_name(f'{first.stem}_{n}{first.suffix}')
    return path


def check_report_path(path: Path) -> None:
    """Fail now, not after the run, when the report cannot be written at ``path``."""
    fix = 'pass --report PATH somewhere writable'
    if path.is_dir():
        raise RegsegError(f'report {str(path)!r} is a folder: {fix}, e.g. {path}/report.json')
    if path.exists() and not os.access(path, os.W_OK):
        raise RegsegError(f'report {str(path)!r} exists and is read-only: {fix}')
    writable_dir(path.parent, f'report {str(path)!r}', fix)


class PredictionWriter:
    """
    Save each prediction as ``DIR/labelTrainIds/<name>_labelTrainIds.png`` (class ids).

    For Cityscapes also ``DIR/labelIds/<name>_labelIds.png`` (cityscapesscripts' ids), the
    format of cityscapesscripts' evaluation (``CITYSCAPES_RESULTS=DIR/labelIds``) and of the
    benchmark server. Each file is written atomically.
    """

    def __init__(self, folder, layout: str, label_set: LabelSet):
        """Create the folders and check they can be written (before the run)."""
        self.folder = Path(folder)
        self.layout = layout
        self.kinds = [('labelTrainIds', None)]
        if label_set.label_ids is not None and layout == 'cityscapes':
            self.kinds.append(('labelIds', label_set.label_id_lut()))
        for kind, _lut in self.kinds:
            writable_dir(self.folder / kind, f'predictions in {str(self.folder)!r}',
                         'pass --save-predictions DIR somewhere writable')
        self.count = 0

    def __call__(self, pair: Pair, pred: np.ndarray) -> None:
        """Write the prediction of ``pair``'s image."""
        name = prediction_name(self.layout, pair[0])
        for kind, lut in self.kinds:
            ids = pred.astype(np.uint8) if lut is None else lut[pred]
            path = self.folder / kind / f'{name}_{kind}.png'
            ok, png = cv2.imencode('.png', ids)
            try:
                if not ok:
                    raise OSError(0, 'PNG encoding failed')
                write_atomic(path, png.tobytes())
            except OSError as exc:
                raise RegsegError(f'cannot write prediction {str(path)!r} '
                                  f'({exc.strerror or exc}): free space or pass '
                                  '--save-predictions DIR elsewhere') from None
        self.count += 1


# -- report ----------------------------------------------------------------------------------

def _finite(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def format_table(result: Dict[str, object], class_names: Sequence[str]) -> str:
    """Render per-class IoU / accuracy and the summary as a text table (percent)."""
    def pct(v):
        return '   n/a' if v is None or math.isnan(v) else f'{100 * v:6.2f}'
    width = max(12, max(len(n) for n in class_names))
    lines = [f'{"class":<{width}}  IoU %   acc %   GT pixels   predicted']
    for i, name in enumerate(class_names):
        lines.append(f'{name:<{width}} {pct(result["iou"][i])}  {pct(result["accuracy"][i])}  '
                     f'{result["gt_pixels"][i]:>10}  {result["pred_pixels"][i]:>10}')
    lines.append(f'mIoU {pct(result["miou"]).strip()} % over {result["classes_in_mean"]} of '
                 f'{len(class_names)} classes, pixel accuracy '
                 f'{pct(result["pixel_accuracy"]).strip()} %, mean class accuracy '
                 f'{pct(result["mean_accuracy"]).strip()} %')
    return '\n'.join(lines)


def build_report(result: Dict[str, object], confusion: np.ndarray, class_names: Sequence[str],
                 **info) -> Dict[str, object]:
    """Assemble the JSON report: settings, summary, per-class table, confusion matrix."""
    per_class = [{'id': i, 'name': name, 'iou': _finite(result['iou'][i]),
                  'accuracy': _finite(result['accuracy'][i]),
                  'gt_pixels': result['gt_pixels'][i], 'pred_pixels': result['pred_pixels'][i]}
                 for i, name in enumerate(class_names)]
    return {
        **info,
        'miou': _finite(result['miou']),
        'pixel_accuracy': _finite(result['pixel_accuracy']),
        'mean_accuracy': _finite(result['mean_accuracy']),
        'classes_in_mean': result['classes_in_mean'],
        'mean_over': MEAN_RULE,
        'pixels': result['pixels'],
        'per_class': per_class,
        'confusion_matrix': np.asarray(confusion).tolist(),
        'confusion_matrix_axes': 'rows: ground truth, columns: prediction',
    }


# -- command line ----------------------------------------------------------------------------

def checkpoint_classes(weights: str, cache_dir: Optional[str] = None) -> Optional[int]:
    """Return the class count of a checkpoint's classifier (None if it has none)."""
    from regseg_ros.model.weights import CLASSIFIER_KEYS, read_state_dict, resolve_weights
    state = read_state_dict(resolve_weights(weights, cache_dir))
    weight = state.get(CLASSIFIER_KEYS[0])
    return None if weight is None or weight.ndim < 1 else int(weight.shape[0])


def generic_label_set(root: Path, pairs: Sequence[Pair], args: argparse.Namespace) -> LabelSet:
    """
    Return the label set of a generic dataset: ``classes.yaml``, checked with the checkpoint's.

    A checkpoint written by ``train`` carries its label set; its class names must be those of
    the dataset (same order). Every label is checked for ids outside the classes.
    """
    from regseg_ros.model.weights import checkpoint_label_set
    from regseg_ros.train.datasets import CLASSES_FILE, check_labels, layout_label_set
    if args.label_set:
        raise RegsegError(f'--label-set {args.label_set}: the generic layout takes its classes '
                          f'from {CLASSES_FILE} (and the checkpoint); leave --label-set out')
    truth = layout_label_set(root, 'generic')
    carried = checkpoint_label_set(args.weights, args.cache_dir) if args.weights else None
    if carried is not None and carried.classes != truth.classes:
        raise RegsegError(f'checkpoint {args.weights!r} predicts classes {list(carried.classes)}'
                          f' but {str(root / CLASSES_FILE)!r} lists {list(truth.classes)}: '
                          'evaluate with a checkpoint trained on these classes')
    if carried is None and args.weights:
        count = checkpoint_classes(args.weights, args.cache_dir)
        if count is not None and count != truth.num_classes:
            raise RegsegError(f'checkpoint {args.weights!r} predicts {count} classes but '
                              f'{str(root / CLASSES_FILE)!r} lists {truth.num_classes}: '
                              'evaluate with a checkpoint trained on these classes')
    check_labels(pairs, 'generic', truth)
    return carried or truth


def check_classes(layout: str, label_set: LabelSet, explicit: bool,
                  ckpt_classes: Optional[int] = None, weights: str = '') -> None:
    """
    Raise one RegsegError unless the ground truth, the label set and the checkpoint agree.

    The layout fixes the ground truth's ids (its label set); the checkpoint's classifier must
    have as many outputs as the label set has classes.
    """
    truth = get_label_set(DEFAULT_LABEL_SET[layout])
    problems = []
    if label_set.name != truth.name:
        problems.append(
            f'the {layout} ground truth holds {truth.name} ids ({truth.num_classes} classes)')
    if ckpt_classes is not None and ckpt_classes != label_set.num_classes:
        fits = [s.name for s in LABEL_SETS.values() if s.num_classes == ckpt_classes]
        problems.append(f'checkpoint {weights!r} predicts {ckpt_classes} classes'
                        + (f' ({", ".join(fits)})' if fits else ''))
    if not problems:
        return
    given = '--label-set' if explicit else f'the label set of the {layout} layout'
    if ckpt_classes is not None and ckpt_classes != truth.num_classes:
        fix = (f'evaluate this dataset with a checkpoint trained on the {truth.name} classes '
               f'({truth.num_classes}); a checkpoint of other classes must be fine-tuned first')
    else:
        fix = (f'pass --label-set {truth.name} or leave --label-set out')
    raise RegsegError(f'{given} {label_set.name!r} has {label_set.num_classes} classes, but '
                      f'{" and ".join(problems)}: {fix}')


def choose_torch(args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """Resolve ``--backend auto`` to torch (CUDA when visible): evaluate needs the logits."""
    import dataclasses
    from regseg_ros.backends import BackendConfig, resolve_auto
    config = dataclasses.replace(BackendConfig(), device=args.device, precision=args.precision)
    _name, config, line = resolve_auto(
        config, tensorrt_probe=lambda: (False, "evaluate needs the logits TensorRT's engine "
                                        'does not return'))
    args.backend, args.device, args.precision = 'torch', config.device, config.precision
    log(line)


def make_parser() -> argparse.ArgumentParser:
    """Build the ``evaluate`` argument parser."""
    parser = ArgumentParser(
        prog='evaluate',
        description='Evaluate RegSeg on a labelled dataset (Cityscapes, CamVid in the layout of '
        'the authors or of SegNet): per-class IoU, mIoU and pixel accuracy over pixels with '
        '0 <= label < num_classes, single scale; as the authors do, logits are resized '
        'bilinearly to the label size and the argmax is taken there. Writes a JSON report.')
    parser.add_argument('dataset', metavar='DATASET_DIR', help='dataset root folder')
    parser.add_argument('--layout', default='auto', choices=('auto',) + LAYOUTS,
                        help='dataset layout (default: detected)')
    parser.add_argument('--split', default=None,
                        help='split to evaluate (default: val for cityscapes, test for camvid)')
    parser.add_argument('--limit', type=int, default=None, metavar='N',
                        help='evaluate only the first N images (a quick check)')
    parser.add_argument('--report', '--output', dest='report', default=None, metavar='PATH',
                        help='JSON report path, replaced if it exists (default: '
                        './regseg_eval_<layout>_<split>.json, or _2, _3 ... after it: an '
                        'earlier report is kept); checked before the run, written atomically '
                        'at the end')
    parser.add_argument('--save-predictions', default=None, metavar='DIR',
                        help='save each prediction as DIR/labelTrainIds/<name>_labelTrainIds.png'
                        ' and, for cityscapes, DIR/labelIds/<name>_labelIds.png '
                        '(cityscapesscripts ids: CITYSCAPES_RESULTS=DIR/labelIds)')
    parser.add_argument('--skip-mismatched', action='store_true',
                        help='skip (and count) image/label pairs of different sizes instead of '
                        'stopping')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    add_model_arguments(parser, "the images' own size (Cityscapes 2048x1024, the authors' "
                        'CamVid 960x720)', default_label_set='that of the layout')
    return parser


def _scan_sizes(pairs: Sequence[Pair], skip_mismatched: bool
                ) -> Tuple[List[Pair], List[str], List[Tuple[int, int]]]:
    """Check image and label sizes from the PNG headers: pairs to run, skips, image sizes."""
    todo, skipped, sizes = [], [], []
    for pair in pairs:
        image_size, label_size = header_sizes(pair)
        if image_size and label_size and image_size != label_size:
            message = size_mismatch(pair, image_size, label_size)
            if not skip_mismatched:
                raise RegsegError(f'{message}: a label must be as large as its image; '
                                  '--skip-mismatched skips such pairs')
            skipped.append(message)
            continue
        todo.append(pair)
        if image_size:
            sizes.append(image_size)
    return todo, skipped, sizes


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``evaluate``; return 0 on success, 2 on a usage error, 1 on any other error."""
    parser = make_parser()
    args = parser.parse_or_code(argv)
    if isinstance(args, int):
        return args

    def log(message):
        sys.stderr.write(f'evaluate: {message}\n')
        sys.stderr.flush()

    try:
        if args.limit is not None and args.limit < 1:
            raise RegsegError(f'--limit {args.limit} must be at least 1')
        if args.backend == 'tensorrt':
            raise RegsegError('--backend tensorrt is not supported for evaluate (it returns no '
                              "logits for the authors' protocol): use --backend torch")
        if args.backend == 'auto':
            choose_torch(args, log)
        layout, split, pairs = find_samples(args.dataset, args.layout, args.split)
        pairs = pairs[:args.limit] if args.limit else pairs
        if layout == 'generic':
            label_set = generic_label_set(Path(args.dataset), pairs, args)
        else:
            label_set = get_label_set(args.label_set or DEFAULT_LABEL_SET[layout])
            ckpt_classes = (checkpoint_classes(args.weights, args.cache_dir) if args.weights
                            else None)
            check_classes(layout, label_set, bool(args.label_set), ckpt_classes, args.weights)
        report = Path(args.report) if args.report else default_report(layout, split)
        check_report_path(report)
        save = (PredictionWriter(args.save_predictions, layout, label_set)
                if args.save_predictions else None)
        todo, skipped, sizes = _scan_sizes(pairs, args.skip_mismatched)
        if not todo:
            raise RegsegError(f'nothing to score: all {len(pairs)} image/label pairs have '
                              'labels of another size than their images')
        if args.network_size:
            size, size_from = tuple(args.network_size), '--network-size'
        else:
            if not sizes:
                sizes = [load_pair(todo[0], layout)[0].shape[:2]]
            size, size_from = native_network_size(sizes[0]), "the images' size"
            if size != tuple(sizes[0]):
                size_from = (f"the images' size {format_size(sizes[0])} fitted into "
                             f'[{SIZE_LIMITS[0]}, {SIZE_LIMITS[1]}]')
        others = sum(1 for s in sizes if tuple(s) != tuple(sizes[0])) if sizes else 0
        log(f'{len(todo)} {layout} {split} images, label set {label_set.name}, network input '
            f'{format_size(size)} (from {size_from})'
            + (f'; {others} images of another size than {format_size(sizes[0])} are resized '
               'to it' if others else ''))
        segmenter = build_segmenter(args, label_set, size, log=log)
        backend = segmenter.backend
        from regseg_ros.backends.base import Backend
        if type(backend).infer_protocol is Backend.infer_protocol:
            raise RegsegError(f'--backend {args.backend} chose {backend.name}, which is not '
                              "supported for evaluate (it returns no logits for the authors' "
                              'protocol): use --backend torch')

        def predict(rgb, label_size):
            return backend.infer_protocol([rgb], [tuple(label_size)])[0]

        bar = Progress(total=len(todo), desc='evaluate', unit='images',
                       enabled=not args.no_progress)
        with bar:
            confusion, scored, late = evaluate_pairs(
                todo, predict, label_set.num_classes, layout, bar, save, args.skip_mismatched)
        skipped += late
        seconds = bar.elapsed
        if not scored:
            raise RegsegError(f'nothing scored: all {len(pairs)} image/label pairs have labels '
                              'of another size than their images')
        result = scores(confusion)
        if not result['pixels']:
            raise RegsegError(f'no labelled pixels in {scored} label images (all outside '
                              f'[0, {label_set.num_classes})): wrong label files or label set?')
        data = build_report(
            result, confusion, label_set.classes, dataset=str(Path(args.dataset).resolve()),
            layout=layout, label_format=LABEL_FORMAT[layout], split=split, images=scored,
            images_skipped=len(skipped), skipped=skipped, label_set=label_set.name,
            num_classes=label_set.num_classes, weights=args.weights or None,
            untrained=not args.weights, network_size=format_size(size),
            network_size_from=size_from, protocol=PROTOCOL, backend=backend.describe(),
            predictions=str(Path(args.save_predictions).resolve())
            if args.save_predictions else None,
            seconds=round(seconds, 3), images_per_second=round(scored / seconds, 3))
        try:
            write_atomic(report, (json.dumps(data, indent=2) + '\n').encode())
        except OSError as exc:
            raise RegsegError(f'cannot write the report {str(report)!r} ({exc.strerror}): pass '
                              '--report PATH somewhere writable') from None
    except RegsegError as exc:
        sys.stderr.write(f'evaluate: error: {exc}\n')
        return 1
    except KeyboardInterrupt:
        sys.stderr.write('evaluate: interrupted\n')
        return 1
    print(format_table(result, label_set.classes))
    for message in skipped[:5]:
        print(f'skipped: {message}')
    if skipped:
        print(f'{len(skipped)} of {len(pairs)} image/label pairs skipped (label size differs '
              'from that of the image)'
              + (', all listed in the report' if len(skipped) > 5 else ''))
    print(f'{scored} images in {seconds:.1f} s ({scored / seconds:.2f} images/s), '
          f'network input {format_size(size)}; report: {report}'
          + (f'; predictions: {args.save_predictions}' if save else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
