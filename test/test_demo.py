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

"""The README's main job: the demo plays frames through the node and leaves overlays."""

import http.server
import os
from pathlib import Path
import re
import shutil
import socket
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from regseg_ros.model import build_model, RELEASED_CHECKPOINTS
from regseg_ros.tools.demo import mark_random, node_command, SAMPLE_DIR
import torch

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_FILE = RELEASED_CHECKPOINTS['cityscapes_exp48_trainval'][0]


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def demo_env(tmp_path, release_url=None, **extra):
    """Environment for a demo run: this checkout's code, a cache of its own, no real network."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), REGSEG_CACHE_DIR=str(tmp_path / 'cache'),
               REGSEG_RELEASE_URL=release_url or f'http://127.0.0.1:{free_port()}/')
    env.pop('REGSEG_WEIGHTS', None)
    env.update(extra)
    return env


def sample_frames(tmp_path, count=4):
    frames = tmp_path / 'frames'
    frames.mkdir(exist_ok=True)
    for f in sorted(SAMPLE_DIR.glob('*.jpg'))[:count]:
        shutil.copy(f, frames)
    return frames


def run_demo(tmp_path, env, *extra, command=None):
    args = ['--frames-dir', str(sample_frames(tmp_path)), '--output', str(tmp_path / 'out'),
            '--network-size', '128x64', '--rate', '2', *extra]
    return subprocess.run((command or node_command('regseg_demo')) + args, capture_output=True,
                          text=True, timeout=240, env=env)


def banner_marked(path):
    """Tell whether the image has the random-weights banner: a black band with white text."""
    image = cv2.imread(str(path))
    band = image[:90]
    return bool(image[:4].max() == 0 and (band == 255).all(axis=2).sum() > 500)


def test_bundled_sample_is_a_driving_sequence():
    frames = sorted(SAMPLE_DIR.glob('*.jpg'))
    assert len(frames) >= 20
    assert cv2.imread(str(frames[0])).shape == (512, 1024, 3)


def test_offline_demo_runs_random_weights_marks_them_and_clears_old_outputs(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'overlay_0999.png').write_bytes(b'old')
    (out / 'segmentation_node.log').write_text('OLD RUN\n')
    (out / 'notes.txt').write_text('mine')
    result = run_demo(tmp_path, demo_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    # offline is found out at once (here: a refused port) and said, with the way out
    gave_up = re.search(r'\[gave up after ([\d.]+) s\]', result.stderr)
    assert gave_up and float(gave_up.group(1)) < 5, result.stderr
    assert 'running RANDOM (UNTRAINED) weights' in result.stderr
    assert 'weights: RANDOM (untrained)' in result.stdout
    assert ('RANDOM WEIGHTS: the labels are meaningless and every overlay says so; for real '
            'segmentation run again with REGSEG_WEIGHTS=<checkpoint> or --weights '
            '<checkpoint>') in result.stdout
    assert 'frames_sent        4' in result.stdout
    assert 'latency_ms_p50' in result.stdout and 'node exit code 0' in result.stdout
    overlays = sorted(out.glob('overlay_*.png'))
    assert len(overlays) >= 2 and out / 'overlay_0999.png' not in overlays
    assert (out / 'notes.txt').read_text() == 'mine'
    assert 'OLD RUN' not in (out / 'segmentation_node.log').read_text()
    for overlay in overlays:
        assert cv2.imread(str(overlay)).shape == (512, 1024, 3)
        assert banner_marked(overlay), overlay
    assert not list((tmp_path / 'cache').glob('*'))


def test_demo_uses_the_authors_checkpoint_when_it_can_be_downloaded(tmp_path):
    www = tmp_path / 'www'
    www.mkdir()
    torch.save({'model': build_model('exp48_decoder26').state_dict(), 'epoch': 999},
               www / CHECKPOINT_FILE)

    class Quiet(http.server.SimpleHTTPRequestHandler):

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_demo(tmp_path, demo_env(
            tmp_path, release_url=f'http://127.0.0.1:{server.server_address[1]}/'))
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    cached = sorted(p.name for p in (tmp_path / 'cache').iterdir())
    assert len(cached) == 2 and cached[1] == cached[0] + '.sha256'
    assert re.search(r'weights: cityscapes_exp48_trainval \(.*, sha256-checked\)', result.stdout)
    assert 'RANDOM' not in result.stdout + result.stderr
    overlays = sorted((tmp_path / 'out').glob('overlay_*.png'))
    assert overlays and not any(banner_marked(p) for p in overlays)


def test_explicit_weights_that_fail_are_an_error_not_random(tmp_path):
    result = run_demo(tmp_path, demo_env(tmp_path, REGSEG_WEIGHTS='cityscapes_exp48_trainval'))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'regseg_demo: error: segmentation_node could not start (exit code 2):' in result.stderr
    assert re.search(r'\[FATAL\].*cannot start: could not download weights from '
                     r"'http://127\.0\.0\.1:\d+/" + CHECKPOINT_FILE, result.stderr)
    assert 'RANDOM' not in result.stdout + result.stderr
    assert 'Traceback' not in result.stderr


def test_demo_sh_shows_why_the_node_did_not_start(tmp_path):
    # demo.sh is the venv route: it runs the regseg_demo of the venv it is pointed at.
    if not (Path(sys.executable).parent / 'regseg_demo').exists():
        pytest.skip('demo.sh needs a venv with regseg_demo installed (the venv route)')
    missing = tmp_path / 'nope.pth'
    demo_sh = ['bash', str(ROOT / 'scripts' / 'demo.sh')]
    result = run_demo(tmp_path, demo_env(tmp_path, REGSEG_SKIP_SETUP='1', REGSEG_VENV=sys.prefix),
                      '--weights', str(missing), command=demo_sh)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot start: weights file '{missing}' does not exist" in result.stderr
    assert '[FATAL]' in result.stderr and 'full log: ' in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('size', ['512by1024', '10x10', '48x48', '1024x5000'])
def test_bad_network_size_is_a_usage_error(tmp_path, size):
    result = subprocess.run(node_command('regseg_demo') + ['--network-size', size],
                            capture_output=True, text=True, timeout=60,
                            env=demo_env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr
    assert 'regseg_demo: error: argument --network-size: ' in result.stderr
    assert size in result.stderr
    assert 'usage: regseg_demo' in result.stderr


def test_frames_folder_without_frames_or_with_a_broken_one_is_one_error_line(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = subprocess.run(node_command('regseg_demo') + ['--frames-dir', str(empty)],
                            capture_output=True, text=True, timeout=120,
                            env=demo_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"regseg_demo: error: no .jpg/.png frames in '{empty}': pass a folder of camera "
        'frames with --frames-dir')
    broken = sample_frames(tmp_path, count=2)
    (broken / 'frame_999.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    result = subprocess.run(node_command('regseg_demo') + ['--frames-dir', str(broken)],
                            capture_output=True, text=True, timeout=120,
                            env=demo_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr
    assert f"regseg_demo: error: cannot decode the frame '{broken / 'frame_999.jpg'}'" in (
        result.stderr)


def test_mark_random_fits_small_and_large_images():
    for width, height in ((320, 240), (1024, 512), (2048, 1024)):
        image = np.full((height, width, 3), 128, np.uint8)
        mark_random(image)
        assert image[:4].max() == 0 and (image == 255).all(axis=2).any()
        assert (image[height // 2:] == 128).all()  # the bottom half stays as it was
