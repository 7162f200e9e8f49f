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

"""The train tool on CPU: it learns a synthetic dataset, and bad input fails cleanly."""

import json
from pathlib import Path
import sys

import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.core.labels import LabelSet
from regseg_ros.tools import evaluate as evaluate_tool
from regseg_ros.tools import train as train_tool
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_data  # noqa: E402,I100

# Small enough for a loaded 2-core CPU (about a minute unloaded), large enough to learn.
QUICK = ['--weights', '', '--crop-size', '64x64', '--scale-min', '72', '--scale-max', '120',
         '--warmup-iterations', '5', '--workers', '0', '--no-progress']


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return train_data.write_dataset(tmp_path_factory.mktemp('shapes'))


@pytest.fixture(scope='module')
def trained(shapes, tmp_path_factory):
    """Train once for the tests that use the result; return (output folder, mIoU before)."""
    from regseg_ros.model.regseg import RegSeg
    from regseg_ros.train import datasets, distributed
    from regseg_ros.train.recipe import Recipe
    from regseg_ros.train.trainer import evaluate_model
    torch.manual_seed(0)
    label_set = datasets.layout_label_set(shapes, 'generic')
    before = evaluate_model(RegSeg('exp48_decoder26', 4).train(),
                            datasets.find_pairs(shapes, 'generic', 'val'), 'generic', label_set,
                            distributed.Context(), Recipe())['miou']
    out = tmp_path_factory.mktemp('run') / 'out'
    rc = train_tool.main([str(shapes), '--output', str(out), '--iterations', '100',
                          '--eval-every', '1000'] + QUICK)
    assert rc == 0
    return out, before


def test_training_raises_val_miou_from_chance_to_090(trained):
    out, before = trained
    history = json.loads((out / 'history.json').read_text())
    assert before < 0.5, f'an untrained network scored {before}: the dataset is too easy'
    assert history['best_miou'] >= 0.9, history['evals']
    assert [h['iteration'] for h in history['history']] == list(range(1, 101))
    losses = [h['loss'] for h in history['history']]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    # lr: warm-up from 0.1 * lr, then poly decay to near 0
    lrs = [h['lr'] for h in history['history']]
    assert lrs[0] == pytest.approx(0.005) and max(lrs) <= 0.05 and lrs[-1] < 0.002


def test_checkpoint_carries_label_set_and_recipe_and_loads_in_the_existing_paths(trained, shapes):
    from regseg_ros.model import build_model, load_weights
    from regseg_ros.model.weights import checkpoint_label_set, checkpoint_metadata
    out, _ = trained
    assert sorted(p.name for p in out.iterdir()) == ['best.pth', 'history.json', 'last.pth']
    labels = checkpoint_label_set(str(out / 'best.pth'))
    assert labels.classes == ('background', 'disc', 'box', 'triangle')
    assert labels.colors[1] == (220, 40, 40) and labels.default_drivable == ('background',)
    meta = checkpoint_metadata(str(out / 'best.pth'))
    assert meta['recipe']['crop_size'] == [64, 64] and meta['recipe']['lr'] == 0.05
    assert meta['model'] == 'exp48_decoder26'
    # the node's loader (strict keys, weights_only) and the ONNX export take it unchanged
    model = load_weights(build_model('exp48_decoder26', 4), out / 'best.pth')
    onnx = pytest.importorskip('onnx')
    from regseg_ros.model import export_onnx
    export_onnx(model, out.parent / 'shapes.onnx', 96, 128)
    assert onnx.load(str(out.parent / 'shapes.onnx')).graph.output


def test_evaluate_scores_the_checkpoint_like_training_did(trained, shapes, capsys):
    out, _ = trained
    history = json.loads((out / 'history.json').read_text())
    report = out.parent / 'eval.json'
    rc = evaluate_tool.main([str(shapes), '--weights', str(out / 'best.pth'), '--report',
                             str(report), '--no-progress'])
    assert rc == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data['layout'] == 'generic' and data['label_set'] == 'shapes'
    assert [c['name'] for c in data['per_class']] == ['background', 'disc', 'box', 'triangle']
    assert data['miou'] == pytest.approx(history['evals'][-1]['miou'], abs=1e-6)


