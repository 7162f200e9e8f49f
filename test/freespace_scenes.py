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
Synthetic scenes for the freespace tests: label images rendered from a bird's-eye layout.

The layout is a road polygon on flat ground (z = 0 in the base frame) and a car box standing on
it. Pixels are cast to rays with OpenCV's ``undistortPoints`` (``cv2.fisheye`` for equidistant
lenses), independently of regseg_ros.core.projection; truth for grid cells comes from OpenCV's
``projectPoints`` of their centres.
"""

from dataclasses import dataclass
import math

import cv2
import numpy as np
from regseg_ros.core.labels import CITYSCAPES
from regseg_ros.core.projection import CameraModel, CameraPose

ROAD, TERRAIN, SKY, CAR = CITYSCAPES.class_ids(('road', 'terrain', 'sky', 'car'))
# A road widening ahead (convex, counter-clockwise) and a car ahead on it.
ROAD_POLYGON = ((-30.0, -4.0), (60.0, -6.0), (60.0, 6.0), (-30.0, 4.0))
BOX_MIN = (12.0, -1.0, 0.0)
BOX_MAX = (16.5, 1.0, 1.8)


@dataclass(frozen=True)
class SceneCamera:
    """A camera of the scene: intrinsics and its body pose [x, y, z, roll, pitch, yaw]."""

    model: CameraModel
    body_pose: tuple

    @property
    def pose(self) -> CameraPose:
        return CameraPose.from_body(*self.body_pose)

    def cv_extrinsics(self):
        """(rvec, tvec) mapping base-frame points into the optical frame, for OpenCV."""
        rot = self.pose.matrix
        centre = np.asarray(self.pose.translation)
        rvec, _ = cv2.Rodrigues(rot.T)
        return rvec, -rot.T @ centre


def pinhole_camera(name='front', x=1.0, y=0.0, yaw=0.0, distortion=(-0.05, 0.01, 0.001,
                                                                    -0.001, 0.0)):
    """640x480 pinhole, 1.5 m above the ground, pitched 10 degrees down."""
    model = CameraModel((500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0), distortion,
                        'plumb_bob', 640, 480, name)
    return SceneCamera(model, (x, y, 1.5, 0.0, math.radians(10.0), yaw))


def fisheye_camera(name='fisheye', x=0.5, y=0.4, yaw=0.35):
    """
    1280x960 equidistant fisheye (about 150 degrees across), roof-mounted 2 m up, pitched 20 down.

    At the car (12 m) one pixel row spans about 0.15 m of ground: the boundary's error is half
    of that, within one 0.1 m cell.
    """
    model = CameraModel((460.0, 0.0, 639.5, 0.0, 460.0, 479.5, 0.0, 0.0, 1.0),
                        (0.04, -0.01, 0.002, -0.0005), 'equidistant', 1280, 960, name)
    return SceneCamera(model, (x, y, 2.0, 0.0, math.radians(20.0), yaw))


def in_road(x, y):
    """Return True where (x, y) lies inside the road polygon."""
    inside = np.ones(np.shape(x), bool)
    pts = ROAD_POLYGON
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def box_hit(origin, dirs, t_max=None):
    """Ray parameter of the first hit of the car box per ray (inf where missed)."""
    lo, hi = np.asarray(BOX_MIN), np.asarray(BOX_MAX)
    with np.errstate(divide='ignore', invalid='ignore'):
        t0 = (lo - origin) / dirs
        t1 = (hi - origin) / dirs
    t_near = np.nanmax(np.minimum(t0, t1), axis=1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=1)
    hit = (t_near <= t_far) & (t_far > 0)
    if t_max is not None:
        hit &= t_near < t_max
    return np.where(hit, np.maximum(t_near, 0.0), np.inf)


def render(cam: SceneCamera) -> np.ndarray:
    """Render the label image (HxW uint8 Cityscapes ids) the camera sees of the layout."""
    m = cam.model
    u, v = np.meshgrid(np.arange(m.width, dtype=np.float64),
                       np.arange(m.height, dtype=np.float64))
    px = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
    k, d = m.matrix, np.asarray(m.D)
    if m.distortion_model == 'equidistant':
        norm = cv2.fisheye.undistortPoints(px, k, d)[:, 0]
    else:
        norm = cv2.undistortPoints(px, k, d)[:, 0]
    rays = np.concatenate([norm, np.ones((len(norm), 1))], axis=1) @ cam.pose.matrix.T
    origin = np.asarray(cam.pose.translation)
    with np.errstate(divide='ignore', invalid='ignore'):
        t_ground = np.where(rays[:, 2] < 0, -origin[2] / rays[:, 2], np.inf)
    t_box = box_hit(origin, rays)
    labels = np.full(len(rays), SKY, np.uint8)
    ground = np.isfinite(t_ground) & (t_ground < t_box)
    gx = origin[0] + t_ground[ground] * rays[ground, 0]
    gy = origin[1] + t_ground[ground] * rays[ground, 1]
    labels[ground] = np.where(in_road(gx, gy), ROAD, TERRAIN)
    labels[np.isfinite(t_box) & (t_box <= t_ground)] = CAR
    return labels.reshape(m.height, m.width)


def cv_project(cam: SceneCamera, points: np.ndarray):
    """Return OpenCV's pixels of (N, 3) base-frame points and which lie in front of the lens."""
    rvec, tvec = cam.cv_extrinsics()
    m = cam.model
    pts = np.ascontiguousarray(points, np.float64)
    if m.distortion_model == 'equidistant':
        uv, _ = cv2.fisheye.projectPoints(pts[:, None, :], rvec, tvec, m.matrix,
                                          np.asarray(m.D))
    else:
        uv, _ = cv2.projectPoints(pts, rvec, tvec, m.matrix, np.asarray(m.D))
    rot, _ = cv2.Rodrigues(rvec)
    z = pts @ rot[2] + tvec[2]
    return uv[:, 0], z > 0
