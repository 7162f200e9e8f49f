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

"""make_sample_bag writes the bundled drive as a bag that segment_bag and ROS 2 tools read."""

import os
from pathlib import Path
import subprocess

import cv2
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
from regseg_ros.tools.demo import confine_dds
from regseg_ros.tools.sample_bag import main, SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent


def _messages(folder):
    (path,) = folder.glob('*.mcap')
    with open(path, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(ch.topic, msg.log_time, ros) for _s, ch, msg, ros in
                reader.iter_decoded_messages()]


def test_sample_bag_holds_every_frame_as_jpeg_at_10_hz(tmp_path, capsys):
    out = tmp_path / 'drive'
    assert main([str(out)]) == 0
    assert 'wrote' in capsys.readouterr().out and (out / 'metadata.yaml').is_file()
    msgs = _messages(out)
    frames = sorted(SAMPLE_DIR.glob('*.jpg'))
    assert len(msgs) == len(frames) == 24
    assert {t for t, _, _ in msgs} == {'/cam/image_raw/compressed'}
    times = [t for _, t, _ in msgs]
    assert all(b - a == 100_000_000 for a, b in zip(times, times[1:]))
    first = msgs[0][2]
    assert first.format == 'jpeg' and first.header.frame_id == 'camera'
    assert bytes(first.data) == frames[0].read_bytes()
    assert not list(tmp_path.glob('*.partial'))
    # The file and metadata name the bag, not the temporary folder it was written in.
    assert [p.name for p in out.glob('*.mcap')] == ['drive.mcap']
    assert 'partial' not in (out / 'metadata.yaml').read_text()


def test_raw_sample_bag_and_errors(tmp_path, capsys):
    out = tmp_path / 'raw'
    assert main([str(out), '--raw', '--storage', 'sqlite3']) == 0
    assert list(out.glob('*.db3'))
    assert main([str(out)]) == 1
    assert 'exists already' in capsys.readouterr().err
    try:
        main([str(tmp_path / 'x'), '--storage', 'zip'])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError('a bad --storage must be a usage error')
    out = tmp_path / 'mcap_raw'
    assert main([str(out), '--raw']) == 0
    msg = _messages(out)[0][2]
    rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    jpg = cv2.imread(str(sorted(SAMPLE_DIR.glob('*.jpg'))[0]))[..., ::-1]
    assert msg.encoding == 'rgb8' and np.array_equal(rgb, jpg)


@pytest.mark.parametrize('distro,both', [
    ('', False), ('kilted', False), ('rolling', False), ('humble', True), ('jazzy', True)])
def test_the_profile_reaches_fast_dds_2_and_3(distro, both):
    script = ('. scripts/ros_env.sh && echo "$FASTDDS_DEFAULT_PROFILES_FILE" && '
              'echo "${FASTRTPS_DEFAULT_PROFILES_FILE:-unset}" && '
              'echo "$ROS_AUTOMATIC_DISCOVERY_RANGE"')
    env = {k: v for k, v in os.environ.items() if not k.startswith('FAST')}
    env.update(ROS_DISTRO=distro, REGSEG_VENV=os.environ.get('VIRTUAL_ENV', '.venv'))
    out = subprocess.run(['bash', '-c', script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=env)
    profile = str(ROOT / 'config' / 'fastdds_loopback.xml')
    assert out.stdout.split() == [profile, profile if both else 'unset', 'LOCALHOST']
    confined = confine_dds({'ROS_DISTRO': distro})
    assert confined['FASTDDS_DEFAULT_PROFILES_FILE'].endswith('fastdds_loopback.xml')
    assert ('FASTRTPS_DEFAULT_PROFILES_FILE' in confined) == both
