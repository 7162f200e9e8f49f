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

"""Backends: selection, the torch path against the plain model, sparse label upsampling."""

import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.backends import BackendConfig, create_backend
from regseg_ros.backends.postprocess import upsample_argmax
from regseg_ros.backends.torch_backend import load_regseg, MEAN, resolve_device, STD
from regseg_ros.core.imaging import resize_rgb
from regseg_ros.model import build_model
from test_model import randomise_bn
import torch
from torch.nn import functional as F


def dense_labels(quarter, size):
    up = F.interpolate(quarter, size=size, mode='bilinear', align_corners=False)
    return up.argmax(1).to(torch.uint8)


@pytest.mark.parametrize('smooth', [False, True])
def test_sparse_upsample_argmax_equals_dense(smooth):
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 19, 32, 64, generator=gen)
    if smooth:  # large uniform regions, as in real scenes: the sparse path is taken
        q = F.interpolate(torch.randn(2, 19, 4, 8, generator=gen) * 5, size=(32, 64),
                          mode='bilinear')
    expected = dense_labels(q, (128, 256))
    assert torch.equal(upsample_argmax(q, (128, 256), max_mixed=1.0), expected)
    assert torch.equal(upsample_argmax(q, (128, 256)), expected)


def test_upsample_argmax_other_scales_fall_back_to_dense():
    q = torch.randn(1, 19, 33, 65)
    assert torch.equal(upsample_argmax(q, (130, 258)), dense_labels(q, (130, 258)))


def test_torch_backend_labels_match_the_plain_model(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(build_model('exp48_decoder26'), seed=9)
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    backend = create_backend('torch', BackendConfig(weights=str(tmp_path / 'w.pth'),
                                                    input_size=(128, 256)))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 480, 3), dtype=np.uint8)
    pred = backend.infer([frame], [(128, 256)], with_confidence=True)[0]
    small = resize_rgb(frame, 128, 256).astype(np.float32) / 255.0
    x = torch.from_numpy((small - MEAN) / STD).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        logits = model(x)
    expected = logits.argmax(1)[0].numpy()
    assert (pred.labels == expected).mean() >= 0.999  # BatchNorm folding rounds differently
    top = torch.softmax(logits, 1).amax(1)[0].numpy() * 255
    assert np.abs(pred.confidence.astype(float) - top).mean() < 8
    big = backend.infer([frame], [(240, 480)])[0].labels
    assert big.shape == (240, 480) and set(np.unique(big)) <= set(np.unique(pred.labels))


def test_auto_backend_logs_its_choice_on_a_cpu_machine():
    if torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    messages = []
    backend = create_backend('auto', BackendConfig(allow_untrained=True, input_size=(64, 128),
                                                   precision='fp16'), log=messages.append)
    assert messages == ['backend auto: no CUDA GPU visible, using torch on the CPU (fp32)']
    assert backend.describe()['device'] == 'cpu' and backend.describe()['precision'] == 'fp32'


def test_unknown_backend_and_device_name_the_choices():
    with pytest.raises(RegsegError,
                       match=r"backend 'onnx' is not one of \['torch', 'tensorrt', 'auto'\]"):
        create_backend('onnx', BackendConfig(allow_untrained=True))
    with pytest.raises(RegsegError, match=r"device 'gpu' is not one of 'cpu', 'cuda', 'cuda:N'"):
        resolve_device('gpu')


def test_untrained_weights_are_the_same_in_every_run():
    config = BackendConfig(allow_untrained=True)
    state = torch.random.get_rng_state()
    first, second = load_regseg(config).state_dict(), load_regseg(config).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched


def test_cuda_graph_option_is_checked_and_logged_when_it_cannot_apply():
    messages = []
    config = BackendConfig(allow_untrained=True, input_size=(64, 128),
                           options={'cuda_graph': True})
    backend = create_backend('torch', config, log=messages.append)
    assert messages == ["option cuda_graph ignored: it needs a CUDA device, not 'cpu'"]
    assert backend.infer([np.zeros((64, 128, 3), np.uint8)], [(32, 64)])[0].labels.shape == (
        32, 64)
    with pytest.raises(RegsegError, match="option cuda_graph is 'yes': set it to true or false"):
        create_backend('torch', BackendConfig(allow_untrained=True, options={'cuda_graph': 'yes'}))
    with pytest.raises(RegsegError, match="backend option 'cuda_grph' is unknown"):
        create_backend('torch', BackendConfig(allow_untrained=True, options={'cuda_grph': True}))


def test_cpu_forward_is_traced_and_gives_the_eager_labels_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    torch.save(randomise_bn(build_model('exp48_decoder26'), seed=5).state_dict(),
               tmp_path / 'w.pth')
    messages = []
    traced, eager = (create_backend('torch', BackendConfig(
        weights=str(tmp_path / 'w.pth'), input_size=(128, 256), options=options),
        log=messages.append) for options in ({}, {'torchscript': False}))
    assert traced.describe()['forward'] == 'torchscript'
    assert eager.describe()['forward'] == 'eager'
    assert not [m for m in messages if 'torchscript' in m]   # traced: bit-equal at load here
    rng = np.random.default_rng(3)
    for size in ((240, 480), (128, 256), (97, 301)):
        frame = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        a, b = (backend.infer([frame], [size], with_confidence=True)[0]
                for backend in (traced, eager))
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.confidence, b.confidence)
    with pytest.raises(RegsegError, match="option torchscript is 'no': set it to true or false"):
        create_backend('torch', BackendConfig(allow_untrained=True,
                                              options={'torchscript': 'no'}))


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_cuda_unavailable_is_an_error_not_a_fallback():
    with pytest.raises(RegsegError, match=r"device 'cuda:1' asked for, but CUDA is not "
                                          r'available .*set device to cpu'):
        create_backend('torch', BackendConfig(allow_untrained=True, device='cuda:1'))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_fp16_labels_agree_with_cpu_fp32(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(build_model('exp48_decoder26'), seed=9)
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    frame = np.random.default_rng(1).integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    results = {}
    for device, precision in (('cpu', 'fp32'), ('cuda', 'fp16')):
        backend = create_backend('torch', BackendConfig(
            weights=str(tmp_path / 'w.pth'), device=device, precision=precision,
            input_size=(512, 1024)))
        results[device] = backend.infer([frame], [(512, 1024)])[0].labels
    assert (results['cpu'] == results['cuda']).mean() >= 0.995


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_graph_gives_the_eager_labels():
    frame = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    results = []
    for graph in (False, True):
        messages = []
        backend = create_backend('torch', BackendConfig(
            allow_untrained=True, device='cuda', precision='fp16', input_size=(256, 512),
            options={'cuda_graph': graph}), log=messages.append)
        assert backend.describe()['cuda_graph'] == str(graph).lower(), messages
        results.append([backend.infer([frame], [(480, 640)])[0].labels for _ in range(2)])
        backend.forward_only()
        backend.close()
    assert (results[0][0] == results[1][0]).mean() >= 0.999
    assert (results[1][0] == results[1][1]).all()
