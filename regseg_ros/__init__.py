"""
RegSeg real-time semantic segmentation for ROS 2.

The ROS-free core (``regseg_ros.model``, ``regseg_ros.backends``, ``regseg_ros.labels``,
``regseg_ros.imaging``) imports without rclpy; the node modules are a thin shell over it.
"""

from regseg_ros.errors import RegsegError, RegsegWarning

__all__ = ['RegsegError', 'RegsegWarning']
__version__ = '0.1.0'
