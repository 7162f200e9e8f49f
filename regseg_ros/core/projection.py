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
Camera models, poses and the bird's-eye grid: the lookup from grid cells to image pixels.

ROS-free (numpy only). Frames follow REP-103/105: the vehicle (base) frame has x forward, y left,
z up; a camera's optical frame has z forward, x right, y down. Intrinsics follow
``sensor_msgs/CameraInfo``: K row-major, D per ``distortion_model`` (``plumb_bob`` k1 k2 p1 p2
[k3], ``rational_polynomial`` k1 k2 p1 p2 k3 k4 k5 k6, ``equidistant`` k1 k2 k3 k4), pixel
coordinates with (0, 0) at the centre of the top-left pixel as OpenCV uses them.

The projection maths is implemented here, vectorised over all cells; the tests compare it with
OpenCV's ``projectPoints`` as an independent truth.
"""

from dataclasses import dataclass
import math
from typing import Optional, Sequence, Tuple

import numpy as np

from regseg_ros.core.errors import RegsegError

DISTORTION_COEFFS = {'plumb_bob': (4, 5, 8), 'rational_polynomial': (8,),
                     'equidistant': (4,)}
# Normalised image radius (tan of the angle off the axis) up to which a pinhole model is used:
# tan(85 deg). Beyond it, and beyond where a distortion polynomial stops growing, a point is
# not seen: a polynomial that bends back would fold far-off points into the image.
_MAX_TAN = math.tan(math.radians(85.0))
_MAX_FISHEYE_THETA = math.radians(89.5)

# Optical frame axes (z forward, x right, y down) in the camera body frame (x forward, y left,
# z up): the columns of R_body_optical.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0],
                           [-1.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one camera as in sensor_msgs/CameraInfo (validated on construction)."""

    K: Tuple[float, ...]
    D: Tuple[float, ...]
    distortion_model: str
    width: int
    height: int
    name: str = 'camera'

    def __post_init__(self):
        k = tuple(float(v) for v in self.K)
        object.__setattr__(self, 'K', k)
        object.__setattr__(self, 'D', tuple(float(v) for v in self.D))
        if len(k) != 9:
            raise RegsegError(f'camera {self.name!r}: K has {len(k)} values: expected 9 '
                              '(3x3 row-major fx 0 cx 0 fy cy 0 0 1)')
        if not all(math.isfinite(v) for v in k + self.D):
            raise RegsegError(f'camera {self.name!r}: K or D holds a non-finite value: '
                              'calibrate the camera')
        if k[0] <= 0 or k[4] <= 0:
            raise RegsegError(
                f'camera {self.name!r}: K has fx={k[0]:g} fy={k[4]:g} (an uncalibrated camera '
                'publishes a zero K): calibrate it or set the intrinsics as parameters')
        if self.distortion_model not in DISTORTION_COEFFS:
            raise RegsegError(
                f'camera {self.name!r}: unknown distortion_model {self.distortion_model!r}: '
                f'use one of {sorted(DISTORTION_COEFFS)} (or rectify the images and use '
                'plumb_bob with D all zero)')
        allowed = DISTORTION_COEFFS[self.distortion_model]
        if self.D and len(self.D) not in allowed:
            raise RegsegError(
                f'camera {self.name!r}: {self.distortion_model} takes '
                f'{" or ".join(map(str, allowed))} coefficients in D, got {len(self.D)}')
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise RegsegError(f'camera {self.name!r}: image size {self.width}x{self.height}: '
                              'width and height must be positive')

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.K, float).reshape(3, 3)

    def coefficients(self) -> np.ndarray:
        """D padded to the model's full length (8 for pinhole models, 4 for equidistant)."""
        n = 4 if self.distortion_model == 'equidistant' else 8
        d = np.zeros(n)
        d[:len(self.D)] = self.D
        return d

    def scaled(self, width: int, height: int) -> 'CameraModel':
        """
        Return the same camera for images resized to WIDTHxHEIGHT (e.g. labels at network size).

        Raises when the aspect ratio differs by more than one pixel: that is another camera or
        a cropped image, not a resize.
        """
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        if abs(self.height * sx - height) > 1.0 + 1e-9:
            raise RegsegError(
                f'camera {self.name!r}: label image is {width}x{height} but camera_info says '
                f'{self.width}x{self.height} (another aspect ratio): publish labels at the '
                'camera size or a plain resize of it')
        k = list(self.K)
        k[0], k[1], k[2] = k[0] * sx, k[1] * sx, (k[2] + 0.5) * sx - 0.5
        k[4], k[5] = k[4] * sy, (k[5] + 0.5) * sy - 0.5
        return CameraModel(tuple(k), self.D, self.distortion_model, width, height, self.name)

    def project(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Project (N, 3) points in the optical frame; return (u, v, seen).

        ``seen`` is False behind the camera, beyond the lens model's valid field of view and
        outside the image; u and v are pixel coordinates (garbage where not seen).
        """
        p = np.asarray(points, float)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        front = z > 1e-6
        zs = np.where(front, z, 1.0)
        a, b = x / zs, y / zs
        r2 = a * a + b * b
        d = self.coefficients()
        if self.distortion_model == 'equidistant':
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            xd, yd = a * scale, b * scale
            front &= theta < self._valid_limit()
        else:
            k1, k2, p1, p2, k3, k4, k5, k6 = d
            radial = ((1 + r2 * (k1 + r2 * (k2 + r2 * k3)))
                      / (1 + r2 * (k4 + r2 * (k5 + r2 * k6))))
            xd = a * radial + 2 * p1 * a * b + p2 * (r2 + 2 * a * a)
            yd = b * radial + p1 * (r2 + 2 * b * b) + 2 * p2 * a * b
            front &= r2 < self._valid_limit() ** 2
        fx, skew, cx, _, fy, cy = self.K[:6]
        u = fx * xd + skew * yd + cx
        v = fy * yd + cy
        seen = front & (u > -0.5) & (u < self.width - 0.5) & (v > -0.5) & (v < self.height - 0.5)
        return u, v, seen

    def _valid_limit(self) -> float:
        """Largest tan (pinhole) or angle (fisheye) off the axis where the model still grows."""
        d = self.coefficients()
        if self.distortion_model == 'equidistant':
            t = np.linspace(0.0, _MAX_FISHEYE_THETA, 4000)
            t2 = t * t
            mapped = t * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
        else:
            t = np.linspace(0.0, _MAX_TAN, 4000)
            r2 = t * t
            mapped = t * ((1 + r2 * (d[0] + r2 * (d[1] + r2 * d[4])))
                          / (1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))))
        bends = np.nonzero(np.diff(mapped) <= 0)[0]
        return float(t[bends[0]]) if len(bends) else float(t[-1])


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """REP-103 fixed-axis roll, pitch, yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def rotation_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Rotation matrix of a quaternion (normalised here; a zero quaternion raises)."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not n > 1e-9:
        raise RegsegError('transform has a zero quaternion: publish a valid rotation')
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass(frozen=True)
class CameraPose:
    """The optical frame in the base frame: p_base = rotation @ p_optical + translation."""

    rotation: Tuple[float, ...]      # 3x3 row-major
    translation: Tuple[float, float, float]

    @classmethod
    def from_body(cls, x: float, y: float, z: float, roll: float, pitch: float,
                  yaw: float) -> 'CameraPose':
        """Pose of the camera BODY frame (x optical axis, y left, z up) in the base frame."""
        r = rotation_rpy(roll, pitch, yaw) @ R_BODY_OPTICAL
        return cls(tuple(np.round(r, 15).ravel()), (float(x), float(y), float(z)))

    @classmethod
    def from_params(cls, values: Sequence[float], name: str = 'camera') -> 'CameraPose':
        """From the ``pose`` parameter [x, y, z, roll, pitch, yaw] (metres, radians)."""
        values = [float(v) for v in values]
        if len(values) != 6 or not all(math.isfinite(v) for v in values):
            raise RegsegError(f'camera {name!r}: pose {values} must be 6 finite numbers '
                              '[x, y, z, roll, pitch, yaw] (metres, radians) or [] for tf2')
        return cls.from_body(*values)

    @classmethod
    def from_quaternion(cls, translation: Sequence[float],
                        quaternion: Sequence[float]) -> 'CameraPose':
        """From a transform base <- optical frame (translation, quaternion x y z w)."""
        r = rotation_quaternion(*quaternion)
        return cls(tuple(r.ravel()), tuple(float(v) for v in translation))

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.rotation, float).reshape(3, 3)


