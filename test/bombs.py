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
"""Decompression bombs for the tests: tiny, valid JPEG/PNG files whose headers claim huge sizes."""

import struct
import zlib

import cv2
import numpy as np


def jpeg_bomb(width=30000, height=30000):
    """Return a real JPEG of under 1 KB whose frame header claims ``width`` x ``height``."""
    ok, enc = cv2.imencode('.jpg', np.zeros((16, 16, 3), np.uint8))
    data = bytearray(enc.tobytes())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def png_bomb(width=30000, height=30000):
    """Return a small valid PNG whose header claims ``width`` x ``height`` RGB pixels."""
    def chunk(kind, body):
        return struct.pack('>I', len(body)) + kind + body + struct.pack(
            '>I', zlib.crc32(kind + body))
    idat = zlib.compress(b'\0' * (1 + 3 * width) * 4)  # a few rows of zeros
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat)
            + chunk(b'IEND', b''))
