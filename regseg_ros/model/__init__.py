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

"""RegSeg network, weights loading and ONNX export (no rclpy below this package)."""

from regseg_ros.model.export import export_onnx
from regseg_ros.model.regseg import build_model, RegSeg, variant_config, VARIANTS
from regseg_ros.model.weights import (
    load_state_dict, load_weights, read_state_dict, RELEASED_CHECKPOINTS, released_url,
    resolve_weights)

__all__ = [
    'RELEASED_CHECKPOINTS', 'RegSeg', 'VARIANTS', 'build_model', 'export_onnx',
    'load_state_dict', 'load_weights', 'read_state_dict', 'released_url', 'resolve_weights',
    'variant_config',
]
