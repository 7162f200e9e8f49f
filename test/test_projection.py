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

"""The projection core against OpenCV's projectPoints as the independent truth."""

import math

import cv2
from freespace_scenes import cv_project, fisheye_camera, pinhole_camera, SceneCamera
import numpy as np
import pytest
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.projection import (
    build_lookup, CameraModel, CameraPose, GridSpec, rotation_quaternion)

K = (500.0, 0.0, 319.5, 0.0, 480.0, 239.5, 0.0, 0.0, 1.0)
MODELS = [
    ('plumb_bob', (-0.28, 0.07, 0.001, -0.002, 0.0)),
    ('plumb_bob', (-0.1, 0.02, 0.0005, 0.001)),
    ('rational_polynomial', (0.6, -0.1, 0.001, -0.001, 0.02, 0.9, -0.05, 0.01)),
    ('equidistant', (0.05, -0.02, 0.004, -0.001)),
]


def random_points(n=20000, seed=1):
    rng = np.random.default_rng(seed)
    pts = rng.uniform([-3.0, -2.0, 0.2], [3.0, 2.0, 6.0], size=(n, 3))
    return pts


@pytest.mark.parametrize('model,d', MODELS)
def test_project_matches_opencv(model, d):
    cam = CameraModel(K, d, model, 640, 480, 'test')
    pts = random_points()
    u, v, seen = cam.project(pts)
    zero = np.zeros(3)
    if model == 'equidistant':
        uv, _ = cv2.fisheye.projectPoints(pts[:, None, :], zero, zero, cam.matrix, np.array(d))
    else:
        uv, _ = cv2.projectPoints(pts, zero, zero, cam.matrix, np.array(d))
    uv = uv[:, 0]
    inside = (uv[:, 0] > -0.5) & (uv[:, 0] < 639.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < 479.5)
    # A pinhole polynomial folds back far outside its field: OpenCV then puts points into the
    # image that the lens cannot see; those are the only disagreement allowed.
    assert seen.sum() > 3000
    assert (seen & ~inside).sum() == 0
    assert (inside & ~seen).sum() <= 0.01 * inside.sum()
    np.testing.assert_allclose(u[seen], uv[seen, 0], atol=1e-6)
    np.testing.assert_allclose(v[seen], uv[seen, 1], atol=1e-6)


def test_points_behind_the_camera_are_not_seen():
    cam = CameraModel(K, (), 'plumb_bob', 640, 480)
    _u, _v, seen = cam.project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.1, 0.1, 0.0]]))
    assert seen.tolist() == [False, True, False]


def test_scaled_camera_sees_the_same_point_at_the_scaled_pixel():
    cam = CameraModel(K, MODELS[0][1], 'plumb_bob', 640, 480)
    half = cam.scaled(320, 240)
    p = np.array([[0.3, -0.2, 2.0]])
    u, v, _ = cam.project(p)
    uh, vh, _ = half.project(p)
    assert uh[0] == pytest.approx((u[0] + 0.5) / 2 - 0.5)
    assert vh[0] == pytest.approx((v[0] + 0.5) / 2 - 0.5)
    with pytest.raises(RegsegError, match='another aspect ratio'):
        cam.scaled(320, 320)


@pytest.mark.parametrize('kwargs,expected', [
    ({'K': (0.0,) * 9}, 'zero K'),
    ({'distortion_model': 'kannala'}, "unknown distortion_model 'kannala'"),
    ({'D': (0.1, 0.2, 0.3)}, 'plumb_bob takes 4 or 5 or 8 coefficients in D, got 3'),
    ({'width': 0}, 'image size 0x480'),
])
def test_bad_intrinsics_raise_naming_the_camera(kwargs, expected):
    args = {'K': K, 'D': (), 'distortion_model': 'plumb_bob', 'width': 640, 'height': 480,
            'name': 'left'}
    args.update(kwargs)
    with pytest.raises(RegsegError, match="camera 'left'") as info:
        CameraModel(**args)
    assert expected in str(info.value)


