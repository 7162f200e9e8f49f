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

The ROS-free core (``regseg_ros.model``, ``regseg_ros.backends``, ``regseg_ros.labels``,
``regseg_ros.imaging``) imports without rclpy; the node modules are a thin shell over it.
"""

from regseg_ros.errors import RegsegError, RegsegWarning

__all__ = ['RegsegError', 'RegsegWarning']
__version__ = '0.1.0'
