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
Write the bundled sample drive as a rosbag2 bag, for trying ``segment_bag`` on a fresh machine.

``make_sample_bag drive`` writes ``drive/`` (MCAP): the 24 sample frames at 10 Hz as
``sensor_msgs/CompressedImage`` (JPEG, as recorded from a camera with image_transport) on
``/cam/image_raw/compressed`` or, with ``--raw``, as ``sensor_msgs/Image`` (rgb8) on
``/cam/image_raw``; frame_id ``camera``. No ROS installation needed (rosbags writes it).
"""

import os
from pathlib import Path
import shutil
import sys
from typing import Optional, Sequence

from regseg_ros.tools.cli import ArgumentParser, err, RUNTIME_ERROR

SAMPLE_DIR = Path(__file__).resolve().parent.parent / 'data' / 'sample'
TOPIC = '/cam/image_raw'
START_NS = 1_700_000_000 * 10**9
PERIOD_NS = 100_000_000  # 10 Hz


def write_sample_bag(out: Path, storage: str = 'mcap', raw: bool = False,
                     frames_dir: Path = SAMPLE_DIR) -> int:
    """Write the sample frames into a new bag folder ``out``; return the number of frames."""
    import cv2
    import numpy as np
    from rosbags.rosbag2 import StoragePlugin
    from regseg_ros.bag_io import BagWriter
    from rosbags.typesys import get_typestore, Stores
    from regseg_ros.core.errors import RegsegError

    files = sorted(Path(frames_dir).glob('*.jpg'))
    if not files:
        raise RegsegError(f'no .jpg frames in {str(frames_dir)!r}')
    if out.exists():
        raise RegsegError(f'{str(out)!r} exists already: choose another name or delete it')
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    tmp = out.with_name(out.name + '.partial')
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # Files are named after OUT, not the temporary folder; the distro is the running one.
        with BagWriter(tmp, version=8, storage_plugin=plugin, stem=out.name,
                       ros_distro=os.environ.get('ROS_DISTRO') or None) as writer:
            conn = (writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=store)
                    if raw else writer.add_connection(
                        TOPIC + '/compressed', 'sensor_msgs/msg/CompressedImage',
                        typestore=store))
            for i, path in enumerate(files):
                t = START_NS + i * PERIOD_NS
                header = types['std_msgs/msg/Header'](
                    stamp=types['builtin_interfaces/msg/Time'](sec=t // 10**9,
                                                               nanosec=t % 10**9),
                    frame_id='camera')
                data = np.fromfile(path, np.uint8)
                if raw:
                    rgb = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    msg = types['sensor_msgs/msg/Image'](
                        header=header, height=rgb.shape[0], width=rgb.shape[1],
                        encoding='rgb8', is_bigendian=0, step=rgb.shape[1] * 3,
                        data=rgb.reshape(-1))
                else:
                    msg = types['sensor_msgs/msg/CompressedImage'](
                        header=header, format='jpeg', data=data)
                writer.write(conn, t, store.serialize_cdr(msg, conn.msgtype))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(files)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``make_sample_bag``: 0 on success, 1 on an error, 2 on a usage error."""
    parser = ArgumentParser(prog='make_sample_bag', description=__doc__.strip().splitlines()[0])
    parser.add_argument('output', type=Path, metavar='OUT', help='bag folder to create')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='storage plugin (default: %(default)s)')
    parser.add_argument('--raw', action='store_true',
                        help=f'write rgb8 sensor_msgs/Image frames on {TOPIC} instead of JPEG '
                        f'CompressedImage frames on {TOPIC}/compressed')
    args = parser.parse_args(argv)
    from regseg_ros.core.errors import RegsegError
    try:
        count = write_sample_bag(args.output, args.storage, args.raw)
    except (RegsegError, OSError) as exc:
        err(f'make_sample_bag: error: {exc}')
        return RUNTIME_ERROR
    topic = TOPIC if args.raw else f'{TOPIC}/compressed'
    print(f'wrote {args.output} ({args.storage}): {count} frames at 10 Hz on {topic}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
