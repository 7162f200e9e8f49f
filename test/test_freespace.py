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

"""Freespace cells, fusion and the virtual scan on scenes rendered from a known layout."""

import math

from freespace_scenes import (
    box_hit, BOX_MIN, CAR, cv_project, fisheye_camera, in_road, pinhole_camera, render, ROAD,
    SKY, TERRAIN)
import numpy as np
import pytest
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.freespace import (
    boundary_points, camera_cells, CameraMapper, FREE, fuse, OCCUPIED, Semantics, UNKNOWN,
    VirtualScan)
from regseg_ros.core.labels import CITYSCAPES
from regseg_ros.core.projection import build_lookup, GridSpec

GRID = GridSpec(0.1, 40, 40, 20, 20)
MAX_RANGE = 40.0
SEMANTICS = Semantics.from_names(CITYSCAPES, ['road'])
NEAR_EDGE = BOX_MIN[0]


def state_of(grid, cells_list):
    return fuse(grid, cells_list)


@pytest.fixture(scope='module', params=['pinhole', 'fisheye'])
def scene(request):
    cam = pinhole_camera() if request.param == 'pinhole' else fisheye_camera()
    labels = render(cam)
    lookup = build_lookup(cam.model, cam.pose, GRID, MAX_RANGE)
    cells = camera_cells(lookup, SEMANTICS, labels)
    return cam, labels, lookup, cells


def truth(cam):
    """Cell states the layout implies, and which cells OpenCV says the camera sees."""
    xs, ys = GRID.centres()
    pts = np.stack([xs, ys, np.zeros_like(xs)], axis=1)
    uv, front = cv_project(cam, pts)
    m = cam.model
    centre = np.asarray(cam.pose.translation)
    inview = (front & (uv[:, 0] > -0.5) & (uv[:, 0] < m.width - 0.5) & (uv[:, 1] > -0.5)
              & (uv[:, 1] < m.height - 0.5)
              & (np.hypot(xs - centre[0], ys - centre[1]) <= MAX_RANGE))
    occluded = np.isfinite(box_hit(centre, pts - centre, t_max=1.0))
    expected = np.where(in_road(xs, ys) & ~occluded, FREE, UNKNOWN)
    # The cells holding the edge (it runs on a cell border) and their neighbours: one cell.
    edge = ((np.abs(xs - NEAR_EDGE) <= 1.5 * GRID.resolution + 1e-9)
            & (np.abs(ys) <= 1.0 + GRID.resolution))
    return xs, ys, inview, occluded, expected, edge


def test_grid_agrees_with_the_layout_on_99_percent_of_cells_in_view(scene):
    cam, _labels, _lookup, cells = scene
    state = state_of(GRID, [cells])
    _xs, _ys, inview, _occ, expected, edge = truth(cam)
    judged = inview & ~edge
    assert judged.sum() > 50000
    assert (state[judged] == expected[judged]).mean() >= 0.99
    # both kinds are there in numbers: the road ahead is free, the terrain beside it unknown
    assert (state[judged] == FREE).sum() > 10000
    assert (state[judged] == UNKNOWN).sum() > 10000
    assert (state[~inview] == UNKNOWN).all()


def test_boundary_lies_within_one_cell_of_the_cars_near_edge(scene):
    cam, _labels, _lookup, cells = scene
    state = state_of(GRID, [cells])
    xs, ys, _inview, occluded, _expected, edge = truth(cam)
    occ = state == OCCUPIED
    # Every y-row across the car's face holds an occupied cell at its near edge ...
    for y in np.arange(-0.95, 1.0, 0.1):
        row = occ & (np.abs(ys - y) < 0.01)
        assert row.any(), f'no occupied cell at y={y:.2f}'
        assert abs(xs[row].min() - NEAR_EDGE) <= 1.5 * GRID.resolution + 1e-9, (y, xs[row].min())
    # ... and occupied cells lie at the edge or in the car's shadow, never on the open road.
    assert (occ & ~edge & ~occluded).sum() <= 2
    assert occ.sum() >= 20


def test_scan_ranges_match_the_analytic_distance_to_the_car(scene):
    _cam, _labels, _lookup, cells = scene
    scan = VirtualScan(GRID, math.radians(0.5), MAX_RANGE)
    ranges = scan.ranges(state_of(GRID, [cells]))
    centres = scan.angle_min + (np.arange(scan.bins) + 0.5) * scan.angle_increment
    half_face = math.atan2(0.9, NEAR_EDGE)
    on_car = np.abs(centres) < half_face
    assert on_car.sum() >= 6
    analytic = NEAR_EDGE / np.cos(centres[on_car])
    np.testing.assert_allclose(ranges[on_car], analytic, atol=GRID.resolution)
    # Behind the vehicle no camera looks: NaN; along the open road ahead of the car's side,
    # free out to max_range: +inf.
    behind = np.abs(centres) > math.radians(120)
    assert np.isnan(ranges[behind]).all()
    assert np.isinf(ranges[(centres > math.radians(5)) & (centres < math.radians(6))]).any()


