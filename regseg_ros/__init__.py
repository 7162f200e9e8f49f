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
RegSeg real-time semantic segmentation for ROS 2.

Layout: ``core`` (errors, imaging, label sets, statistics, projection), ``model`` (the network
and its checkpoints) and ``backends`` (torch, TensorRT) import without rclpy; ``segmenter``
turns frames into the node's outputs over them; ``bag_io`` reads and writes bags; ``ros`` holds
the nodes and launch helpers (thin shells over the core); ``tools`` the command-line tools.
"""

from regseg_ros.core.errors import RegsegError, RegsegWarning

__all__ = ['RegsegError', 'RegsegWarning']
__version__ = '0.1.0'
