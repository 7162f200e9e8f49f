"""Small helpers shared by the command-line tools."""

import argparse
from typing import Tuple


def parse_size(text: str) -> Tuple[int, int]:
    """Parse ``HxW`` (e.g. ``512x1024``) into ``(height, width)``, each within [32, 8192]."""
    try:
        height, width = (int(v) for v in str(text).lower().replace('*', 'x').split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size {text!r} is not HEIGHTxWIDTH, e.g. 512x1024') from None
    if not (32 <= height <= 8192 and 32 <= width <= 8192):
        raise argparse.ArgumentTypeError(
            f'size {text!r} must have height and width within [32, 8192]')
    return height, width