@dataclass(frozen=True)
class GridSpec:
    """
    A bird's-eye grid in the base frame on the plane z = ground_height.

    Cells are ``resolution`` metres square; ``width`` cells along x (from -back to forward),
    ``height`` cells along y (from -right to left): row i, column j is the cell whose centre is
    x = -back + (j + 0.5) res, y = -right + (i + 0.5) res, the nav_msgs/OccupancyGrid layout
    with its origin at (-back, -right).
    """

    resolution: float = 0.1
    forward: float = 40.0
    back: float = 40.0
    left: float = 20.0
    right: float = 20.0
    ground_height: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise RegsegError(f'grid_resolution {self.resolution} must be positive (metres per '
                              'cell, e.g. 0.1)')
        for name in ('forward', 'back', 'left', 'right'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise RegsegError(f'grid_{name} {value} must be zero or positive (metres)')
        if self.forward + self.back <= 0 or self.left + self.right <= 0:
            raise RegsegError('the grid is empty: grid_forward + grid_back and grid_left + '
                              'grid_right must be positive')
        if self.width * self.height > 50_000_000:
            raise RegsegError(f'grid of {self.width}x{self.height} cells is too large: raise '
                              'grid_resolution or shrink the extents')

    @property
    def width(self) -> int:
        return max(1, int(round((self.forward + self.back) / self.resolution)))

    @property
    def height(self) -> int:
        return max(1, int(round((self.left + self.right) / self.resolution)))

    @property
    def origin(self) -> Tuple[float, float, float]:
        return (-self.back, -self.right, self.ground_height)

    def centres(self) -> Tuple[np.ndarray, np.ndarray]:
        """(x, y) of every cell centre, flat in row-major (OccupancyGrid data) order."""
        xs = -self.back + (np.arange(self.width) + 0.5) * self.resolution
        ys = -self.right + (np.arange(self.height) + 0.5) * self.resolution
        return np.tile(xs, self.height), np.repeat(ys, self.width)

    def cell_of(self, x: float, y: float) -> Optional[int]:
        """Flat index of the cell holding (x, y), or None outside the grid."""
        j = int(math.floor((x + self.back) / self.resolution))
        i = int(math.floor((y + self.right) / self.resolution))
        if 0 <= j < self.width and 0 <= i < self.height:
            return i * self.width + j
        return None


@dataclass
class CellLookup:
    """
    Which pixel sees each visible cell, built once per (camera, pose, grid).

    ``cells``: flat grid indices (int32) of the cells the camera sees; ``pixels``: flat pixel
    index of each one's centre, ``rows``/``cols`` its image row and column; ``b_lo``..``b_hi``:
    the boundary rows whose ground contact (the bottom edge of the pixel, row + 0.5) falls
    within the cell's footprint in its column (b_lo > b_hi: none).
    """

    cells: np.ndarray
    pixels: np.ndarray
    cols: np.ndarray
    rows: np.ndarray
    b_lo: np.ndarray
    b_hi: np.ndarray
    width: int
    height: int

    @property
    def size(self) -> int:
        """Return the number of cells the camera sees."""
        return len(self.cells)


def check_above_ground(pose: CameraPose, grid: GridSpec, name: str = 'camera') -> None:
    """Raise when the camera is not above the ground plane (it would see no ground)."""
    z = pose.translation[2]
    if not z > grid.ground_height + 1e-3:
        raise RegsegError(
            f'camera {name!r} is at z={z:.3f} m, not above the ground (ground_height '
            f'{grid.ground_height:.3f} m in the base frame): fix its pose (z up, metres) or '
            'ground_height')


def build_lookup(camera: CameraModel, pose: CameraPose, grid: GridSpec,
                 max_range: float = math.inf) -> CellLookup:
    """
    Project every cell centre into the camera; keep the cells it sees within ``max_range``.

    ``max_range`` is the distance on the ground from the point below the camera.
    """
    check_above_ground(pose, grid, camera.name)
    xs, ys = grid.centres()
    cam = np.asarray(pose.translation, float)
    dx, dy = xs - cam[0], ys - cam[1]
    dist = np.hypot(dx, dy)
    keep = np.nonzero(dist <= max_range)[0]
    dx, dy, dist = dx[keep], dy[keep], dist[keep]
    rot_t = pose.matrix.T
    dz = grid.ground_height - cam[2]

    def to_optical(ex, ey):
        rel = np.stack([ex, ey, np.full_like(ex, dz)], axis=1)
        return rel @ rot_t.T

    u, v, seen = camera.project(to_optical(dx, dy))
    idx = np.nonzero(seen)[0]
    dx, dy, dist, u, v = dx[idx], dy[idx], dist[idx], u[idx], v[idx]
    # Half a cell along the ground ray from the camera's foot point (nearer / farther).
    half = 0.5 * grid.resolution / np.maximum(dist, 1e-9)
    near = np.maximum(1.0 - half, 0.0)
    _, v_near, ok_near = camera.project(to_optical(dx * near, dy * near))
    _, v_far, ok_far = camera.project(to_optical(dx * (1 + half), dy * (1 + half)))
    # Out of view: the footprint runs to the image edge (below) or up to the centre (above).
    v_near = np.where(ok_near, v_near, np.maximum(v + 0.5, camera.height - 0.5))
    v_far = np.where(ok_far, v_far, v)
    cols = np.clip(np.rint(u), 0, camera.width - 1).astype(np.intp)
    rows = np.clip(np.rint(v), 0, camera.height - 1)
    lo, hi = np.minimum(v_near, v_far), np.maximum(v_near, v_far)
    # lo <= b + 0.5 < hi  <=>  ceil(lo - 0.5) <= b <= ceil(hi - 0.5) - 1, and b >= 0
    b_lo = np.maximum(np.ceil(lo - 0.5), 0)
    b_hi = np.ceil(hi - 0.5) - 1
    return CellLookup(cells=keep[idx].astype(np.int32), pixels=rows.astype(np.int64)
                      * camera.width + cols, cols=cols, rows=rows.astype(np.int32),
                      b_lo=b_lo.astype(np.int32), b_hi=np.maximum(b_hi, -1).astype(np.int32),
                      width=camera.width, height=camera.height)
