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

"""Evaluation metric, dataset layouts and the evaluate command, with exactly known answers."""

import json
import math
import os

import cv2
import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.core.labels import CAMVID, CITYSCAPES
from regseg_ros.tools import evaluate as evaluate_module
from regseg_ros.tools.evaluate import (
    confusion_matrix, evaluate, evaluate_pairs, find_samples, iter_samples, main,
    native_network_size, read_label, scores)

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


def test_missing_labels_are_named(tmp_path):
    make_cityscapes(tmp_path, n=2)
    victim = next((tmp_path / 'gtFine').rglob('*.png'))
    victim.unlink()
    with pytest.raises(RegsegError, match='1 of 2 images have no label file'):
        find_samples(tmp_path)
    with pytest.raises(RegsegError, match='cannot tell the layout'):
        find_samples(tmp_path / 'gtFine')


def test_cli_end_to_end_writes_the_report(tmp_path, capsys, monkeypatch):
    root = tmp_path / 'cityscapes'
    make_cityscapes(root, n=2, size=(64, 128))
    report = tmp_path / 'out' / 'report.json'
    argv = [str(root), '--allow-untrained', '--network-size', '128x64', '--report', str(report),
            '--no-progress']
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert 'mIoU' in out and 'road' in out and 'network input 128x64' in out
    data = json.loads(report.read_text())
    assert {'dataset', 'layout', 'split', 'images', 'label_set', 'num_classes', 'network_size',
            'backend', 'weights', 'untrained', 'miou', 'pixel_accuracy', 'mean_accuracy',
            'classes_in_mean', 'mean_over', 'pixels', 'per_class', 'confusion_matrix',
            'seconds', 'images_per_second', 'protocol', 'images_skipped'} <= set(data)
    assert (data['layout'], data['split'], data['images']) == ('cityscapes', 'val', 2)
    assert data['network_size'] == '128x64' and data['untrained'] is True
    assert [c['name'] for c in data['per_class']] == list(CITYSCAPES.classes)
    assert np.array(data['confusion_matrix']).sum() == data['pixels'] > 0
    assert data['miou'] is None or 0.0 <= data['miou'] <= 1.0
    assert os.listdir(report.parent) == ['report.json']   # no temporary file left behind


# -- issue #14: the authors' protocol, class counts, outputs, sizes -----------------------------

