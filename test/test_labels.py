"""Label sets: ids, names, official palettes, drivable lookup tables."""

import numpy as np
import pytest
from regseg_ros import RegsegError
from regseg_ros.labels import CAMVID, CITYSCAPES, get_label_set, IGNORE_ID


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
