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

"""Export RegSeg to ONNX with static shapes, or a dynamic batch axis (what TensorRT consumes)."""

import os
import warnings

from regseg_ros.core.errors import RegsegError
import torch
from torch import nn

INPUT_NAME = 'image'
OUTPUT_NAME = 'logits'


def export_onnx(model: nn.Module, path: os.PathLike, height: int, width: int,
                opset: int = 17, dynamic_batch: bool = False) -> str:
    """
    Write ``model`` as ONNX with static shapes and no sequence ops.

    Input ``image`` (1, 3, H, W) float32 normalised RGB, output ``logits`` (1, C, H, W); with
    ``dynamic_batch`` the first axis of both is the symbolic ``batch`` (H and W stay fixed).
    """
    if height < 32 or width < 32:
        raise RegsegError(f'export size {width}x{height} (width x height) is too small: use at '
                          'least 32x32')
    model = model.eval()
    param = next(model.parameters())
    dummy = torch.zeros(1, 3, int(height), int(width), dtype=param.dtype, device=param.device)
    path = os.fspath(path)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (dummy,), path, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                          do_constant_folding=True,
                          dynamic_axes=({INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}}
                                        if dynamic_batch else None))
    return path
