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

"""Label sets: ids, names, official palettes, drivable lookup tables."""

import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.core.labels import (
    CAMVID, CAMVID_SEGNET_CLASSES, camvid_segnet_lut, CITYSCAPES, get_label_set, IGNORE_ID)


def test_cityscapes_train_ids_and_palette():
    assert CITYSCAPES.num_classes == 19
    assert CITYSCAPES.classes[0] == 'road' and CITYSCAPES.classes[13] == 'car'
    assert CITYSCAPES.classes[18] == 'bicycle'
    lut = CITYSCAPES.palette()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (128, 64, 128)      # road
    assert tuple(lut[10]) == (70, 130, 180)     # sky
    assert tuple(lut[13]) == (0, 0, 142)        # car
    assert tuple(lut[IGNORE_ID]) == (0, 0, 0)
    assert len({tuple(c) for c in lut[:19]}) == 19


def test_camvid_eleven_classes():
    assert CAMVID.num_classes == 11
    assert CAMVID.classes[5] == 'Road' and CAMVID.default_drivable == ('Road',)
    assert CAMVID.class_ids(['road', 'sidewalk']) == (5, 9)


def test_drivable_lut_marks_only_named_classes():
    lut = CITYSCAPES.drivable_lut(['road', 'Terrain'])
    assert lut[0] == 255 and lut[9] == 255
    assert lut.sum() == 2 * 255 and lut[IGNORE_ID] == 0
    labels = np.array([[0, 1, 9, 255]], np.uint8)
    assert lut[labels].tolist() == [[255, 0, 255, 0]]


def test_unknown_class_and_set_name_the_choices():
    with pytest.raises(RegsegError, match=r"'lawn' is not a class of label set 'cityscapes': "
                                          r"choose from \['road', 'sidewalk'"):
        CITYSCAPES.class_ids(['lawn'])
    with pytest.raises(RegsegError, match=r"unknown label set 'ade20k': choose one of "
                                          r"\['camvid', 'cityscapes'\]"):
        get_label_set('ade20k')


def test_camvid_follows_the_authors_order_and_the_camvid_colours():
    assert CAMVID.classes == ('Building', 'Tree', 'Sky', 'Car', 'SignSymbol', 'Road',
                              'Pedestrian', 'Fence', 'Column_Pole', 'Sidewalk', 'Bicyclist')
    # the standard colours of these classes in CamVid's 32-class list
    assert dict(zip(CAMVID.classes, CAMVID.colors)) == {
        'Building': (128, 0, 0), 'Tree': (128, 128, 0), 'Sky': (128, 128, 128),
        'Car': (64, 0, 128), 'SignSymbol': (192, 128, 128), 'Road': (128, 64, 128),
        'Pedestrian': (64, 64, 0), 'Fence': (64, 64, 128), 'Column_Pole': (192, 192, 128),
        'Sidewalk': (0, 0, 192), 'Bicyclist': (0, 128, 192)}


def test_segnet_camvid_ids_map_to_the_authors_order():
    lut = camvid_segnet_lut()
    # SegNet: Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian,
    # Bicyclist, 11 = unlabelled
    assert lut[:12].tolist() == [2, 0, 8, 5, 9, 1, 4, 7, 3, 6, 10, IGNORE_ID]
    assert (lut[12:] == IGNORE_ID).all()
    for segnet_id, name in enumerate(CAMVID_SEGNET_CLASSES):
        assert CAMVID.classes[lut[segnet_id]] == name


def test_colour_labels_map_by_exact_colour_and_ignore_the_rest():
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[0, 0] = (128, 64, 128)     # Road
    rgb[0, 1] = (128, 0, 0)        # Building
    rgb[0, 2] = (0, 128, 192)      # Bicyclist
    rgb[0, 3] = (128, 0, 192)      # LaneMkgsDriv: not one of the 11 classes
    rgb[1, 0] = (128, 64, 129)     # off by one: ignored
    # rgb[1, 1:] stays (0, 0, 0): Void
    assert CAMVID.ids_from_colors(rgb).tolist() == [[5, 0, 10, IGNORE_ID],
                                                    [IGNORE_ID] * 4]
    with pytest.raises(RegsegError, match=r'shape \(2, 4\): expected \(H, W, 3\) RGB'):
        CAMVID.ids_from_colors(rgb[..., 0])


def test_cityscapes_train_ids_map_to_label_ids():
    lut = CITYSCAPES.label_id_lut()
    # cityscapesscripts labels.py: road 7, sidewalk 8, building 11, ..., bicycle 33
    assert lut[:19].tolist() == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                 31, 32, 33]
    assert lut[IGNORE_ID] == 0
    with pytest.raises(RegsegError, match="label set 'camvid' has no dataset label ids"):
        CAMVID.label_id_lut()


def test_classes_yaml_gives_names_colours_and_drivable(tmp_path):
    from regseg_ros.core.labels import LabelSet, load_label_set
    path = tmp_path / 'warehouse.yaml'
    path.write_text('classes:\n  - {name: floor, color: [128, 64, 128], drivable: true}\n'
                    '  - {name: rack, color: [70, 70, 70]}\n  - pallet\n')
    labels = load_label_set(path)
    assert labels.name == 'warehouse' and labels.classes == ('floor', 'rack', 'pallet')
    assert labels.colors[:2] == ((128, 64, 128), (70, 70, 70))
    assert labels.default_drivable == ('floor',)
    assert LabelSet.from_dict(labels.to_dict()) == labels
    assert LabelSet.from_dict(CITYSCAPES.to_dict()) == CITYSCAPES


@pytest.mark.parametrize('body, message', [
    ('classes: [{name: a}, {name: A}]', "duplicate class name 'A'"),
    ('classes: [{name: a, color: [1, 2]}]', 'is not [R, G, B]'),
    ('classes: [{name: a, drivable: yes please}]', 'write true or false'),
    ('classes: [{name: a, colour: [1, 2, 3], kind: x}]', "unknown keys ['kind']"),
    ('name: x', "needs a 'classes' list"),
    ('classes: [a, b', 'is not valid YAML'),
])
def test_bad_classes_yaml_names_the_file(tmp_path, body, message):
    from regseg_ros.core.labels import load_label_set
    path = tmp_path / 'classes.yaml'
    path.write_text(body + '\n')
    with pytest.raises(RegsegError) as info:
        load_label_set(path)
    assert str(path) in str(info.value) and message in str(info.value)
