"""Evaluation metric, dataset layouts and the evaluate command, with exactly known answers."""

import json
import math

import cv2
import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.evaluate import (
    confusion_matrix, evaluate, find_samples, iter_samples, main, scores)
from regseg_ros.labels import CITYSCAPES

IGNORE = 255


def test_hand_computed_confusion_and_scores():
    # 4 classes. Ground truth: 8 px of class 0, 8 px of class 1, 4 ignore pixels.
    target = np.array([[0, 0, 0, 0, IGNORE],
                       [0, 0, 0, 0, IGNORE],
                       [1, 1, 1, 1, IGNORE],
                       [1, 1, 1, 1, IGNORE]], np.uint8)
    pred = target.copy()
    pred[0, 0] = pred[0, 1] = 1     # two class-0 pixels predicted as 1
    pred[3, 3] = 2                  # one class-1 pixel predicted as 2 (absent from the truth)
    pred[:, 4] = 3                  # on ignore pixels: must not count anywhere
    conf = confusion_matrix(pred, target, 4)
    assert conf.tolist() == [[6, 2, 0, 0],
                             [0, 7, 1, 0],
                             [0, 0, 0, 0],
                             [0, 0, 0, 0]]
    s = scores(conf)
    # IoU = diag / (row + col - diag)
    assert s['iou'][0] == pytest.approx(6 / (8 + 6 - 6))      # 0.75
    assert s['iou'][1] == pytest.approx(7 / (8 + 9 - 7))      # 0.70
    assert s['iou'][2] == 0.0       # predicted but absent from the truth: IoU 0, counted
    assert math.isnan(s['iou'][3])  # absent from truth and prediction: no IoU, not counted
    assert s['classes_in_mean'] == 3
    assert s['miou'] == pytest.approx((0.75 + 0.7 + 0.0) / 3)
    assert s['pixel_accuracy'] == pytest.approx(13 / 16)
    assert s['accuracy'][:2] == pytest.approx([6 / 8, 7 / 8])
    assert math.isnan(s['accuracy'][2]) and math.isnan(s['accuracy'][3])
    assert s['mean_accuracy'] == pytest.approx((6 / 8 + 7 / 8) / 2)
    assert s['gt_pixels'] == [8, 8, 0, 0] and s['pred_pixels'] == [6, 9, 1, 0]
    assert s['pixels'] == 16


def test_labels_outside_the_classes_are_ignored():
    # CamVid's 11 (unlabelled) with 11 classes, like 255, is not counted.
    target = np.array([[0, 11, 255, 10]], np.uint8)
    pred = np.array([[0, 5, 7, 10]], np.uint8)
    assert confusion_matrix(pred, target, 11).sum() == 2


def test_bad_predictions_raise():
    target = np.zeros((2, 3), np.uint8)
    with pytest.raises(RegsegError, match=r'prediction shape \(3, 2\) differs from label '
                                          r'shape \(2, 3\)'):
        confusion_matrix(np.zeros((3, 2), np.uint8), target, 19)
    with pytest.raises(RegsegError, match=r'class id 19 on a labelled pixel, outside \[0, 19\)'):
        confusion_matrix(np.full((2, 3), 19, np.uint8), target, 19)


# -- a tiny labelled dataset whose image encodes its labels: red channel = class id --------------

