"""The README's main job: the demo plays frames through the node and leaves overlays."""

import shutil
import subprocess
import sys

import cv2
import pytest
from regseg_ros.demo import SAMPLE_DIR
from ros_harness import node_command

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
    demo = node_command('regseg_demo')
    if demo[0] == sys.executable:
        demo = [sys.executable, '-m', 'regseg_ros.demo']
    out = subprocess.run(demo + ['--frames-dir', str(frames), '--output', str(tmp_path / 'out'),
                                 '--network-size', '64x128', '--rate', '2'],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'UNTRAINED' in out.stderr
    assert 'frames_sent        4' in out.stdout
    assert 'latency_ms_p50' in out.stdout and 'node exit code 0' in out.stdout
    overlays = sorted((tmp_path / 'out').glob('overlay_*.png'))
    assert len(overlays) >= 2
    assert cv2.imread(str(overlays[0])).shape == (512, 1024, 3)
