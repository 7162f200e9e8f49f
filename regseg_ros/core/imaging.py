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
Camera buffers to RGB arrays and label images to RViz images; no rclpy needed.

The decoders take the fields of ``sensor_msgs/Image`` and ``CompressedImage`` as plain values, so
the node, the bag tool and the tests share them. Every malformed input raises
:class:`~regseg_ros.core.errors.RegsegError` naming what disagrees.
"""

from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np
from regseg_ros.core.errors import RegsegError


def _plain(channels: int, dtype, convert: Callable[[np.ndarray], np.ndarray]):
    return channels, np.dtype(dtype), convert


def _to8(img: np.ndarray) -> np.ndarray:
    return (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img


def _rgb(img):
    return img


def _bgr(img):
    return img[..., ::-1]


def _gray(img):
    return np.repeat(img[..., None], 3, axis=2)


def _cvt(code):
    return lambda img: cv2.cvtColor(img, code)


# encoding -> (channels, dtype, conversion of the (H, W, C) array to RGB)
ENCODINGS: Dict[str, Tuple[int, np.dtype, Callable[[np.ndarray], np.ndarray]]] = {
    'rgb8': _plain(3, np.uint8, _rgb),
    'bgr8': _plain(3, np.uint8, _bgr),
    'rgba8': _plain(4, np.uint8, lambda img: img[..., :3]),
    'bgra8': _plain(4, np.uint8, lambda img: img[..., 2::-1]),
    'mono8': _plain(1, np.uint8, lambda img: _gray(img[..., 0])),
    '8uc1': _plain(1, np.uint8, lambda img: _gray(img[..., 0])),
    '8uc3': _plain(3, np.uint8, _bgr),  # OpenCV's convention: BGR
    'rgb16': _plain(3, np.uint16, lambda img: _to8(img)),
    'bgr16': _plain(3, np.uint16, lambda img: _to8(img[..., ::-1])),
    'rgba16': _plain(4, np.uint16, lambda img: _to8(img[..., :3])),
    'bgra16': _plain(4, np.uint16, lambda img: _to8(img[..., 2::-1])),
    'mono16': _plain(1, np.uint16, lambda img: _gray(_to8(img[..., 0]))),
    # ROS 'yuv422' is UYVY; 'yuv422_yuy2' is YUYV.
    'yuv422': _plain(2, np.uint8, _cvt(cv2.COLOR_YUV2RGB_UYVY)),
    'uyvy': _plain(2, np.uint8, _cvt(cv2.COLOR_YUV2RGB_UYVY)),
    'yuv422_yuy2': _plain(2, np.uint8, _cvt(cv2.COLOR_YUV2RGB_YUYV)),
    'yuyv': _plain(2, np.uint8, _cvt(cv2.COLOR_YUV2RGB_YUYV)),
    'bayer_rggb8': _plain(1, np.uint8, _cvt(cv2.COLOR_BayerRGGB2RGB)),
    'bayer_bggr8': _plain(1, np.uint8, _cvt(cv2.COLOR_BayerBGGR2RGB)),
    'bayer_gbrg8': _plain(1, np.uint8, _cvt(cv2.COLOR_BayerGBRG2RGB)),
    'bayer_grbg8': _plain(1, np.uint8, _cvt(cv2.COLOR_BayerGRBG2RGB)),
}


# Frames above this many pixels are refused before any pixel is decoded (a 629-byte JPEG can
# claim 30000x30000 = 2.7 GB of RGB). 64 MP is 8000x8000; the largest automotive and mapping
# cameras in use are 8-12 MP.
DEFAULT_MAX_INPUT_PIXELS = 64_000_000


def check_pixels(width: int, height: int, max_pixels: int, what: str = 'image') -> None:
    """Raise RegsegError if a ``width`` x ``height`` frame exceeds ``max_pixels`` (0: no limit)."""
    if max_pixels and width * height > max_pixels:
        raise RegsegError(
            f'{what} of {width}x{height} = {width * height / 1e6:.1f} MP exceeds '
            f'max_input_pixels = {max_pixels} ({max_pixels / 1e6:.1f} MP): refused before '
            'decoding; raise max_input_pixels if such frames are genuine')


def decode_image(encoding: str, height: int, width: int, step: int, data,
                 is_bigendian: bool = False,
                 max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array from the fields of a ``sensor_msgs/Image``."""
    key = encoding.lower()
    if key not in ENCODINGS:
        raise RegsegError(
            f'unsupported image encoding {encoding!r}: publish one of {sorted(ENCODINGS)}')
    channels, dtype, convert = ENCODINGS[key]
    if height <= 0 or width <= 0:
        raise RegsegError(f'image size {width}x{height} is empty')
    check_pixels(width, height, max_pixels)
    if key.startswith('bayer') and (height % 2 or width % 2):
        raise RegsegError(f'Bayer image size {width}x{height} must be even')
    if key in ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv') and width % 2:
        raise RegsegError(f'YUV 4:2:2 image width {width} must be even')
    row = width * channels * dtype.itemsize
    if step < row:
        raise RegsegError(
            f'image step {step} is smaller than width x bytes per pixel = {width} x '
            f'{channels * dtype.itemsize} = {row} for {encoding!r}')
    buf = np.frombuffer(data, np.uint8)
    if buf.size != step * height:
        raise RegsegError(
            f'image data has {buf.size} bytes, but step x height = {step} x {height} = '
            f'{step * height}: the buffer is truncated or the header is wrong')
    rows = buf.reshape(height, step)[:, :row]
    if dtype.itemsize > 1:
        order = '>' if is_bigendian else '<'
        img = np.ascontiguousarray(rows).view(dtype.newbyteorder(order))
        img = img.astype(dtype, copy=False)
    else:
        img = rows
    img = img.reshape(height, width, channels)
    return np.ascontiguousarray(convert(img))