def test_segmenter_takes_names_palette_and_drivable_from_the_checkpoint(trained, shapes):
    import argparse
    import cv2
    from regseg_ros.tools.cli import build_segmenter
    out, _ = trained
    args = argparse.Namespace(weights=str(out / 'best.pth'), allow_untrained=False,
                              model='exp48_decoder26', backend='torch', device='cpu',
                              precision='fp32', cache_dir=None)
    seg = build_segmenter(args, None, (96, 128), log=lambda m: None)
    assert seg.label_set.name == 'shapes'
    image = cv2.imread(str(shapes / 'images' / 'val' / 'shape_0000.png'))[..., ::-1]
    truth = cv2.imread(str(shapes / 'labels' / 'val' / 'shape_0000.png'), 0)
    result = seg.segment([np.ascontiguousarray(image)])[0]
    labels = result['labels']
    known = truth != 255
    assert (labels[known] == truth[known]).mean() > 0.9
    palette = np.zeros((256, 3), np.uint8)
    palette[:4] = [c for _n, c, _d in train_data.CLASSES]  # the classes YAML's colours
    assert np.array_equal(result['color'], palette[labels])
    assert np.array_equal(result['drivable_mask'] == 255, labels == 0)
    with pytest.raises(RegsegError, match=r"label set 'cityscapes' has 19 classes but checkpoint"):
        build_segmenter(args, 'cityscapes', (96, 128), log=lambda m: None)


# -- bad input ---------------------------------------------------------------------------------

def _copy(shapes: Path, tmp_path: Path) -> Path:
    import shutil
    root = tmp_path / 'data'
    shutil.copytree(shapes, root)
    return root


def _fails(argv, capsys, *patterns):
    rc = train_tool.main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = [line for line in err.splitlines() if line.startswith('train: error:')]
    assert len(lines) == 1, err
    for pattern in patterns:
        assert pattern in lines[0], lines[0]
    return lines[0]


def test_label_ids_outside_the_classes_name_the_file(shapes, tmp_path, capsys):
    import cv2
    root = _copy(shapes, tmp_path)
    bad = root / 'labels' / 'train' / 'shape_0005.png'
    label = cv2.imread(str(bad), 0)
    label[:4, :4] = 7
    cv2.imwrite(str(bad), label)
    out = tmp_path / 'out'
    _fails([str(root), '--output', str(out)] + QUICK, capsys, str(bad), '[7]', 'classes YAML')
    assert not out.exists()


def test_an_image_without_label_names_it(shapes, tmp_path, capsys):
    root = _copy(shapes, tmp_path)
    (root / 'labels' / 'val' / 'shape_0003.png').unlink()
    out = tmp_path / 'out'
    _fails([str(root), '--output', str(out)] + QUICK, capsys,
           str(root / 'images' / 'val' / 'shape_0003.png'), 'has no label')
    assert not out.exists()


def test_duplicate_class_names_name_the_yaml(shapes, tmp_path, capsys):
    root = _copy(shapes, tmp_path)
    yaml_path = root / 'classes.yaml'
    yaml_path.write_text(yaml_path.read_text().replace('name: box', 'name: Disc'))
    out = tmp_path / 'out'
    _fails([str(root), '--output', str(out)] + QUICK, capsys, str(yaml_path),
           "duplicate class name 'Disc'")
    assert not out.exists()


def test_bad_flags_name_the_flag(shapes, tmp_path, capsys):
    out = tmp_path / 'out'
    _fails([str(shapes), '--output', str(out)] + QUICK + ['--batch-size', '100'], capsys,
           '--batch-size 100')
    _fails([str(shapes), '--output', str(out)] + QUICK + ['--scale-min', '900'], capsys,
           '--scale-min 900')
    assert train_tool.main([str(shapes), '--output', str(out), '--crop-size', 'big']) == 2
    assert not out.exists()


def test_cuda_out_of_memory_becomes_one_error_naming_batch_size():
    from regseg_ros.train.recipe import Recipe
    from regseg_ros.train.trainer import train_step

    class Exhausted(torch.nn.Module):

        def forward(self, x):
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

    model = Exhausted()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scaler = torch.amp.GradScaler('cuda', enabled=False)
    with pytest.raises(RegsegError, match=r'lower --batch-size \(now 16 in all over 2 '
                       r'process\(es\)\) or --crop-size') as info:
        train_step(model, optimizer, scaler, torch.zeros(8, 3, 8, 8),
                   torch.zeros(8, 8, 8, dtype=torch.long), Recipe(batch_size=16), 2)
    assert '8 crops of 768x768 per process' in str(info.value)


def test_a_finished_run_is_not_overwritten(trained, shapes, capsys):
    out, _ = trained
    before = (out / 'last.pth').stat().st_mtime_ns
    _fails([str(shapes), '--output', str(out)] + QUICK, capsys, '--resume', 'last.pth')
    assert (out / 'last.pth').stat().st_mtime_ns == before


def test_label_set_round_trips_through_a_dict():
    labels = LabelSet('x', ('a', 'b'), ((1, 2, 3), (4, 5, 6)), ('b',))
    assert LabelSet.from_dict(labels.to_dict()) == labels