def noise_cityscapes(root, n=1, size=(64, 128), seed=0):
    """Cityscapes layout with noise images (varied network output) and blocky labels."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        stem = f'aachen_{i:06d}_000019'
        write_png(root / 'leftImg8bit' / 'val' / 'aachen' / f'{stem}_leftImg8bit.png',
                  rng.integers(0, 256, size + (3,), dtype=np.uint8))
        write_png(root / 'gtFine' / 'val' / 'aachen' / f'{stem}_gtFine_labelTrainIds.png',
                  label_image(i, *size))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """Save a seeded random 19-class checkpoint whose output varies across the image."""
    import torch
    from regseg_ros.model import build_model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = build_model('exp48_decoder26', 19)
        with torch.no_grad():
            model.decoder.classifier.weight.normal_(0, 1.0)
            model.decoder.classifier.bias.zero_()
    path = tmp_path_factory.mktemp('weights') / 'random19.pth'
    torch.save({'model': model.state_dict(), 'epoch': 0}, path)
    return path


def test_predictions_follow_the_authors_protocol(tmp_path, checkpoint):
    # Network 96x48, labels 128x64: logits -> bilinear to the label size -> argmax, exactly.
    import torch
    from torch.nn import functional as F
    from regseg_ros.backends.base import BackendConfig
    from regseg_ros.backends.torch_backend import TorchBackend
    root = tmp_path / 'cs'
    noise_cityscapes(root, n=2)
    out = tmp_path / 'pred'
    assert main([str(root), '--weights', str(checkpoint), '--network-size', '96x48',
                 '--save-predictions', str(out), '--report', str(tmp_path / 'r.json'),
                 '--no-progress']) == 0
    backend = TorchBackend(BackendConfig(num_classes=19, weights=str(checkpoint),
                                         input_size=(48, 96)))
    backend.load()
    _, _, pairs = find_samples(root)
    differs = 0
    for (image, label), (rgb, target) in zip(pairs, iter_samples(pairs)):
        with torch.inference_mode():
            logits = backend.model(backend._prepare([rgb]))
            reference = F.interpolate(logits, size=target.shape, mode='bilinear',
                                      align_corners=False).argmax(1)[0].numpy()
        name = image.name.replace('_leftImg8bit.png', '_labelTrainIds.png')
        saved = cv2.imread(str(out / 'labelTrainIds' / name), cv2.IMREAD_UNCHANGED)
        assert saved.shape == (64, 128)
        np.testing.assert_array_equal(saved, reference)
        fast = backend.infer([rgb], [target.shape])[0].labels   # the live node's path
        differs += int((fast != reference).sum())
    assert differs > 0   # the protocols differ here, so the test tells them apart
    data = json.loads((tmp_path / 'r.json').read_text())
    assert 'bilinear' in data['protocol'] and data['network_size'] == '96x48'


def test_saved_predictions_have_cityscapes_label_ids(tmp_path, checkpoint):
    root = tmp_path / 'cs'
    noise_cityscapes(root, n=2)
    out = tmp_path / 'pred'
    assert main([str(root), '--weights', str(checkpoint), '--save-predictions', str(out),
                 '--report', str(tmp_path / 'r.json'), '--no-progress']) == 0
    lut = CITYSCAPES.label_id_lut()
    names = sorted(os.listdir(out / 'labelTrainIds'))
    assert names == ['aachen_000000_000019_labelTrainIds.png',
                     'aachen_000001_000019_labelTrainIds.png']
    assert sorted(os.listdir(out / 'labelIds')) == [
        n.replace('TrainIds', 'Ids') for n in names]
    for name in names:
        train_ids = cv2.imread(str(out / 'labelTrainIds' / name), cv2.IMREAD_UNCHANGED)
        ids = cv2.imread(str(out / 'labelIds' / name.replace('TrainIds', 'Ids')),
                         cv2.IMREAD_UNCHANGED)
        assert train_ids.max() < 19
        np.testing.assert_array_equal(ids, lut[train_ids])
        assert set(np.unique(ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                                       27, 28, 31, 32, 33}


def test_wrong_label_set_is_one_error(tmp_path, capsys, checkpoint, recwarn):
    # A 19-class checkpoint on CamVid (label set camvid, 11 classes) stops before loading.
    camvid = tmp_path / 'camvid'
    make_camvid(camvid)
    assert main([str(camvid), '--weights', str(checkpoint), '--no-progress',
                 '--report', str(tmp_path / 'r.json')]) == 1
    err = capsys.readouterr().err
    assert (f"the label set of the camvid layout 'camvid' has 11 classes, but checkpoint "
            f"'{checkpoint}' predicts 19 classes (cityscapes): evaluate this dataset with a "
            'checkpoint trained on the camvid classes (11)') in err
    assert not recwarn.list and 'Warning' not in err and not (tmp_path / 'r.json').exists()
    # --label-set camvid on Cityscapes: neither the checkpoint nor the ground truth agree
    cityscapes = tmp_path / 'cs'
    make_cityscapes(cityscapes, n=1)
    assert main([str(cityscapes), '--weights', str(checkpoint), '--label-set', 'camvid',
                 '--no-progress']) == 1
    assert ("evaluate: error: --label-set 'camvid' has 11 classes, but the cityscapes ground "
            'truth holds cityscapes ids (19 classes) and checkpoint '
            f"'{checkpoint}' predicts 19 classes (cityscapes): pass --label-set cityscapes or "
            'leave --label-set out') in capsys.readouterr().err
    # the same without weights: the ground truth alone disagrees
    assert main([str(cityscapes), '--allow-untrained', '--label-set', 'camvid',
                 '--no-progress']) == 1
    assert ("--label-set 'camvid' has 11 classes, but the cityscapes ground truth holds "
            'cityscapes ids (19 classes)') in capsys.readouterr().err


def test_ground_truth_ids_outside_the_label_set_are_an_error(tmp_path):
    root = tmp_path / 'cs'
    make_cityscapes(root, n=1)
    label = next((root / 'gtFine').rglob('*.png'))
    lab = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    lab[0, :5] = 26    # a labelId (car), not a trainId
    write_png(label, lab)
    with pytest.raises(RegsegError, match=r'holds id 26 \(5 pixels\): Cityscapes trainIds are '
                                          r'0-18 and 255 \(ignore\): use the '
                                          r'\*_gtFine_labelTrainIds.png'):
        read_label(label, 'cityscapes')


def test_report_defaults_to_the_current_folder(tmp_path, monkeypatch):
    root = tmp_path / 'cityscapes'
    make_cityscapes(root, n=1)
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([str(root), '--allow-untrained', '--no-progress']) == 0
    assert os.listdir(work) == ['regseg_eval_cityscapes_val.json']
    assert json.loads((work / 'regseg_eval_cityscapes_val.json').read_text())['images'] == 1
    assert not list(root.glob('*.json'))   # nothing written into the dataset
    # --output is the same option as --report
    assert main([str(root), '--allow-untrained', '--no-progress', '--output', 'x.json']) == 0
    assert (work / 'x.json').is_file()


def test_a_second_run_keeps_the_first_default_report(tmp_path, capsys, monkeypatch):
    root = tmp_path / 'cityscapes'
    make_cityscapes(root, n=1)
    monkeypatch.chdir(tmp_path)
    first = tmp_path / 'regseg_eval_cityscapes_val.json'
    first.write_text('{"mine": 1}\n')   # an earlier run's report
    assert main([str(root), '--allow-untrained', '--no-progress']) == 0
    assert json.loads(first.read_text()) == {'mine': 1}
    second = tmp_path / 'regseg_eval_cityscapes_val_2.json'
    assert json.loads(second.read_text())['images'] == 1
    assert capsys.readouterr().out.rstrip().endswith(f'report: {second.name}')
    assert main([str(root), '--allow-untrained', '--no-progress']) == 0
    assert (tmp_path / 'regseg_eval_cityscapes_val_3.json').is_file()


def test_unwritable_report_fails_before_the_run(tmp_path, capsys, monkeypatch):
    root = tmp_path / 'cityscapes'
    make_cityscapes(root, n=1)

    def no_model(*args, **kwargs):
        raise AssertionError('the model was loaded before the report path was checked')
    monkeypatch.setattr(evaluate_module, 'build_segmenter', no_model)
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    report = blocker / 'report.json'
    assert main([str(root), '--allow-untrained', '--no-progress', '--report', str(report)]) == 1
    err = capsys.readouterr().err
    assert (f"evaluate: error: cannot write the report '{report}': '{blocker}' is a file, not "
            'a folder: pass --report PATH somewhere writable') in err
    assert main([str(root), '--allow-untrained', '--no-progress', '--report',
                 str(tmp_path)]) == 1
    assert f"report '{tmp_path}' is a folder" in capsys.readouterr().err
    assert main([str(root), '--allow-untrained', '--no-progress', '--save-predictions',
                 str(blocker / 'pred')]) == 1
    assert (f"cannot write the predictions in '{blocker / 'pred'}': '{blocker}' is a file, "
            'not a folder: pass --save-predictions DIR somewhere writable'
            ) in capsys.readouterr().err
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / 'locked'
        locked.mkdir()
        locked.chmod(0o555)
        try:
            assert main([str(root), '--allow-untrained', '--no-progress', '--report',
                         str(locked / 'r.json')]) == 1
            assert 'Permission denied' in capsys.readouterr().err
        finally:
            locked.chmod(0o755)


def test_default_network_size_is_the_images_size(tmp_path, capsys):
    root = tmp_path / 'cityscapes'
    make_cityscapes(root, n=1, size=(96, 160))   # not Cityscapes' 2048x1024
    report = tmp_path / 'r.json'
    assert main([str(root), '--allow-untrained', '--no-progress', '--report',
                 str(report)]) == 0
    captured = capsys.readouterr()
    assert "network input 160x96 (from the images' size)" in captured.err
    assert 'network input 160x96' in captured.out
    assert json.loads(report.read_text())['network_size'] == '160x96'


def test_native_network_size_stays_within_limits():
    assert native_network_size((1024, 2048)) == (1024, 2048)
    assert native_network_size((720, 960, 3)) == (720, 960)
    assert native_network_size((16, 40)) == (32, 80)
    assert native_network_size((10000, 20000)) == (4096, 8192)


def test_label_of_another_size_is_an_error_or_a_counted_skip(tmp_path, capsys):
    root = tmp_path / 'cs'
    make_cityscapes(root, n=3, size=(32, 64))
    images = sorted((root / 'leftImg8bit').rglob('*.png'))
    labels = sorted((root / 'gtFine').rglob('*.png'))
    write_png(images[0], np.zeros((96, 128, 3), np.uint8))    # 128x96 image
    write_png(labels[0], np.zeros((128, 96), np.uint8))       # 96x128 label
    argv = [str(root), '--allow-untrained', '--no-progress', '--report', str(tmp_path / 'r.json')]
    assert main(argv) == 1
    assert (f"evaluate: error: label '{labels[0]}' is 96x128 but its image '{images[0]}' is "
            '128x96: a label must be as large as its image; --skip-mismatched skips such '
            'pairs') in capsys.readouterr().err
    assert main(argv + ['--skip-mismatched']) == 0
    out = capsys.readouterr().out
    assert f"skipped: label '{labels[0]}' is 96x128" in out
    assert '1 of 3 image/label pairs skipped' in out and '2 images in' in out
    data = json.loads((tmp_path / 'r.json').read_text())
    assert (data['images'], data['images_skipped']) == (2, 1)
    # nothing left to score: an error, not an empty report
    for image in images[1:]:
        write_png(image, np.zeros((96, 128, 3), np.uint8))
    assert main(argv + ['--skip-mismatched']) == 1
    assert 'nothing to score: all 3 image/label pairs' in capsys.readouterr().err


def test_size_mismatch_found_on_reading_is_skipped_too(tmp_path):
    # evaluate_pairs checks the decoded sizes as well (files whose header was not read)
    make_cityscapes(tmp_path, n=2)
    _, _, pairs = find_samples(tmp_path)
    write_png(pairs[0][0], np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(RegsegError, match=r'is 64x32 but its image .* is 20x10'):
        evaluate_pairs(pairs, lambda rgb, size: oracle(rgb), 19)
    conf, scored, skipped = evaluate_pairs(pairs, lambda rgb, size: oracle(rgb), 19,
                                           skip_mismatched=True)
    assert scored == 1 and len(skipped) == 1 and scores(conf)['miou'] == 1.0


# -- CamVid: the authors' layout (colour labels) and SegNet's (remapped ids) -------------------

CAMVID_NAMES = ('0001TP_008550', '0001TP_008580')


def camvid_truth(shape=(36, 48)):
    """Ground truth in the authors' ids: Sky top, Building left, Road bottom, a void strip."""
    lab = np.full(shape, CAMVID.class_ids(['Road'])[0], np.uint8)
    lab[:10] = CAMVID.class_ids(['Sky'])[0]
    lab[10:20, :16] = CAMVID.class_ids(['Building'])[0]
    lab[10:20, 16:24] = CAMVID.class_ids(['Column_Pole'])[0]
    lab[10:20, 24:32] = CAMVID.class_ids(['Sidewalk'])[0]
    lab[-3:] = IGNORE
    return lab