def test_non_obstacle_boundary_ends_the_free_run_without_occupying():
    cam = pinhole_camera()
    labels = render(cam)
    labels[labels == CAR] = SKY   # the car becomes something that is not an obstacle
    lookup = build_lookup(cam.model, cam.pose, GRID, MAX_RANGE)
    state = state_of(GRID, [camera_cells(lookup, SEMANTICS, labels)])
    assert not (state == OCCUPIED).any()
    xs, ys = GRID.centres()
    assert state[GRID.cell_of(NEAR_EDGE - 1.0, 0.0)] == FREE
    assert state[GRID.cell_of(NEAR_EDGE + 1.0, 0.0)] == UNKNOWN
    # obstacle_classes decides: with 'sky' an obstacle the edge is occupied again
    sky_obstacle = Semantics.from_names(CITYSCAPES, ['road'], ['sky'])
    state = state_of(GRID, [camera_cells(lookup, sky_obstacle, labels)])
    assert state[GRID.cell_of(NEAR_EDGE + 0.05, 0.05)] == OCCUPIED


def test_low_confidence_pixels_leave_the_cells_unknown():
    cam = pinhole_camera()
    labels = render(cam)
    lookup = build_lookup(cam.model, cam.pose, GRID, MAX_RANGE)
    conf = np.full(labels.shape, 250, np.uint8)
    conf[300:, :] = 100          # the lower image part: about 0.39
    strict = Semantics.from_names(CITYSCAPES, ['road'], min_confidence=0.5)
    cells = camera_cells(lookup, strict, labels, conf)
    assert len(cells.free) == 0 and len(cells.occupied) == 0
    lenient = Semantics.from_names(CITYSCAPES, ['road'], min_confidence=0.3)
    assert len(camera_cells(lookup, lenient, labels, conf).free) > 10000


def test_fusion_of_two_overlapping_cameras():
    front, fisheye = pinhole_camera(), fisheye_camera()
    a = camera_cells(build_lookup(front.model, front.pose, GRID, MAX_RANGE), SEMANTICS,
                     render(front))
    b = camera_cells(build_lookup(fisheye.model, fisheye.pose, GRID, MAX_RANGE), SEMANTICS,
                     render(fisheye))
    fused = fuse(GRID, [a, b])
    sa, sb = fuse(GRID, [a]), fuse(GRID, [b])
    overlap = (sa != UNKNOWN) & (sb != UNKNOWN)
    assert overlap.sum() > 20000
    expected = np.where((sa == OCCUPIED) | (sb == OCCUPIED), OCCUPIED,
                        np.where((sa == FREE) | (sb == FREE), FREE, UNKNOWN))
    np.testing.assert_array_equal(fused, expected)
    # the fisheye sees road to the left the front camera does not: the union is larger
    assert (fused == FREE).sum() > max((sa == FREE).sum(), (sb == FREE).sum())
    # one camera's occupied wins over the other's free
    conflict = (sa == OCCUPIED) & (sb == FREE) | (sb == OCCUPIED) & (sa == FREE)
    assert (fused[conflict] == OCCUPIED).all()
    pts = boundary_points(GRID, fused)
    assert len(pts) == (fused == OCCUPIED).sum()
    assert np.all(pts[:, 2] == 0.0)


def test_mapper_builds_the_lookup_once_and_scales_to_the_label_size():
    cam = pinhole_camera()
    mapper = CameraMapper(GRID, SEMANTICS, MAX_RANGE)
    labels = render(cam)
    full = mapper.cells(cam.model, cam.pose, labels)
    mapper.cells(cam.model, cam.pose, labels)
    assert mapper.builds == 1
    half = mapper.cells(cam.model, cam.pose, labels[::2, ::2].copy())
    assert mapper.builds == 2
    # The same car edge from the half-size labels (a coarser view, the same place)
    xs, _ys = GRID.centres()
    assert len(half.occupied) >= 15
    assert abs(np.median(xs[half.occupied]) - np.median(xs[full.occupied])) <= GRID.resolution


def test_semantics_reject_bad_class_settings():
    with pytest.raises(RegsegError, match='drivable_classes is empty'):
        Semantics.from_names(CITYSCAPES, [])
    with pytest.raises(RegsegError, match=r"\['road'\] are in both"):
        Semantics.from_names(CITYSCAPES, ['road'], ['road', 'car'])
    with pytest.raises(RegsegError, match='min_confidence 1.5'):
        Semantics.from_names(CITYSCAPES, ['road'], min_confidence=1.5)


def test_boundary_scan_per_column():
    labels = np.full((6, 3), ROAD, np.uint8)
    labels[1, 0] = CAR
    labels[3, 0] = TERRAIN      # nearer than the car: ends the run, not an obstacle
    labels[2, 1] = CAR
    row, obstacle = SEMANTICS.boundary(labels)
    assert row.tolist() == [3, 2, -1]
    assert obstacle.tolist() == [False, True, False]


@pytest.mark.parametrize('increment,bins', [
    (math.radians(0.5), 720), (0.0087266, 720), (0.008726646, 720), (math.radians(1.0), 360),
    (0.01, 629)])
def test_scan_bins_cover_the_circle_once(increment, bins):
    """0.5 degrees written as 0.0087266 in YAML is 720 bins, not 720 plus a sliver bin."""
    scan = VirtualScan(GRID, increment, MAX_RANGE)
    assert scan.bins == bins
    assert scan.bins * increment >= 2 * math.pi * (1 - 1e-4)
