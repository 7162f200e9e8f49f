"""Label sets: class names, colour palettes, ignore id and default drivable classes."""

from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

import numpy as np

from regseg_ros.errors import RegsegError

IGNORE_ID = 255


@dataclass(frozen=True)
class LabelSet:
    """Class names by id, an RGB palette and the classes a vehicle may drive on by default."""

    name: str
    classes: Tuple[str, ...]
    colors: Tuple[Tuple[int, int, int], ...]
    default_drivable: Tuple[str, ...]
    ignore_id: int = IGNORE_ID

    def __post_init__(self):
        if len(self.classes) != len(self.colors):
            raise RegsegError(f'label set {self.name!r}: {len(self.classes)} classes but '
                              f'{len(self.colors)} colours')

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def palette(self) -> np.ndarray:
        """Return a (256, 3) uint8 lookup table: class colours, black for ignore and unused ids."""
        lut = np.zeros((256, 3), np.uint8)
        lut[:self.num_classes] = np.asarray(self.colors, np.uint8)
        return lut

    def class_ids(self, names: Iterable[str]) -> Tuple[int, ...]:
        """Ids of class names (case-insensitive); unknown names raise listing the valid ones."""
        lookup = {c.lower(): i for i, c in enumerate(self.classes)}
        ids = []
        for name in names:
            try:
                ids.append(lookup[str(name).strip().lower()])
            except KeyError:
                raise RegsegError(
                    f'{name!r} is not a class of label set {self.name!r}: choose from '
                    f'{list(self.classes)}') from None
        return tuple(ids)

    def drivable_lut(self, names: Iterable[str]) -> np.ndarray:
        """Return a (256,) uint8 lookup table: 255 for the named classes, else 0 (ignore too)."""
        lut = np.zeros(256, np.uint8)
        lut[list(self.class_ids(names))] = 255
        return lut


CITYSCAPES = LabelSet(
    name='cityscapes',
    classes=('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
             'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
             'bus', 'train', 'motorcycle', 'bicycle'),
    colors=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
            (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
            (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
            (0, 80, 100), (0, 0, 230), (119, 11, 32)),
    default_drivable=('road',),
)

CAMVID = LabelSet(
    name='camvid',
    classes=('Building', 'Tree', 'Sky', 'Car', 'SignSymbol', 'Road', 'Pedestrian', 'Fence',
             'Column_Pole', 'Sidewalk', 'Bicyclist'),
    colors=((128, 0, 0), (128, 128, 0), (128, 128, 128), (64, 0, 128), (192, 128, 128),
            (128, 64, 128), (64, 64, 0), (64, 64, 128), (192, 192, 128), (0, 0, 192),
            (0, 128, 192)),
    default_drivable=('Road',),
)

LABEL_SETS: Dict[str, LabelSet] = {s.name: s for s in (CITYSCAPES, CAMVID)}


def get_label_set(name: str) -> LabelSet:
    """Return a label set by name, or raise naming the valid ones."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise RegsegError(
            f'unknown label set {name!r}: choose one of {sorted(LABEL_SETS)}') from None