def make_camvid(root, shape=(36, 48)):
    """Make the authors' layout: <split>/NAME.png, colour <split>_labels/NAME_L.png."""
    truth = camvid_truth(shape)
    colour = CAMVID.palette()[truth]
    colour[truth == IGNORE] = (64, 128, 64)    # Animal: a CamVid colour outside the 11
    for split in ('train', 'test'):
        for name in CAMVID_NAMES:
            write_png(root / split / f'{name}.png', image_for(truth))
            write_png(root / f'{split}_labels' / f'{name}_L.png', colour[..., ::-1])
    return truth


def make_camvid_segnet(root, shape=(36, 48)):
    """Make SegNet's layout: <split>/NAME.png, <split>annot/NAME.png in SegNet's ids."""
    truth = camvid_truth(shape)
    segnet = np.full(shape, 11, np.uint8)    # unlabelled
    for segnet_id, name in enumerate(('Sky', 'Building', 'Column_Pole', 'Road', 'Sidewalk')):
        segnet[truth == CAMVID.class_ids([name])[0]] = segnet_id
    for name in CAMVID_NAMES:
        write_png(root / 'test' / f'{name}.png', image_for(truth))
        write_png(root / 'testannot' / f'{name}.png', segnet)
    (root / 'train').mkdir()
    (root / 'trainannot').mkdir()
    return truth, segnet


