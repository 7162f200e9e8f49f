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

"""Camera buffer decoding and output image helpers."""

from bombs import jpeg_bomb, png_bomb
import cv2
import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.core.imaging import (
    blend, check_pixels, compressed_size, decode_compressed, decode_image, jpeg_size,
    png_size, resize_labels,
    resize_rgb)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def fields(array, encoding, pad=0, big=False):
    h, w = array.shape[:2]
    array = np.ascontiguousarray(array)
    if big:
        array = array.astype(array.dtype.newbyteorder('>'))
    rows = array.reshape(h, -1)
    raw = rows.view(np.uint8).reshape(h, -1)
    raw = np.hstack([raw, np.zeros((h, pad), np.uint8)])
    return encoding, h, w, raw.shape[1], raw.tobytes(), big


@pytest.mark.parametrize('encoding,array', [
    ('rgb8', RGB),
    ('bgr8', RGB[..., ::-1]),
    ('rgba8', np.dstack([RGB, np.full((6, 8), 9, np.uint8)])),
    ('bgra8', np.dstack([RGB[..., ::-1], np.full((6, 8), 9, np.uint8)])),
    ('8UC3', RGB[..., ::-1]),
])
def test_colour_encodings_give_rgb(encoding, array):
    assert np.array_equal(decode_image(*fields(array, encoding)), RGB)


def test_row_padding_is_skipped():
    assert np.array_equal(decode_image(*fields(RGB, 'rgb8', pad=5)), RGB)


@pytest.mark.parametrize('big', [False, True])
def test_16_bit_keeps_the_high_byte_in_either_byte_order(big):
    wide = RGB.astype(np.uint16) * 256 + 77
    assert np.array_equal(decode_image(*fields(wide, 'rgb16', big=big)), RGB)
    mono = wide[..., 0]
    out = decode_image(*fields(mono[..., None], 'mono16', big=big))
    assert np.array_equal(out, np.repeat(RGB[..., :1], 3, axis=2))


def test_mono8_is_grey_rgb():
    out = decode_image(*fields(RGB[..., :1], 'mono8'))
    assert np.array_equal(out, np.repeat(RGB[..., :1], 3, axis=2))


@pytest.mark.parametrize('encoding,quad,wrong', [
    ('yuv422', [128, 200, 128, 60], 'yuv422_yuy2'),       # UYVY: U Y0 V Y1
    ('yuv422_yuy2', [200, 128, 60, 128], 'yuv422'),       # YUYV: Y0 U Y1 V
])
def test_yuv422_layouts(encoding, quad, wrong):
    packed = np.tile(np.array(quad, np.uint8), (4, 4)).reshape(4, 8, 2)
    out = decode_image(*fields(packed, encoding)).astype(int)
    # neutral chroma: grey pixels, bright then dark
    assert np.abs(out - out[..., :1]).max() <= 2
    assert out[0, 0, 0] > 180 and out[0, 1, 0] < 70
    # the same bytes read with the other layout are not grey: the layouts are told apart
    other = decode_image(*fields(packed, wrong)).astype(int)
    assert np.abs(other - other[..., :1]).max() > 20


def test_bayer():
    mosaic = np.zeros((4, 4), np.uint8)
    mosaic[0::2, 0::2] = 200  # R sites of RGGB
    out = decode_image(*fields(mosaic[..., None], 'bayer_rggb8'))
    assert out.shape == (4, 4, 3) and out[..., 0].mean() > out[..., 2].mean()


def test_unsupported_encoding_names_the_choices():
    with pytest.raises(RegsegError, match=r"unsupported image encoding '32FC1': publish one of "
                                          r"\['8uc1', '8uc3', 'bayer_bggr8'"):
        decode_image('32FC1', 2, 2, 16, bytes(32))


def test_truncated_buffer():
    enc, h, w, step, data, big = fields(RGB, 'rgb8')
    with pytest.raises(RegsegError, match=r'image data has 140 bytes, but step x height = 24 x 6 '
                                          r'= 144: the buffer is truncated'):
        decode_image(enc, h, w, step, data[:-4], big)


def test_step_smaller_than_a_row():
    with pytest.raises(RegsegError, match=r'image step 20 is smaller than width x bytes per pixel '
                                          r"= 8 x 3 = 24 for 'rgb8'"):
        decode_image('rgb8', 6, 8, 20, bytes(120))


