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

"""The ``benchmark`` command on the CPU: small sizes, few iterations, every field reported."""

import json
import re

import pytest
from regseg_ros.tools import benchmark
import torch

SMALL = ['--backend', 'torch', '--device', 'cpu', '--network-size', '128x64',
         '--camera-size', '160x96', '--warmup', '1', '--iterations', '3', '--threads', '1']


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``--threads`` sets torch's thread count for the process: restore it for later tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_benchmark_prints_the_report_on_the_cpu(capsys):
    assert benchmark.main(SMALL + ['--confidence']) == 0
    out = capsys.readouterr().out
    assert 'RegSeg benchmark: exp48_decoder26, weights: random (speed does not depend on ' \
           'weights)' in out
    assert re.search(r'backend torch on cpu \(fp32\); device: CPU: .+ \(1 threads\)', out)
    assert re.search(r'versions: python [\d.]+, torch \S+, CUDA .+, cuDNN .+, TensorRT .+', out)
    assert 'network 128x64; camera frame 160x96 uint8 RGB in, same size uint8 labels out ' \
           '(+ confidence)' in out
    assert re.search(r'load: [\d.]+ s; warm-up: 1 iterations in [\d.]+ s, first [\d.]+ ms', out)
    assert re.search(r'\s+mean\s+p50\s+p99\s+min\s+FPS', out)
    number = r'\s+[\d.]+'
    assert re.search(r'model only' + number * 5, out)
    assert re.search(r'full path \(frame in, labels out\)' + number * 5, out)
    assert 'latency in ms over 3 iterations; model only ends at full-resolution logits' in out


def test_benchmark_json_has_every_figure(capsys):
    assert benchmark.main(SMALL + ['--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['backend'], report['device'], report['precision']) == ('torch', 'cpu', 'fp32')
    assert report['network_size'] == '128x64' and report['camera_size'] == '160x96'
    for key in ('model_only', 'full_path'):
        stats = report[key]
        assert stats['iterations'] == 3
        assert 0 < stats['min_ms'] <= stats['p50_ms'] <= stats['p99_ms'] <= stats['max_ms']
        assert stats['fps'] == pytest.approx(1000 / stats['mean_ms'])
    assert report['warmup']['iterations'] == 1 and report['warmup']['first_ms'] > 0
    env = report['environment']
    assert {'python', 'torch', 'cuda', 'cudnn', 'tensorrt', 'device'} <= set(env)


def test_benchmark_json_to_a_file_also_prints_the_report(tmp_path, capsys):
    path = tmp_path / 'bench.json'
    assert benchmark.main(SMALL + ['--json', str(path)]) == 0
    assert 'full path' in capsys.readouterr().out
    assert json.loads(path.read_text())['full_path']['iterations'] == 3


def test_benchmark_takes_the_class_count_from_a_trained_checkpoint(tmp_path, capsys):
    """A 4-class checkpoint written by train runs as 4 classes, not a re-initialised 19."""
    import warnings
    from regseg_ros.core.labels import LabelSet
    from regseg_ros.model import build_model
    from regseg_ros.model.weights import META_KEY, save_checkpoint
    shapes = LabelSet('shapes', ('ground', 'box', 'disc', 'bar'),
                      ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)), ('ground',))
    path = save_checkpoint(tmp_path / 'best.pth', {
        'model': build_model('exp48_decoder26', 4).state_dict(),
        META_KEY: {'label_set': shapes.to_dict(), 'model': 'exp48_decoder26'}})
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a classifier re-initialised to fit would warn
        assert benchmark.main(SMALL + ['--weights', str(path), '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['label_set'], report['num_classes']) == ('shapes', 4)


def test_benchmark_errors_exit_1(capsys):
    assert benchmark.main(SMALL[:-6] + ['--iterations', '0']) == 1
    assert 'benchmark: error: --warmup 10 / --iterations 0' in capsys.readouterr().err
    assert benchmark.main(['--device', 'cpu', '--precision', 'fp16']) == 1
    assert "precision 'fp16' needs a CUDA device" in capsys.readouterr().err


def test_summarize_percentiles():
    stats = benchmark.summarize([0.001 * i for i in range(1, 101)])
    assert stats['p50_ms'] == pytest.approx(50.5)
    assert stats['p99_ms'] == pytest.approx(99.01)
    assert stats['mean_ms'] == pytest.approx(50.5) and stats['min_ms'] == pytest.approx(1.0)
    assert benchmark.summarize([0.002])['p99_ms'] == pytest.approx(2.0)
