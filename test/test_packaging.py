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

"""The ament_python package builds with colcon and installs what `ros2 run`/`launch` look for."""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLCON = shutil.which('colcon') or str(Path(sys.executable).parent / 'colcon')


@pytest.mark.skipif(not Path(COLCON).exists(), reason='colcon is not installed')
def test_colcon_build_installs_executables_and_share_files(tmp_path):
    out = subprocess.run(
        [COLCON, 'build', '--base-paths', str(ROOT), '--build-base', str(tmp_path / 'build'),
         '--install-base', str(tmp_path / 'install'), '--event-handlers', 'console_direct-'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    prefix = tmp_path / 'install' / 'regseg_ros'
    for exe in ('segmentation_node', 'regseg_demo', 'segment_bag', 'evaluate'):
        assert os.access(prefix / 'lib' / 'regseg_ros' / exe, os.X_OK), exe
    share = prefix / 'share' / 'regseg_ros'
    assert (share / 'package.xml').is_file()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'regseg_ros').is_file()
    assert (share / 'config' / 'fastdds_loopback.xml').is_file()
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix))
    found = subprocess.run(
        [sys.executable, '-c', 'from ament_index_python.packages import '
         'get_package_share_directory as g; print(g("regseg_ros"))'],
        env=env, capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == str(share), found.stderr


def test_package_xml_declares_ament_python_and_dependencies():
    text = (ROOT / 'package.xml').read_text()
    assert '<package format="3">' in text and '<license>Apache-2.0</license>' in text
    assert '<build_type>ament_python</build_type>' in text
    for dep in ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'launch', 'launch_ros',
                'python3-numpy', 'python3-opencv', 'python3-torch'):
        assert f'<exec_depend>{dep}</exec_depend>' in text, dep
    for dep in ('ament_flake8', 'ament_pep257', 'ament_copyright', 'python3-pytest',
                'launch_pytest'):
        assert f'<test_depend>{dep}</test_depend>' in text, dep
