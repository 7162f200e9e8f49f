"""The README's main job: the demo plays frames through the node and leaves overlays."""

import shutil
import subprocess

import cv2
import pytest
from regseg_ros.demo import node_command, SAMPLE_DIR

pytestmark = pytest.mark.ros


def test_bundled_sample_is_a_driving_sequence():
    frames = sorted(SAMPLE_DIR.glob('*.jpg'))
    assert len(frames) >= 20
    assert cv2.imread(str(frames[0])).shape == (512, 1024, 3)


def test_demo_leaves_overlays_and_a_summary(tmp_path):
    frames = tmp_path / 'frames'
    frames.mkdir()
    for f in sorted(SAMPLE_DIR.glob('*.jpg'))[:4]:
        shutil.copy(f, frames)
    args = ['--frames-dir', str(frames), '--output', str(tmp_path / 'out'),
            '--network-size', '64x128', '--rate', '2']
    out = subprocess.run(node_command('regseg_demo') + args, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'UNTRAINED' in out.stderr
    assert 'frames_sent        4' in out.stdout
    assert 'latency_ms_p50' in out.stdout and 'node exit code 0' in out.stdout
    overlays = sorted((tmp_path / 'out').glob('overlay_*.png'))
    assert len(overlays) >= 2
    assert cv2.imread(str(overlays[0])).shape == (512, 1024, 3)
