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
Training datasets: find image/label pairs in a layout, check the labels, load and augment.

Layouts (``auto`` picks by what is in the root):

* ``generic``: ``ROOT/classes.yaml`` (the label set: names, colours, drivable), images in
  ``ROOT/images/<split>/NAME.{png,jpg,jpeg}`` and labels in ``ROOT/labels/<split>/NAME.png``
  (mono8 class ids in the YAML's order, 255 = ignore).
* ``cityscapes``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``; label set cityscapes.
* ``camvid`` (the authors' CamVid): ``<split>/NAME.png`` with colour-coded
  ``<split>_labels/NAME_L.png``; label set camvid, other colours ignored.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from regseg_ros.core.errors import RegsegError
from regseg_ros.core.labels import CAMVID, CITYSCAPES, IGNORE_ID, LabelSet, load_label_set
from regseg_ros.train.augment import augment, normalize
import torch

LAYOUTS = ('generic', 'cityscapes', 'camvid')
CLASSES_FILE = 'classes.yaml'
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')

Pair = Tuple[Path, Path]


def detect_layout(root: Path) -> str:
    """Name the layout of ``root`` or raise describing the three."""
    if (root / CLASSES_FILE).is_file():
        return 'generic'
    if (root / 'leftImg8bit').is_dir():
        return 'cityscapes'
    if any(p.name.endswith('_labels') for p in root.glob('*_labels') if p.is_dir()):
        return 'camvid'
    raise RegsegError(
        f'cannot tell the layout of {str(root)!r}: expected {CLASSES_FILE} with images/ and '
        'labels/ (generic), leftImg8bit/ and gtFine/ (cityscapes) or <split>/ and '
        '<split>_labels/ (camvid); pass --layout')


def layout_label_set(root: Path, layout: str, classes: Optional[str] = None) -> LabelSet:
    """Return the label set of a dataset: the ``classes`` YAML if given, else the layout's."""
    if classes:
        return load_label_set(classes)
    if layout == 'generic':
        path = root / CLASSES_FILE
        if not path.is_file():
            raise RegsegError(f'generic layout needs {str(path)!r} (or --classes FILE): the '
                              'class names, colours and drivable classes')
        return load_label_set(path)
    return CITYSCAPES if layout == 'cityscapes' else CAMVID


def find_pairs(root: Path, layout: str, split: str) -> List[Pair]:
    """List (image, label) pairs of a split; an image without its label raises naming both."""
    if layout == 'generic':
        images = sorted(p for p in (root / 'images' / split).glob('*')
                        if p.suffix.lower() in IMAGE_SUFFIXES)
        where = f'{root}/images/{split}/*.png|jpg'
        pairs = [(p, root / 'labels' / split / (p.stem + '.png')) for p in images]
    elif layout == 'cityscapes':
        images = sorted((root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))
        where = f'{root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png'
        pairs = [(p, root / 'gtFine' / split / p.parent.name /
                  p.name.replace('_leftImg8bit.png', '_gtFine_labelTrainIds.png'))
                 for p in images]
    elif layout == 'camvid':
        images = sorted((root / split).glob('*.png'))
        where = f'{root}/{split}/*.png'
        pairs = [(p, root / f'{split}_labels' / f'{p.stem}_L.png') for p in images]
    else:
        raise RegsegError(f'unknown layout {layout!r}: choose one of {list(LAYOUTS)}')
    if not pairs:
        raise RegsegError(f'no images match {where}: check the dataset folder, --layout and '
                          f'the split name ({split!r})')
    missing = [(i, lab) for i, lab in pairs if not lab.is_file()]
    if missing:
        image, label = missing[0]
        raise RegsegError(f'image {str(image)!r} has no label: expected {str(label)!r} '
                          f'({len(missing)} of {len(pairs)} images in split {split!r} have none);'
                          ' label every image or move the unlabelled ones out')
    return pairs


def read_label(path: Path, layout: str, label_set: LabelSet) -> np.ndarray:
    """Read a label image as uint8 class ids (camvid: colours mapped by the label set)."""
    if layout == 'camvid':
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RegsegError(f'cannot read label {str(path)!r}: missing or not an image')
        return label_set.ids_from_colors(bgr[..., ::-1])
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise RegsegError(f'cannot read label {str(path)!r}: missing or not an image')
    if label.ndim != 2 or label.dtype != np.uint8:
        raise RegsegError(f'label {str(path)!r} is {label.dtype} with shape {label.shape}: '
                          'write class ids as a single-channel 8-bit PNG (255 = ignore)')
    return label


def read_image(path: Path) -> np.ndarray:
    """Read an image as RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RegsegError(f'cannot read image {str(path)!r}: missing, unreadable or not an image')
    return np.ascontiguousarray(bgr[..., ::-1])


def check_label(pair: Pair, layout: str, label_set: LabelSet) -> None:
    """Raise naming the file if a label holds ids outside the classes, or has another size."""
    label = read_label(pair[1], layout, label_set)
    ids = np.unique(label)
    bad = ids[(ids >= label_set.num_classes) & (ids != IGNORE_ID)]
    if bad.size:
        raise RegsegError(
            f'label {str(pair[1])!r} holds ids {bad.tolist()[:8]} outside the '
            f'{label_set.num_classes} classes of label set {label_set.name!r} (ids 0..'
            f'{label_set.num_classes - 1}, 255 = ignore): fix the label or add the classes to '
            'the classes YAML')
    image = cv2.imread(str(pair[0]), cv2.IMREAD_REDUCED_GRAYSCALE_8)  # cheap size probe
    if image is None:
        raise RegsegError(f'cannot read image {str(pair[0])!r}: missing, unreadable or not an '
                          'image')
    expect = ((label.shape[0] + 7) // 8, (label.shape[1] + 7) // 8)
    if image.shape[:2] != expect:
        full = read_image(pair[0]).shape[:2]
        if full != label.shape[:2]:
            raise RegsegError(f'label {str(pair[1])!r} is {label.shape[1]}x{label.shape[0]} '
                              f'but its image {str(pair[0])!r} is {full[1]}x{full[0]}: a label '
                              'must be as large as its image')


def check_labels(pairs: Sequence[Pair], layout: str, label_set: LabelSet,
                 threads: int = 4) -> None:
    """Check every label before training (the first problem raises, naming its file)."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix='check-labels') as pool:
        for future in [pool.submit(check_label, p, layout, label_set) for p in pairs]:
            future.result()


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Return the random stream of one sample in one epoch (same in every process/worker)."""
    return np.random.default_rng([seed, epoch, index])


class TrainSet(torch.utils.data.Dataset):
    """Augmented, normalised training crops; set :attr:`epoch` before each epoch."""

    def __init__(self, pairs: Sequence[Pair], layout: str, label_set: LabelSet, recipe):
        """Keep the pairs; nothing is read until a sample is asked for."""
        self.pairs, self.layout, self.label_set, self.recipe = list(pairs), layout, label_set, \
            recipe
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        pair = self.pairs[index]
        rgb = read_image(pair[0])
        label = read_label(pair[1], self.layout, self.label_set)
        rgb, label = augment(rgb, label, sample_rng(self.recipe.seed, self.epoch, index),
                             self.recipe)
        return torch.from_numpy(normalize(rgb)), torch.from_numpy(label.astype(np.int64))
