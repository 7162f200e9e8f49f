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