@pytest.mark.parametrize('make,layout', [(make_camvid, 'camvid'),
                                         (make_camvid_segnet, 'camvid_segnet')])
def test_camvid_layouts_map_to_the_authors_ids(tmp_path, make, layout):
    made = make(tmp_path)
    truth = made[0] if isinstance(made, tuple) else made
    found, split, pairs = find_samples(tmp_path)
    assert (found, split, len(pairs)) == (layout, 'test', 2)
    for _, label in pairs:
        np.testing.assert_array_equal(read_label(label, layout), truth)
    # the oracle answers in the authors' ids: a perfect score only if the labels were mapped
    conf = evaluate(iter_samples(pairs, layout=layout), oracle, 11)
    s = scores(conf)
    assert s['miou'] == 1.0 and s['classes_in_mean'] == 5
    assert s['pixels'] == 2 * 33 * 48
    assert s['gt_pixels'][CAMVID.class_ids(['Sky'])[0]] == 2 * 10 * 48


def test_segnet_ids_unmapped_would_score_wrong(tmp_path):
    truth, segnet = make_camvid_segnet(tmp_path)
    assert (truth[segnet < 11] != segnet[segnet < 11]).any()   # the orders really differ


def test_camvid_label_format_errors_name_the_fix(tmp_path):
    make_camvid(tmp_path)
    label = tmp_path / 'test_labels' / f'{CAMVID_NAMES[0]}_L.png'
    write_png(label, camvid_truth())   # single channel in the colour layout
    with pytest.raises(RegsegError, match='has one channel: the camvid layout .* use --layout '
                                          'camvid_segnet'):
        read_label(label, 'camvid')
    bad = tmp_path / 'segnet.png'
    write_png(bad, np.full((4, 4), 30, np.uint8))
    with pytest.raises(RegsegError, match=r"holds id 30 \(16 pixels\): SegNet's CamVid ids"):
        read_label(bad, 'camvid_segnet')


