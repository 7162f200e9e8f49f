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
Segment every camera of a vehicle: one RegSeg node per enabled camera, each in its namespace.

    ros2 launch regseg_ros vehicle_cameras.launch.py platform:=jetson_orin \
        weights:=cityscapes_exp48_trainval cameras_file:=/path/to/my_cameras.yaml

The cameras come from cameras_file (default config/vehicle_cameras.yaml: front, left, right,
rear); a camera with ``enabled: false`` is skipped. All nodes share config/<platform>.yaml and
params_file; each gets its camera's topic and transport. On the CPU the cores are split between
the nodes unless cpu_threads is given. Outputs: /<namespace>/regseg/labels,
/<namespace>/regseg/drivable_mask, ... A node that cannot start (exit code 2) ends the launch
with a non-zero exit code and its reason.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from regseg_ros.ros import launch_helpers as helpers


def _setup(context, *args, **kwargs):
    """Read the cameras file and return a supervised regseg node per enabled camera."""
    values = helpers.launch_values(
        {name: LaunchConfiguration(name).perform(context)
         for name, _default, _doc in helpers.VEHICLE_ARGUMENTS},
        helpers.VEHICLE_ARGUMENTS)
    config_dir = os.path.join(get_package_share_directory(helpers.PACKAGE), 'config')
    cameras_file = values['cameras_file'] or os.path.join(config_dir, helpers.CAMERAS_FILE)
    cameras = helpers.load_cameras(os.path.expanduser(cameras_file))
    enabled = helpers.enabled_cameras(cameras)
    platform, why = helpers.resolve_platform(values['platform'])
    platform_file = helpers.platform_params_file(platform, config_dir)
    params_file = helpers.check_params_file(values['params_file'])
    threads, threads_why = helpers.vehicle_cpu_threads(
        helpers.parse_cpu_threads(values['cpu_threads']), platform_file, params_file,
        len(enabled))
    overrides = helpers.node_overrides(
        weights=values['weights'], backend=values['backend'],
        use_sim_time=helpers.parse_bool(values['use_sim_time'], 'use_sim_time'),
        allow_untrained=helpers.parse_bool(values['allow_untrained'], 'allow_untrained'),
        cpu_threads=threads)
    respawn = helpers.parse_bool(values['respawn'], 'respawn')
    files = helpers.LaunchFiles()
    actions = [RegisterEventHandler(OnShutdown(on_shutdown=files.cleanup))]
    if why:
        actions.append(LogInfo(msg=f'regseg: platform:=auto picked {platform}: {why}'))
    if threads_why:
        actions.append(LogInfo(msg=f'regseg: {threads_why}'))
    for cam in cameras:
        if not cam.enabled:
            actions.append(LogInfo(msg=f'regseg: skipping camera {cam.name} (enabled: false '
                                       f'in {cameras_file})'))
            continue
        actions.append(LogInfo(msg=f'regseg: {cam.describe()}'))
        parameter_files = files.parameter_files(
            helpers.node_parameters(platform_file, params_file,
                                    dict(overrides, input_transport=cam.transport)),
            helpers.file_stem(cam.namespace))

        def make_node(cam=cam, parameter_files=parameter_files):
            return Node(
                package=helpers.PACKAGE, executable=helpers.EXECUTABLE, name=helpers.NODE_NAME,
                namespace=cam.namespace, parameters=parameter_files,
                remappings=[('image', cam.topic)], output='screen')
        actions += helpers.supervised_node(
            make_node, helpers.node_prefix(cam.namespace).rstrip('/'), respawn)
    return actions


def generate_launch_description():
    """Declare the arguments (each with its default and description) and the nodes."""
    return LaunchDescription([
        DeclareLaunchArgument(name, default_value=default, description=doc,
                              choices=helpers.ARGUMENT_CHOICES.get(name))
        for name, default, doc in helpers.VEHICLE_ARGUMENTS
    ] + [OpaqueFunction(function=_setup)])
