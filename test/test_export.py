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

"""ONNX export: static shapes, no sequence ops, parity with PyTorch in ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from regseg_ros import RegsegError
from regseg_ros.model import build_model, export_onnx
from test_model import randomise_bn
import torch


@pytest.mark.parametrize('variant,height,width', [
    ('exp48_decoder26', 256, 512),
    ('exp48_decoder26', 257, 515),   # odd sizes: ceil-mode pooling and size-based upsampling
    ('exp53_decoder29', 192, 384),
])
def test_onnx_matches_pytorch(tmp_path, variant, height, width):
    torch.manual_seed(0)
    model = randomise_bn(build_model(variant), seed=3)
    path = export_onnx(model, tmp_path / 'regseg.onnx', height, width)

    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == 17
    ops = {n.op_type for n in graph.graph.node}
    assert not {op for op in ops if op.startswith('Sequence') or op == 'SplitToSequence'}
    assert 'Slice' in ops
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (graph.graph.input[0], graph.graph.output[0])]
    assert dims == [[1, 3, height, width], [1, 19, height, width]]

    x = torch.randn(1, 3, height, width)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    ours = session.run(None, {'image': x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert ref.std() > 1e-3  # the outputs carry signal: the comparison can fail
    assert np.abs(ours - ref).max() <= 1e-3


def test_export_rejects_tiny_sizes(tmp_path):
    with pytest.raises(RegsegError, match=r'export size 16x16 \(width x height\) is too small'):
        export_onnx(build_model('exp48_decoder26'), tmp_path / 'x.onnx', 16, 16)
