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
Helpers shared by the command-line tools (segment_bag, evaluate, build_engine, benchmark, demo).

Conventions every tool follows: usage errors exit 2 (argparse's own code), runtime errors exit 1
with one line ``<tool>: error: <what> ...``; sizes are written WIDTHxHEIGHT, as ROS does
(``1024x512`` is 1024 pixels wide, 512 high).
"""

import argparse
import sys
from typing import Callable, Optional, Sequence, Tuple, Union

USAGE_ERROR = 2
RUNTIME_ERROR = 1


def parse_size(text: str) -> Tuple[int, int]:
    """
    Parse ``WIDTHxHEIGHT`` (e.g. ``1024x512``) into ``(height, width)``, each within [32, 8192].

    The text is width first, as ROS writes sizes; the tuple is (height, width), as arrays are
    indexed.
    """
    try:
        width, height = (int(v) for v in str(text).lower().replace('*', 'x').split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size {text!r} is not WIDTHxHEIGHT in whole pixels, e.g. 1024x512') from None
    if not (32 <= height <= 8192 and 32 <= width <= 8192):
        raise argparse.ArgumentTypeError(
            f'size {text!r} must have width and height within [32, 8192] pixels')
    return height, width


def positive(kind):
    """Return an argparse type that parses ``kind`` (int or float) and insists on > 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'{text!r} is not {"a whole number" if kind is int else "a number"}') from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f'{text!r} must be greater than 0')
        return value
    return parse


def format_size(size: Sequence[int]) -> str:
    """Write an array-order ``(height, width)`` size as ROS does: ``WIDTHxHEIGHT``."""
    height, width = size[:2]
    return f'{width}x{height}'


def err(message: str) -> None:
    """Write one line to stderr and flush it (progress bars share the stream)."""
    sys.stderr.write(message.rstrip('\n') + '\n')
    sys.stderr.flush()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the tools' convention: usage errors print usage and exit 2."""

    def error(self, message):
        """Print usage and the message, then exit 2."""
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f'{self.prog}: error: {message}\n')

    def parse_or_code(self, argv: Optional[Sequence[str]]) -> Union[argparse.Namespace, int]:
        """Return the parsed ``argv``, or the exit code where argparse would exit (--help: 0)."""
        try:
            return self.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)


def add_model_arguments(parser: argparse.ArgumentParser, default_size: str,
                        default_label_set: str = 'cityscapes') -> None:
    """Add the options that choose and load the network (shared by the bag and dataset tools)."""
    from regseg_ros.backends import CHOICES as BACKEND_CHOICES
    from regseg_ros.core.labels import LABEL_SETS
    from regseg_ros.model import VARIANTS
    group = parser.add_argument_group('model')
    group.add_argument('--model', default='exp48_decoder26', choices=sorted(VARIANTS),
                       help='RegSeg variant of the checkpoint (default: %(default)s)')
    group.add_argument('--weights', default='',
                       help='checkpoint: a path, an https:// URL or a released checkpoint name')
    group.add_argument('--allow-untrained', action='store_true',
                       help='run random weights when --weights is empty (demos and tests only)')
    group.add_argument('--backend', default='torch', choices=BACKEND_CHOICES,
                       help='inference backend (default: %(default)s; auto picks the fastest)')
    group.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: cpu)')
    group.add_argument('--precision', default='fp32', choices=('fp32', 'fp16'),
                       help='fp32, or fp16 on CUDA (default: fp32)')
    group.add_argument('--network-size', type=parse_size, default=None, metavar='WxH',
                       help=f'network input size, width x height; frames are resized to it '
                       f'(default: {default_size})')
    group.add_argument('--label-set', default=None, choices=sorted(LABEL_SETS),
                       help='classes the checkpoint predicts (default: the label set a '
                       f'checkpoint written by train carries, else {default_label_set})')
    group.add_argument('--cache-dir', default=None,
                       help='where downloaded weights are kept (default: ~/.cache/regseg_ros)')


def build_segmenter(args: argparse.Namespace, label_set, network_size: Tuple[int, int],
                    drivable_classes: Optional[Sequence[str]] = None,
                    log: Callable[[str], None] = print, default_label_set: str = 'cityscapes'):
    """
    Load the backend the parsed model options describe and wrap it in a Segmenter.

    ``label_set`` is a name, a :class:`LabelSet` or None/'' (not chosen): then the label set a
    checkpoint written by ``train`` carries is used (names, colours, drivable classes), else
    ``default_label_set``. A chosen label set whose class count differs from the one the
    checkpoint carries raises naming both.
    """
    from regseg_ros.backends import BackendConfig, create_backend
    from regseg_ros.core.errors import RegsegError
    from regseg_ros.core.labels import LabelSet
    from regseg_ros.model.weights import resolve_label_set
    from regseg_ros.segmenter import Segmenter
    if not args.weights and not args.allow_untrained:
        raise RegsegError(
            '--weights is empty: pass a checkpoint path, an https:// URL or a released '
            'checkpoint name (e.g. --weights cityscapes_exp48_trainval); --allow-untrained runs '
            'random weights for demos and tests only')
    if isinstance(label_set, LabelSet):
        labels = label_set
    else:
        labels = resolve_label_set(label_set or None, args.weights, args.cache_dir,
                                   default_label_set)
        if not label_set and labels.name != default_label_set:
            log(labels.from_checkpoint_message())
    if drivable_classes:
        labels.class_ids(drivable_classes)  # reject an unknown name before loading the model
    config = BackendConfig(
        model=args.model, num_classes=labels.num_classes, weights=args.weights,
        allow_untrained=args.allow_untrained, device=args.device, precision=args.precision,
        input_size=tuple(network_size), cache_dir=args.cache_dir)
    if not args.weights and args.allow_untrained:
        log('warning: no --weights: running an UNTRAINED RegSeg (--allow-untrained); its '
            'labels are meaningless')
    backend = create_backend(args.backend, config, log=log)
    segmenter = Segmenter(backend, labels, drivable_classes or None, output_resolution='input')
    backend.warmup()
    return segmenter
