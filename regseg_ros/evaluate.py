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

:func:`confusion_matrix`, :func:`scores` and :func:`evaluate` are plain numpy and take any
``predict(rgb) -> labels`` callable; only :func:`main` loads a network.

Dataset layouts (``--layout auto`` picks by the folders present):

* cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (made by cityscapesscripts'
  ``createTrainIdLabelImgs``); default split ``val``, label set cityscapes.
* camvid (SegNet's CamVid layout): ``<split>/*.png`` with ``<split>annot/*.png`` of the same name,
  holding class ids 0-10 (11 = unlabelled, ignored); default split ``test`` (the split RegSeg
  reports), label set camvid.
"""

import argparse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import json
import math
from pathlib import Path
import sys
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from regseg_ros.cli import add_model_arguments, ArgumentParser, build_segmenter, format_size
from regseg_ros.errors import RegsegError
from regseg_ros.labels import get_label_set
from regseg_ros.progress import Progress

LAYOUTS = ('cityscapes', 'camvid')
DEFAULT_SPLIT = {'cityscapes': 'val', 'camvid': 'test'}
DEFAULT_LABEL_SET = {'cityscapes': 'cityscapes', 'camvid': 'camvid'}
CITYSCAPES_SHORT_SIDE = 1024     # released evaluation: short side 1024 (1024x2048 frames)
CAMVID_SIZE = (720, 960)         # RegSeg's CamVid resolution
MEAN_RULE = ('mean over the classes present in the ground truth or the predictions; a class '
             'absent from both has no IoU (null) and is left out')

Pair = Tuple[Path, Path]


# -- metric ----------------------------------------------------------------------------------

def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """
    Count (ground truth, prediction) pairs over the pixels whose target is a class id.

    Returns an int64 ``(num_classes, num_classes)`` matrix, rows indexed by the ground truth and
    columns by the prediction. Pixels with ``target`` outside ``[0, num_classes)`` (255) are
    ignored; a prediction outside that range on a counted pixel raises RegsegError.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise RegsegError(f'prediction shape {pred.shape} differs from label shape '
                          f'{target.shape}: predict at the label resolution')
    t = target.astype(np.int64, copy=False)
    mask = (t >= 0) & (t < num_classes)
    p = pred[mask].astype(np.int64, copy=False)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        bad = p[(p < 0) | (p >= num_classes)][0]
        raise RegsegError(f'prediction holds class id {int(bad)} on a labelled pixel, outside '
                          f'[0, {num_classes}): the model and label set disagree')
    counts = np.bincount(t[mask] * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def scores(confusion: np.ndarray) -> Dict[str, object]:
    """
    Compute per-class IoU and accuracy, mIoU, pixel accuracy and mean class accuracy.

    Values are fractions in [0, 1]; NaN marks a class with no IoU (absent from ground truth and
    prediction) or no accuracy (absent from the ground truth). Means skip NaN.
    """
    conf = np.asarray(confusion, dtype=np.float64)
    diag, gt, pred = np.diag(conf), conf.sum(1), conf.sum(0)
    union = gt + pred - diag
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, diag / union, math.nan)
        acc = np.where(gt > 0, diag / gt, math.nan)
    total = conf.sum()
    return {
        'miou': _nanmean(iou),
        'pixel_accuracy': float(diag.sum() / total) if total else math.nan,
        'mean_accuracy': _nanmean(acc),
        'classes_in_mean': int((~np.isnan(iou)).sum()),
        'pixels': int(total),
        'iou': iou.tolist(),
        'accuracy': acc.tolist(),
        'gt_pixels': [int(v) for v in gt],
        'pred_pixels': [int(v) for v in pred],
    }


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


def _camvid(root: Path, split: str) -> List[Pair]:
    images = sorted((root / split).glob('*.png'))
    if not images:
        raise RegsegError(f'no images match {root}/{split}/*.png: check DATASET_DIR and --split')
    pairs = [(image, root / f'{split}annot' / image.name) for image in images]
    missing = [label for _, label in pairs if not label.exists()]
    if missing:
        raise RegsegError(f'{len(missing)} of {len(images)} images have no label file, e.g. '
                          f'{str(missing[0])!r}: the CamVid layout pairs <split>/NAME.png with '
                          '<split>annot/NAME.png')
    return pairs


def find_samples(root, layout: str = 'auto',
                 split: Optional[str] = None) -> Tuple[str, str, List[Pair]]:
    """Return ``(layout, split, [(image, label), ...])`` for a dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise RegsegError(f'dataset folder {str(root)!r} does not exist')
    if layout == 'auto':
        if (root / 'leftImg8bit').is_dir():
            layout = 'cityscapes'
        elif any(p.is_dir() and (root / f'{p.name}annot').is_dir() for p in root.iterdir()):
            layout = 'camvid'
        else:
            raise RegsegError(
                f'cannot tell the layout of {str(root)!r}: expected leftImg8bit/ and gtFine/ '
                '(cityscapes) or <split>/ with <split>annot/ (camvid); pass --layout')
    if layout not in LAYOUTS:
        raise RegsegError(f'layout {layout!r} is not one of {list(LAYOUTS)}')
    split = split or DEFAULT_SPLIT[layout]
    pairs = _cityscapes(root, split) if layout == 'cityscapes' else _camvid(root, split)
    return layout, split, pairs


def load_pair(pair: Pair) -> Tuple[np.ndarray, np.ndarray]:
    """Read an image as RGB uint8 and its label image as (H, W) class ids."""
    image, label = pair
    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RegsegError(f'cannot read image {str(image)!r}: missing, unreadable or not an '
                          'image')
    target = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    if target is None:
        raise RegsegError(f'cannot read label image {str(label)!r}')
    if target.ndim != 2:
        raise RegsegError(
            f'label image {str(label)!r} has {target.shape[2]} channels: use single-channel '
            'class-id images (*_labelTrainIds.png, SegNet annot), not colour-coded labels')
    return np.ascontiguousarray(bgr[..., ::-1]), target


def iter_samples(pairs: Sequence[Pair], workers: int = 2,
                 ahead: int = 4) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield ``load_pair`` of each pair in order, reading the next ones in background threads."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='evaluate-read') as pool:
        todo = iter(pairs)
        futures = deque(pool.submit(load_pair, p) for _, p in zip(range(ahead), todo))
        while futures:
            future = futures.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                futures.append(pool.submit(load_pair, nxt))
            yield future.result()


def default_network_size(layout: str, image_shape: Sequence[int]) -> Tuple[int, int]:
    """Return the released evaluation size: short side 1024 (cityscapes), 720x960 (camvid)."""
    if layout == 'camvid':
        return CAMVID_SIZE
    height, width = image_shape[:2]
    scale = CITYSCAPES_SHORT_SIDE / min(height, width)
    return int(round(height * scale)), int(round(width * scale))


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

def make_parser() -> argparse.ArgumentParser:
    """Build the ``evaluate`` argument parser."""
    parser = ArgumentParser(
        prog='evaluate',
        description='Evaluate RegSeg on a labelled dataset (Cityscapes or SegNet CamVid layout): '
        'per-class IoU, mIoU and pixel accuracy over pixels with 0 <= label < num_classes, '
        'single scale, predictions compared at label resolution. Writes a JSON report.')
    parser.add_argument('dataset', metavar='DATASET_DIR', help='dataset root folder')
    parser.add_argument('--layout', default='auto', choices=('auto',) + LAYOUTS,
                        help='dataset layout (default: detected)')
    parser.add_argument('--split', default=None,
                        help='split to evaluate (default: val for cityscapes, test for camvid)')
    parser.add_argument('--limit', type=int, default=None, metavar='N',
                        help='evaluate only the first N images (a quick check)')
    parser.add_argument('--report', default=None, metavar='PATH',
                        help='JSON report path (default: DATASET_DIR/regseg_eval_<layout>_'
                        '<split>.json)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    add_model_arguments(parser, 'the released evaluation size: short side 1024 for '
                        'cityscapes (1024x2048), 720x960 for camvid',
                        default_label_set='that of the layout')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``evaluate``; return 0 on success, 1 on any error (printed to stderr)."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    def log(message):
        sys.stderr.write(f'evaluate: {message}\n')

    try:
        if args.limit is not None and args.limit < 1:
            raise RegsegError(f'--limit {args.limit} must be at least 1')
        layout, split, pairs = find_samples(args.dataset, args.layout, args.split)
        pairs = pairs[:args.limit] if args.limit else pairs
        label_set = get_label_set(args.label_set or DEFAULT_LABEL_SET[layout])
        report = Path(args.report) if args.report else (
            Path(args.dataset) / f'regseg_eval_{layout}_{split}.json')
        first_rgb, _ = load_pair(pairs[0])
        size = args.network_size or default_network_size(layout, first_rgb.shape)
        log(f'{len(pairs)} {layout} {split} images, label set {label_set.name}, network input '
            f'{format_size(size)}')
        segmenter = build_segmenter(args, label_set.name, size, log=log)

        def predict(rgb):
            return segmenter.segment([rgb], ('labels',))[0]['labels']

        bar = Progress(total=len(pairs), desc='evaluate', unit='images',
                       enabled=not args.no_progress)
        with bar:
            confusion = evaluate(iter_samples(pairs), predict, label_set.num_classes, bar)
        seconds = bar.elapsed
        result = scores(confusion)
        if not result['pixels']:
            raise RegsegError(f'no labelled pixels in {len(pairs)} label images (all outside '
                              f'[0, {label_set.num_classes})): wrong label files or label set?')
        info = segmenter.backend.describe()
        data = build_report(
            result, confusion, label_set.classes, dataset=str(Path(args.dataset).resolve()),
            layout=layout, split=split, images=len(pairs), label_set=label_set.name,
            num_classes=label_set.num_classes, weights=args.weights or None,
            untrained=not args.weights, network_size=list(size), backend=info,
            seconds=round(seconds, 3), images_per_second=round(len(pairs) / seconds, 3))
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(data, indent=2) + '\n')
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
    print(f'{len(pairs)} images in {seconds:.1f} s ({len(pairs) / seconds:.2f} images/s), '
          f'network input {format_size(size)}; report: {report}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