def test_cli_on_the_authors_camvid(tmp_path, capsys):
    make_camvid(tmp_path / 'camvid')
    report = tmp_path / 'r.json'
    assert main([str(tmp_path / 'camvid'), '--allow-untrained', '--no-progress', '--report',
                 str(report)]) == 0
    data = json.loads(report.read_text())
    assert (data['layout'], data['split'], data['label_set'], data['network_size']) == (
        'camvid', 'test', 'camvid', '48x36')
    assert data['pixels'] == 2 * 33 * 48
    assert 'Bicyclist' in capsys.readouterr().out


@pytest.mark.parametrize('args,message', [
    (['{tmp}/nowhere'], "dataset folder '{tmp}/nowhere' does not exist"),
    (['{tmp}', '--split', 'train'], 'no images match'),
    (['{tmp}'], '--weights is empty: pass a checkpoint path, an https:// URL or a released '
     'checkpoint name (e.g. --weights cityscapes_exp48_trainval); --allow-untrained runs random '
     'weights for demos and tests only'),
    (['{tmp}', '--allow-untrained', '--backend', 'tensorrt'],
     '--backend tensorrt is not supported for evaluate'),
])
def test_cli_errors_exit_1(tmp_path, capsys, args, message):
    make_cityscapes(tmp_path, n=1)
    assert main([a.format(tmp=tmp_path) for a in args] + ['--no-progress']) == 1
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize('args,message', [
    (['--network-size', '0x5'], 'must have width and height within [32, 8192]'),
    (['--label-set', 'mapillary'], "invalid choice: 'mapillary'"),
])
def test_cli_usage_errors_exit_2(tmp_path, capsys, args, message):
    make_cityscapes(tmp_path, n=1)
    assert main([str(tmp_path)] + args + ['--no-progress']) == 2
    assert message in capsys.readouterr().err


def test_backend_auto_runs_torch(tmp_path, capsys):
    make_cityscapes(tmp_path / 'cs', n=1)
    assert main([str(tmp_path / 'cs'), '--allow-untrained', '--backend', 'auto', '--no-progress',
                 '--report', str(tmp_path / 'r.json')]) == 0
    assert 'backend auto: ' in capsys.readouterr().err
    assert json.loads((tmp_path / 'r.json').read_text())['backend']['backend'] == 'torch'
