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
Scale-out and restarts of ``train`` on CPU: two gloo processes under torchrun, and --resume.

Tolerance of the two-process run: it sees the same global batch of 8 as one process (each
process 4 of the same samples with the same augmentation) and averages gradients with DDP, but
BatchNorm normalises over each process's 4 crops instead of all 8 (SyncBatchNorm is CUDA-only),
so the loss curves differ a little: the first iteration (same weights) within 10 %, every one of
the first 6 within 25 % and their mean within 10 % of the single-process loss.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_data  # noqa: E402,I100

ROOT = Path(__file__).resolve().parent.parent
QUICK = ['--weights', '', '--crop-size', '64x64', '--scale-min', '72', '--scale-max', '120',
         '--warmup-iterations', '5', '--workers', '0', '--no-progress', '--iterations', '6',
         '--eval-every', '1000', '--batch-size', '8']
TIMEOUT = 600


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return train_data.write_dataset(tmp_path_factory.mktemp('shapes'))


def _train(args, launcher=()):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *launcher, '-m', 'regseg_ros.tools.train', *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return proc


def _losses(folder: Path):
    history = json.loads((folder / 'history.json').read_text())
    return [h['loss'] for h in history['history']], [h['lr'] for h in history['history']]


@pytest.fixture(scope='module')
def single(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp('single') / 'out'
    _train([str(shapes), '--output', str(out)] + QUICK)
    return out


def test_two_gloo_processes_follow_the_single_process_loss_curve(shapes, single, tmp_path):
    out = tmp_path / 'ddp'
    proc = _train([str(shapes), '--output', str(out)] + QUICK,
                  launcher=('-m', 'torch.distributed.run', '--standalone',
                            '--nproc_per_node', '2'))
    assert 'on 2 process(es)' in proc.stderr
    one, one_lr = _losses(single)
    two, two_lr = _losses(out)
    assert len(one) == len(two) == 6 and one_lr == two_lr
    assert abs(two[0] - one[0]) <= 0.10 * one[0], (one, two)
    assert all(abs(b - a) <= 0.25 * a for a, b in zip(one, two)), (one, two)
    assert abs(sum(two) - sum(one)) <= 0.10 * sum(one), (one, two)
    assert two[-1] < two[0] and one[-1] < one[0]
    assert sorted(p.name for p in out.iterdir()) == ['best.pth', 'history.json', 'last.pth']


def test_resume_continues_the_same_curve(shapes, single, tmp_path):
    out = tmp_path / 'resumed'
    _train([str(shapes), '--output', str(out), '--stop-after', '3'] + QUICK)
    first, _ = _losses(out)
    assert len(first) == 3 and not (out / 'best.pth').exists()  # no evaluation yet
    # A resumed run keeps its own recipe: a changed flag is refused, no flags are needed.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    changed = subprocess.run(
        [sys.executable, '-m', 'regseg_ros.tools.train', str(shapes), '--output', str(out),
         '--resume', str(out / 'last.pth'), '--lr', '0.9', '--crop-size', '32x32'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert changed.returncode == 1, changed.stderr
    assert changed.stderr.strip().splitlines()[-1] == (
        'train: error: --resume continues a run with its own recipe: --crop-size 32x32 (the run '
        'has 64x64); --lr 0.9 (the run has 0.05). Drop these flags, or start a new run '
        '(another --output) to change them')
    _train([str(shapes), '--output', str(out), '--resume', str(out / 'last.pth'),
            '--no-progress', '--workers', '0'])
    resumed, lrs = _losses(out)
    one, one_lr = _losses(single)
    assert lrs == one_lr
    assert resumed == pytest.approx(one, rel=1e-3), (one, resumed)
    assert (out / 'best.pth').exists()


def test_sync_bn_on_cpu_is_refused_naming_the_flag(shapes, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
         '-m', 'regseg_ros.tools.train', str(shapes), '--output', str(out), '--sync-bn']
        + QUICK, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert 'train: error: --sync-bn needs CUDA' in proc.stderr
    assert not out.exists() or not any(out.iterdir())
