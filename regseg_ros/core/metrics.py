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
Segmentation metrics shared by ``evaluate`` and training: confusion matrix, IoU, mIoU.

The RegSeg paper's evaluation: one confusion matrix summed over every pixel whose label is a
class id (``0 <= target < num_classes``; 255 and any other id are ignored), then per class
``IoU = diag / (row + col - diag)`` (rows: ground truth, columns: prediction). A class absent
from both ground truth and predictions has no IoU (NaN) and is left out of the mean. Plain numpy.
"""

import math
from typing import Dict

import numpy as np
from regseg_ros.core.errors import RegsegError

MEAN_RULE = ('mean over the classes present in the ground truth or the predictions; a class '
             'absent from both has no IoU (null) and is left out')


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
