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

"""Label sets: class names, colour palettes, ignore id and default drivable classes."""

from dataclasses import dataclass
import os
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

from regseg_ros.core.errors import RegsegError

IGNORE_ID = 255


@dataclass(frozen=True)
class LabelSet:
    """Class names by id, an RGB palette and the classes a vehicle may drive on by default."""

    name: str
    classes: Tuple[str, ...]
    colors: Tuple[Tuple[int, int, int], ...]
    default_drivable: Tuple[str, ...]
    ignore_id: int = IGNORE_ID
    # The dataset's own id of each class (Cityscapes' labelIds), where it has one.
    label_ids: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        if len(self.classes) != len(self.colors):
            raise RegsegError(f'label set {self.name!r}: {len(self.classes)} classes but '
                              f'{len(self.colors)} colours')
        if self.label_ids is not None and len(self.label_ids) != len(self.classes):
            raise RegsegError(f'label set {self.name!r}: {len(self.classes)} classes but '
                              f'{len(self.label_ids)} label ids')

    def to_dict(self) -> Dict[str, object]:
        """Return the label set as plain lists and strings (stored inside checkpoints)."""
        return {'name': self.name, 'classes': list(self.classes),
                'colors': [list(c) for c in self.colors],
                'default_drivable': list(self.default_drivable), 'ignore_id': self.ignore_id,
                'label_ids': None if self.label_ids is None else list(self.label_ids)}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = 'label set') -> 'LabelSet':
        """Build a label set from :meth:`to_dict`'s form; raise naming ``source`` if malformed."""
        try:
            classes = tuple(str(c) for c in data['classes'])
            colors = tuple(_color(c, source) for c in data['colors'])
            label_ids = data.get('label_ids')
            labels = cls(name=str(data['name']), classes=classes, colors=colors,
                         default_drivable=tuple(str(c) for c in data['default_drivable']),
                         ignore_id=int(data.get('ignore_id', IGNORE_ID)),
                         label_ids=None if label_ids is None else tuple(int(v) for v in label_ids))
        except (KeyError, TypeError, ValueError) as exc:
            raise RegsegError(f'{source}: not a label set ({type(exc).__name__}: {exc})') from None
        _check_names(labels.classes, source)
        labels.class_ids(labels.default_drivable)
        return labels

    def from_checkpoint_message(self) -> str:
        """Say that this label set came with a checkpoint: its classes and default drivable."""
        return (f'label set {self.name!r} from the checkpoint: {self.num_classes} classes '
                f'({", ".join(self.classes)}), drivable by default: '
                f'{", ".join(self.default_drivable) or "none"}')

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

    def label_id_lut(self) -> np.ndarray:
        """
        Return a (256,) uint8 lookup table from class (train) id to the dataset's label id.

        For Cityscapes this is cityscapesscripts' trainId -> id mapping (0 road -> 7, ...,
        18 bicycle -> 33); the ignore id and unused ids map to 0 (unlabeled).
        """
        if self.label_ids is None:
            raise RegsegError(f'label set {self.name!r} has no dataset label ids: only '
                              'cityscapes has (write the class ids instead)')
        lut = np.zeros(256, np.uint8)
        lut[:self.num_classes] = np.asarray(self.label_ids, np.uint8)
        return lut

    def ids_from_colors(self, rgb: np.ndarray) -> np.ndarray:
        """
        Map a colour-coded (H, W, 3) RGB label image to class ids by the label set's colours.

        A pixel of exactly a class's colour gets that class's id; every other colour (void and
        the classes outside the set) gets the ignore id.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise RegsegError(f'colour label image has shape {rgb.shape}: expected (H, W, 3) RGB')
        packed = ((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
                  | rgb[..., 2])
        ids = np.full(rgb.shape[:2], self.ignore_id, np.uint8)
        for class_id, (r, g, b) in enumerate(self.colors):
            ids[packed == ((r << 16) | (g << 8) | b)] = class_id
        return ids


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
    # cityscapesscripts' labels.py: the id of each trainId (for *_labelIds.png and submissions)
    label_ids=(7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33),
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

# The authors' CamVid order above (RegSeg's 11 classes, colours of the CamVid 32-class list)
# differs from SegNet's CamVid ids (their ``<split>annot/*.png``; 11 = unlabelled):
CAMVID_SEGNET_CLASSES = ('Sky', 'Building', 'Column_Pole', 'Road', 'Sidewalk', 'Tree',
                         'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist')
CAMVID_SEGNET_UNLABELLED = 11


def camvid_segnet_lut() -> np.ndarray:
    """
    Return a (256,) uint8 lookup table from SegNet's CamVid ids to :data:`CAMVID`'s ids.

    SegNet's Pole is Column_Pole and its Pavement is Sidewalk; 11 (unlabelled) and every id
    above it map to the ignore id.
    """
    lut = np.full(256, IGNORE_ID, np.uint8)
    lut[:len(CAMVID_SEGNET_CLASSES)] = CAMVID.class_ids(CAMVID_SEGNET_CLASSES)
    return lut


MAX_CLASSES = 255  # class ids are written as uint8 with 255 = ignore


def _color(value, source: str) -> Tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, int) and 0 <= v <= 255 for v in value)):
        raise RegsegError(f'{source}: colour {value!r} is not [R, G, B] with whole numbers in '
                          '[0, 255]')
    return tuple(value)


def _check_names(classes: Tuple[str, ...], source: str) -> None:
    if not classes or len(classes) > MAX_CLASSES:
        raise RegsegError(f'{source}: {len(classes)} classes; a label set needs 1 to '
                          f'{MAX_CLASSES}')
    seen: Dict[str, int] = {}
    for i, name in enumerate(classes):
        if not name.strip():
            raise RegsegError(f'{source}: class {i} has an empty name')
        key = name.strip().lower()
        if key in seen:
            raise RegsegError(f'{source}: duplicate class name {name!r} (classes {seen[key]} and '
                              f'{i}; names are compared case-insensitively): give every class '
                              'its own name')
        seen[key] = i


def load_label_set(path: os.PathLike) -> LabelSet:
    """
    Read a classes YAML into a label set.

    The file holds ``name`` (optional) and ``classes``, a list in id order of entries like
    ``{name: floor, color: [R, G, B], drivable: true}`` (``drivable`` defaults to false). Class
    ids are the list positions; 255 is the ignore id. Any problem raises naming the file.
    """
    import yaml
    source = f'classes file {os.fspath(path)!r}'
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise RegsegError(f'cannot read {source}: {exc.strerror or exc}') from None
    except yaml.YAMLError as exc:
        raise RegsegError(f'{source} is not valid YAML: {exc}') from None
    if not isinstance(data, Mapping) or not isinstance(data.get('classes'), list):
        raise RegsegError(f"{source} needs a 'classes' list, e.g. classes: [{{name: floor, "
                          'color: [128, 64, 128], drivable: true}]')
    names, colors, drivable = [], [], []
    for i, entry in enumerate(data['classes']):
        if isinstance(entry, str):
            entry = {'name': entry}
        if not isinstance(entry, Mapping) or 'name' not in entry:
            raise RegsegError(f'{source}: class {i} ({entry!r}) needs a name, e.g. '
                              '{name: floor, color: [128, 64, 128]}')
        unknown = sorted(set(entry) - {'name', 'color', 'colour', 'drivable'})
        if unknown:
            raise RegsegError(f'{source}: class {i} has unknown keys {unknown}: use name, '
                              'color, drivable')
        names.append(str(entry['name']))
        color = entry.get('color', entry.get('colour'))
        colors.append(_color(color, f'{source}, class {names[-1]!r}') if color is not None
                      else _default_color(i))
        if entry.get('drivable', False) is True:
            drivable.append(names[-1])
        elif entry.get('drivable', False) is not False:
            raise RegsegError(f'{source}: class {names[-1]!r} has drivable: '
                              f'{entry["drivable"]!r}; write true or false')
    _check_names(tuple(names), source)
    name = str(data.get('name') or os.path.splitext(os.path.basename(os.fspath(path)))[0])
    return LabelSet(name=name, classes=tuple(names), colors=tuple(colors),
                    default_drivable=tuple(drivable))


def _default_color(index: int) -> Tuple[int, int, int]:
    """Return a colour for a class without one (the Cityscapes palette, then a hash)."""
    if index < len(CITYSCAPES.colors):
        return CITYSCAPES.colors[index]
    return ((index * 97) % 256, (index * 57 + 80) % 256, (index * 151 + 160) % 256)


LABEL_SETS: Dict[str, LabelSet] = {s.name: s for s in (CITYSCAPES, CAMVID)}


def get_label_set(name: str) -> LabelSet:
    """Return a label set by name, or raise naming the valid ones."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise RegsegError(
            f'unknown label set {name!r}: choose one of {sorted(LABEL_SETS)}') from None