def test_empty_and_odd_sizes():
    with pytest.raises(RegsegError, match='image size 0x0 is empty'):
        decode_image('rgb8', 0, 0, 0, b'')
    with pytest.raises(RegsegError, match='YUV 4:2:2 image width 3 must be even'):
        decode_image('yuv422', 2, 3, 6, bytes(12))


def test_compressed_jpeg_and_png_round_trip():
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    big = np.dstack([np.tile(ramp, (48, 1)), np.tile(ramp[::-1], (48, 1)),
                     np.full((48, 64), 90, np.uint8)])
    ok, png = cv2.imencode('.png', cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    assert np.array_equal(decode_compressed('png', png.tobytes())[0], big)
    ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(big, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert np.abs(decode_compressed('jpeg', jpg.tobytes())[0].astype(int) - big).mean() < 3


def test_corrupt_and_empty_compressed():
    with pytest.raises(RegsegError, match=r"compressed image \('jpeg'\) is empty"):
        decode_compressed('jpeg', b'')
    with pytest.raises(RegsegError, match=r"compressed image of 10 bytes with format 'jpeg' has "
                                          r'no JPEG or PNG header: the data is corrupt or '
                                          r'truncated'):
        decode_compressed('jpeg', b'\xff\xd8\xff' + bytes(7))


def test_label_resize_is_nearest_and_blend_weights():
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    up = resize_labels(labels, 4, 4)
    assert set(np.unique(up)) == {0, 1, 2, 255}
    assert up[3, 3] == 255 and up[0, 0] == 0
    a = np.full((2, 2, 3), 100, np.uint8)
    b = np.full((2, 2, 3), 200, np.uint8)
    assert blend(a, b, 0.25)[0, 0, 0] == 125


def test_jpeg_size_reads_the_frame_header_and_half_size_decode_matches():
    ramp = np.linspace(0, 255, 130, dtype=np.uint8)
    img = np.dstack([np.tile(ramp, (67, 1)), np.tile(ramp[::-1], (67, 1)),
                     np.full((67, 130), 90, np.uint8)])
    ok, jpg = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert jpeg_size(jpg.tobytes()) == (67, 130)
    ok, png = cv2.imencode('.png', img)
    assert jpeg_size(png.tobytes()) is None and jpeg_size(b'') is None
    assert png_size(png.tobytes()) == (67, 130) and png_size(jpg.tobytes()) is None
    assert compressed_size(png.tobytes()) == compressed_size(jpg.tobytes()) == (67, 130)
    # A network at most half the frame: libjpeg decodes at half size; the frame size is kept.
    half, size = decode_compressed('jpeg', jpg.tobytes(), network_size=(33, 65))
    assert half.shape == (34, 65, 3) and size == (67, 130)
    full, size = decode_compressed('jpeg', jpg.tobytes(), network_size=(34, 65))
    assert full.shape == (67, 130, 3) and size == (67, 130)
    assert np.abs(half.astype(int) - resize_rgb(full, 34, 65)).mean() < 3
    # PNG has no DCT scaling: always full size.
    assert decode_compressed('png', png.tobytes(), network_size=(8, 8))[0].shape == (67, 130, 3)
    with pytest.raises(RegsegError, match='cannot decode compressed image'):
        decode_compressed('jpeg', jpg.tobytes()[:300], network_size=(33, 65))


def test_decompression_bombs_are_refused_from_the_header_before_decoding():
    bomb = jpeg_bomb(30000, 30000)
    assert len(bomb) < 1000 and jpeg_size(bomb) == (30000, 30000)
    with pytest.raises(RegsegError, match=r"compressed image \('jpeg'\) of 30000x30000 = "
                                          r'900.0 MP exceeds max_input_pixels = 64000000 '
                                          r'\(64.0 MP\): refused before decoding'):
        decode_compressed('jpeg', bomb)
    with pytest.raises(RegsegError, match=r'of 40000x20000 = 800.0 MP exceeds max_input_pixels'):
        decode_compressed('png', png_bomb(40000, 20000))
    with pytest.raises(RegsegError, match=r'exceeds max_input_pixels = 100 '):
        decode_compressed('jpeg', jpeg_bomb(11, 10), max_pixels=100)
    # Raw images obey the same limit (their buffer is already in memory, the RGB copy is not).
    with pytest.raises(RegsegError, match=r'image of 20x10 = 0.0 MP exceeds max_input_pixels'):
        decode_image('mono8', 10, 20, 20, bytes(200), max_pixels=199)
    check_pixels(20, 10, 200)
    check_pixels(20, 10, 0)  # 0: no limit
