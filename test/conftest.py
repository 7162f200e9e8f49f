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
Test session set-up: DDS confined to loopback with a domain id of its own.

Set before anything imports rclpy, and inherited by every process the tests start.
"""

import os
from pathlib import Path

from regseg_ros.tools.demo import profile_variables

ROOT = Path(__file__).resolve().parent.parent

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# Fast DDS 3 (Kilted and newer) reads FASTDDS_...; Fast DDS 2 (Humble, Iron, Jazzy) only
# FASTRTPS_... (which Fast DDS 3 warns about): regseg_ros.tools.demo.profile_variables says which.
for _name in profile_variables(os.environ.get('ROS_DISTRO', '')):
    os.environ[_name] = str(ROOT / 'config' / 'fastdds_loopback.xml')
# 1..101: on Linux higher domain ids put DDS ports into the ephemeral range (ROS 2 docs).
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 101))
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '0')