def label_image(seed, h=32, w=64, ignore=True):
    """Make blocks of classes 0 (road), 2 (building), 13 (car) and some ignore pixels."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    lab[:h // 2] = 2
    lab[h // 2:, w // 2:] = 13
    if ignore:
        lab[rng.integers(0, h, 20), rng.integers(0, w, 20)] = IGNORE
    return lab


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def image_for(lab):
    """Return the BGR image to store: red channel = class id, so predict can read it back."""
    rgb = np.zeros(lab.shape + (3,), np.uint8)
    rgb[..., 0] = lab
    rgb[..., 1] = 90
    return rgb[..., ::-1]


def make_cityscapes(root, n=3, size=(32, 64), ignore=True):
    labels = []
    for i in range(n):
        city = 'aachen' if i < 2 else 'bochum'
        stem = f'{city}_{i:06d}_000019'
        lab = label_image(i, *size, ignore=ignore)
        write_png(root / 'leftImg8bit' / 'val' / city / f'{stem}_leftImg8bit.png', image_for(lab))
        write_png(root / 'gtFine' / 'val' / city / f'{stem}_gtFine_labelTrainIds.png', lab)
        labels.append(lab)
    return labels


def oracle(rgb):
    """Stand-in network that returns the ground truth (read back from the red channel)."""
    return rgb[..., 0].copy()


def test_perfect_predictions_give_miou_1(tmp_path):
    labels = make_cityscapes(tmp_path)
    layout, split, pairs = find_samples(tmp_path)
    assert (layout, split, len(pairs)) == ('cityscapes', 'val', 3)
    conf = evaluate(iter_samples(pairs), oracle, 19)
    s = scores(conf)
    assert s['miou'] == 1.0 and s['pixel_accuracy'] == 1.0
    present = {0, 2, 13}
    for c in range(19):
        if c in present:
            assert s['iou'][c] == 1.0
        else:
            assert math.isnan(s['iou'][c])
    assert s['classes_in_mean'] == 3
    counted = sum(int((lab != IGNORE).sum()) for lab in labels)
    assert s['pixels'] == counted  # the ignore pixels are not counted


def test_known_confusion_over_a_dataset(tmp_path):
    labels = make_cityscapes(tmp_path)
    _, _, pairs = find_samples(tmp_path)

    def car_as_road(rgb):
        lab = oracle(rgb)
        lab[lab == 13] = 0
        return lab

    s = scores(evaluate(iter_samples(pairs), car_as_road, 19))
    road = sum(int((lab == 0).sum()) for lab in labels)
    car = sum(int((lab == 13).sum()) for lab in labels)
    building = sum(int((lab == 2).sum()) for lab in labels)
    assert s['iou'][13] == 0.0
    assert s['iou'][0] == pytest.approx(road / (road + car))
    assert s['iou'][2] == 1.0
    assert s['miou'] == pytest.approx((road / (road + car) + 1.0 + 0.0) / 3)
    assert s['pixel_accuracy'] == pytest.approx((road + building) / (road + building + car))


def test_predictions_are_compared_at_label_resolution(tmp_path):
    (label,) = make_cityscapes(tmp_path, n=1, ignore=False)
    _, _, pairs = find_samples(tmp_path)
    sizes = []

    def half_size(rgb):
        sizes.append(rgb.shape[:2])
        return oracle(rgb)[::2, ::2]   # the blocks are even-aligned: nearest upsampling is exact

    conf = evaluate(iter_samples(pairs), half_size, 19)
    assert sizes == [label.shape]
    assert conf.sum() == label.size   # counted at the 32x64 label resolution, not 16x32
    assert scores(conf)['miou'] == 1.0


def test_camvid_layout(tmp_path):
    for name in ('0001TP_006690.png', '0001TP_006720.png'):
        lab = np.full((36, 48), 5, np.uint8)   # Road
        lab[:10] = 2                           # Sky
        lab[-3:] = 11                          # Unlabelled: ignored
        write_png(tmp_path / 'test' / name, image_for(lab))
        write_png(tmp_path / 'testannot' / name, lab)
    (tmp_path / 'train').mkdir()
    (tmp_path / 'trainannot').mkdir()
    layout, split, pairs = find_samples(tmp_path)
    assert (layout, split, len(pairs)) == ('camvid', 'test', 2)
    s = scores(evaluate(iter_samples(pairs), oracle, 11))
    assert s['miou'] == 1.0 and s['classes_in_mean'] == 2
    assert s['pixels'] == 2 * 33 * 48


def test_missing_labels_are_named(tmp_path):
    make_cityscapes(tmp_path, n=2)
    victim = next((tmp_path / 'gtFine').rglob('*.png'))
    victim.unlink()
    with pytest.raises(RegsegError, match='1 of 2 images have no label file'):
        find_samples(tmp_path)
    with pytest.raises(RegsegError, match='cannot tell the layout'):
        find_samples(tmp_path / 'gtFine')


def test_cli_end_to_end_writes_the_report(tmp_path, capsys):
    root = tmp_path / 'cityscapes'
    make_cityscapes(root, n=2, size=(64, 128))
    report = tmp_path / 'out' / 'report.json'
    argv = [str(root), '--allow-untrained', '--network-size', '64x128', '--report', str(report),
            '--no-progress']
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert 'mIoU' in out and 'road' in out
    data = json.loads(report.read_text())
    assert {'dataset', 'layout', 'split', 'images', 'label_set', 'num_classes', 'network_size',
            'backend', 'weights', 'untrained', 'miou', 'pixel_accuracy', 'mean_accuracy',
            'classes_in_mean', 'mean_over', 'pixels', 'per_class', 'confusion_matrix',
            'seconds', 'images_per_second'} <= set(data)
    assert (data['layout'], data['split'], data['images']) == ('cityscapes', 'val', 2)
    assert data['network_size'] == [64, 128] and data['untrained'] is True
    assert [c['name'] for c in data['per_class']] == list(CITYSCAPES.classes)
    assert np.array(data['confusion_matrix']).sum() == data['pixels'] > 0
    assert data['miou'] is None or 0.0 <= data['miou'] <= 1.0

    # default report path: alongside the dataset
    assert main(argv[:-3] + ['--no-progress', '--limit', '1']) == 0
    assert json.loads((root / 'regseg_eval_cityscapes_val.json').read_text())['images'] == 1


@pytest.mark.parametrize('args,message', [
    (['{tmp}/nowhere'], "dataset folder '{tmp}/nowhere' does not exist"),
    (['{tmp}', '--split', 'train'], 'no images match'),
    (['{tmp}', '--network-size', '0x5'], 'must have height and width within [32, 8192]'),
    (['{tmp}', '--label-set', 'mapillary'], "invalid choice: 'mapillary'"),
    (['{tmp}'], 'weights is empty'),
])
def test_cli_errors_exit_1(tmp_path, capsys, args, message):
    make_cityscapes(tmp_path, n=1)
    assert main([a.format(tmp=tmp_path) for a in args] + ['--no-progress']) == 1
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