def _imdecode(buf: np.ndarray, flag: int) -> Optional[np.ndarray]:
    """Return OpenCV's BGR decode of ``buf``, or None where it cannot decode it."""
    try:
        return cv2.imdecode(buf, flag)
    except cv2.error:
        return None


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def jpeg_size(data) -> Optional[Tuple[int, int]]:
    """Return (height, width) from a JPEG's frame header without decoding, or None."""
    buf = memoryview(np.frombuffer(data, np.uint8))
    if len(buf) < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            return (buf[i + 5] << 8 | buf[i + 6]), (buf[i + 7] << 8 | buf[i + 8])
        i += 2 + (buf[i + 2] << 8 | buf[i + 3])
    return None


def png_size(data) -> Optional[Tuple[int, int]]:
    """Return (height, width) from a PNG's IHDR chunk without decoding, or None."""
    head = bytes(memoryview(np.frombuffer(data, np.uint8))[:24])
    if len(head) < 24 or head[:8] != _PNG_MAGIC or head[12:16] != b'IHDR':
        return None
    return int.from_bytes(head[20:24], 'big'), int.from_bytes(head[16:20], 'big')


def compressed_size(data) -> Optional[Tuple[int, int]]:
    """Return (height, width) of a JPEG or PNG from its header alone, or None for others."""
    return jpeg_size(data) or png_size(data)


def reduce_factor(frame_size: Tuple[int, int], network_size: Optional[Tuple[int, int]]) -> int:
    """
    Return 2 where a JPEG of ``frame_size`` may be decoded at half size, else 1.

    It depends on the sizes alone (frame at least twice the network input on both axes), never
    on which outputs are wanted, so a frame gets the same labels in the node and in segment_bag
    whatever they publish.
    """
    if network_size is None:
        return 1
    return 2 if (frame_size[0] >= 2 * network_size[0]
                 and frame_size[1] >= 2 * network_size[1]) else 1


def decode_compressed(fmt: str, data, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
                      network_size: Optional[Tuple[int, int]] = None
                      ) -> Tuple[np.ndarray, Tuple[int, int]]:
    """
    Decode a ``CompressedImage`` (JPEG or PNG) into an RGB array; return it and the frame size.

    The frame's (height, width) is read from the header first: a frame above ``max_pixels`` is
    refused before a pixel is decoded. With ``network_size`` (height, width) a JPEG at least twice
    that size is decoded at half size by libjpeg's DCT scaling (about 3x faster); the returned
    frame size is still the full one, at which outputs are made.
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        raise RegsegError(f'compressed image ({fmt!r}) is empty')
    size = compressed_size(buf)
    if size is None:
        raise RegsegError(
            f'compressed image of {buf.size} bytes with format {fmt!r} has no JPEG or PNG header: '
            'the data is corrupt or truncated, or not JPEG/PNG')
    check_pixels(size[1], size[0], max_pixels, f'compressed image ({fmt!r})')
    if size[0] <= 0 or size[1] <= 0:
        raise RegsegError(f'compressed image header claims an empty size {size[1]}x{size[0]}')
    reduced = jpeg_size(buf) is not None and reduce_factor(size, network_size) == 2
    img = _imdecode(buf, cv2.IMREAD_REDUCED_COLOR_2 if reduced else cv2.IMREAD_COLOR)
    expected = ((size[0] + 1) // 2, (size[1] + 1) // 2) if reduced else size
    if img is None or abs(img.shape[0] - expected[0]) > 1 or abs(img.shape[1] - expected[1]) > 1:
        raise RegsegError(
            f'cannot decode compressed image of {buf.size} bytes with format {fmt!r} '
            f'(header: {size[1]}x{size[0]}): the data is corrupt or truncated')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label image (no new class ids appear)."""
    if labels.shape[:2] == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (area when shrinking) resize of an RGB image."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrink = height < rgb.shape[0] and width < rgb.shape[1]
    return cv2.resize(rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map class ids to RGB with a (256, 3) palette."""
    return palette[labels]


def blend(rgb: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """Return ``(1 - alpha) * rgb + alpha * color`` as uint8."""
    return cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0)
