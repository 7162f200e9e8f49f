"""
Camera buffers to RGB arrays and label images to RViz images; no rclpy needed.

The decoders take the fields of ``sensor_msgs/Image`` and ``CompressedImage`` as plain values, so
the node, the bag tool and the tests share them. Every malformed input raises
:class:`~regseg_ros.errors.RegsegError` naming what disagrees.
"""

from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np
from regseg_ros.errors import RegsegError


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


def decode_image(encoding: str, height: int, width: int, step: int, data,
                 is_bigendian: bool = False) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array from the fields of a ``sensor_msgs/Image``."""
    key = encoding.lower()
    if key not in ENCODINGS:
        raise RegsegError(
            f'unsupported image encoding {encoding!r}: publish one of {sorted(ENCODINGS)}')
    channels, dtype, convert = ENCODINGS[key]
    if height <= 0 or width <= 0:
        raise RegsegError(f'image size {width}x{height} is empty')
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


def decode_compressed(fmt: str, data) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array from a ``CompressedImage`` (JPEG, PNG, ...)."""
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        raise RegsegError(f'compressed image ({fmt!r}) is empty')
    img = _imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise RegsegError(
            f'cannot decode compressed image of {buf.size} bytes with format {fmt!r}: the data '
            'is corrupt or truncated, or not JPEG/PNG')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


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


def decode_compressed_reduced(fmt: str, data, height: int, width: int) -> np.ndarray:
    """
    Decode a JPEG at half size (libjpeg's DCT scaling), for a network at most half its size.

    Returns an RGB array of about (height / 2, width / 2); raises like decode_compressed.
    """
    img = _imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
    if img is None or abs(img.shape[0] * 2 - height) > 1 or abs(img.shape[1] * 2 - width) > 1:
        return decode_compressed(fmt, data)  # raises the usual error for corrupt data
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
