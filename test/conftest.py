"""
Test session set-up: DDS confined to loopback with a domain id of its own.

Set before anything imports rclpy, and inherited by every process the tests start.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# Fast DDS 3 (Kilted) reads FASTDDS_..., Fast DDS 2 (Humble, Jazzy) FASTRTPS_...: set both.
os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(ROOT / 'config' / 'fastdds_loopback.xml')
os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = os.environ['FASTDDS_DEFAULT_PROFILES_FILE']
os.environ.setdefault('ROS_DOMAIN_ID', str(101 + os.getpid() % 100))
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '0')