def test_body_pose_pitch_looks_down_and_yaw_looks_left():
    down = CameraPose.from_body(0, 0, 1.5, 0, math.radians(10), 0).matrix
    # The optical axis (z) in the base frame: forward and down by 10 degrees.
    np.testing.assert_allclose(down[:, 2], [math.cos(math.radians(10)), 0,
                                            -math.sin(math.radians(10))], atol=1e-12)
    # The optical x axis (image right) points to the vehicle's right (-y).
    np.testing.assert_allclose(down[:, 0], [0, -1, 0], atol=1e-12)
    left = CameraPose.from_body(0, 0, 1.5, 0, 0, math.pi / 2).matrix
    np.testing.assert_allclose(left[:, 2], [0, 1, 0], atol=1e-12)


def test_quaternion_pose_equals_body_pose():
    body = CameraPose.from_body(1.0, 0.2, 1.5, 0.02, 0.17, -0.3)
    rvec, _ = cv2.Rodrigues(body.matrix)
    angle = float(np.linalg.norm(rvec))
    axis = rvec[:, 0] / angle
    q = (*(axis * math.sin(angle / 2)), math.cos(angle / 2))
    np.testing.assert_allclose(rotation_quaternion(*q), body.matrix, atol=1e-9)
    with pytest.raises(RegsegError, match='zero quaternion'):
        rotation_quaternion(0, 0, 0, 0)


def test_grid_layout_is_the_occupancy_grid_one():
    grid = GridSpec(0.5, forward=10, back=2, left=3, right=1)
    assert (grid.width, grid.height) == (24, 8)
    assert grid.origin == (-2, -1, 0.0)
    xs, ys = grid.centres()
    assert (xs[0], ys[0]) == (-1.75, -0.75)
    assert (xs[1], ys[1]) == (-1.25, -0.75)            # along a row: x grows
    assert (xs[24], ys[24]) == (-1.75, -0.25)          # next row: y grows
    assert grid.cell_of(9.9, 2.9) == 24 * 8 - 1
    assert grid.cell_of(10.1, 0) is None


@pytest.mark.parametrize('factory', [pinhole_camera, fisheye_camera])
def test_lookup_pixels_are_opencvs_pixels_of_the_cell_centres(factory):
    cam: SceneCamera = factory()
    grid = GridSpec(0.1, 40, 40, 20, 20)
    lookup = build_lookup(cam.model, cam.pose, grid, max_range=40.0)
    xs, ys = grid.centres()
    pts = np.stack([xs, ys, np.zeros_like(xs)], axis=1)
    uv, front = cv_project(cam, pts)
    m = cam.model
    inview = front & (uv[:, 0] > -0.5) & (uv[:, 0] < m.width - 0.5) & \
        (uv[:, 1] > -0.5) & (uv[:, 1] < m.height - 0.5)
    centre = np.asarray(cam.pose.translation)
    inview &= np.hypot(xs - centre[0], ys - centre[1]) <= 40.0
    seen = np.zeros_like(inview)
    seen[lookup.cells] = True
    assert inview.sum() > 50000
    assert (seen ^ inview).sum() <= 1e-3 * inview.sum()
    both = np.nonzero(seen[lookup.cells] & inview[lookup.cells])[0]
    cells = lookup.cells[both]
    np.testing.assert_array_equal(lookup.cols[both], np.clip(np.rint(uv[cells, 0]), 0,
                                                             m.width - 1))
    np.testing.assert_array_equal(lookup.rows[both], np.clip(np.rint(uv[cells, 1]), 0,
                                                             m.height - 1))


def test_camera_below_the_ground_raises_naming_it():
    cam = pinhole_camera(name='rear')
    below = CameraPose.from_body(0, 0, -0.2, 0, 0.17, 0)
    with pytest.raises(RegsegError, match="camera 'rear' is at z=-0.200 m, not above"):
        build_lookup(cam.model, below, GridSpec())
