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

"""ament_python package setup for regseg_ros."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'regseg_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={PACKAGE: ['data/*', 'data/sample/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*')),
    ],
    # Runtime dependencies come from rosdep (package.xml) or requirements.txt: torch is never
    # resolved by pip here, so a CUDA or Jetson build of it is left alone.
    install_requires=['setuptools'],
    # Declaring pytest makes `colcon test` run the suite with pytest (without it colcon falls back
    # to unittest, finds nothing and reports 0 tests as success). < 8.4: see requirements.txt.
    extras_require={'test': ['pytest>=7.0,<8.4']},
    zip_safe=True,
    maintainer='regseg_ros maintainers',
    maintainer_email='maintainers@regseg-ros.dev',
    description='RegSeg real-time semantic segmentation for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'segmentation_node = regseg_ros.ros.segmentation_node:main',
            'multi_camera_node = regseg_ros.ros.multi_camera_node:main',
            'freespace_node = regseg_ros.ros.freespace_node:main',
            'train = regseg_ros.tools.train:main',
            'regseg_demo = regseg_ros.tools.demo:main',
            'segment_bag = regseg_ros.tools.segment_bag:main',
            'evaluate = regseg_ros.tools.evaluate:main',
            'build_engine = regseg_ros.tools.build_engine:main',
            'benchmark = regseg_ros.tools.benchmark:main',
            'make_sample_bag = regseg_ros.tools.sample_bag:main',
        ],
    },
)
