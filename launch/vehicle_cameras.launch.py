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
Segment every camera of a vehicle: one multi_camera_node (one model, batched) by default.

    ros2 launch regseg_ros vehicle_cameras.launch.py platform:=jetson_orin \
        weights:=cityscapes_exp48_trainval cameras_file:=/path/to/my_cameras.yaml

The cameras come from cameras_file (default config/vehicle_cameras.yaml: front, left, right,
rear); a camera with ``enabled: false`` is skipped. By default ONE multi_camera_node segments
every enabled camera with one model (one CUDA context, one TensorRT engine), the newest frame of
each camera in one batch of up to max_batch (platform file). ``process_per_camera:=true``
starts one segmentation_node per camera instead (process isolation; on the CPU the cores are
split between them unless cpu_threads is given). Either way the outputs are
/<namespace>/regseg/labels, /<namespace>/regseg/drivable_mask, ... ``freespace:=true`` (the
default) also starts freespace_node, which fuses the cameras' labels into a grid in base_link.
A node that cannot start (exit code 2) ends the launch with a non-zero exit code and its reason.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from regseg_ros.ros import launch_helpers as helpers


def _node(files, label, respawn, parameters, stem, **kwargs):
    """Return the supervised entities of one node whose parameters are written to files."""
    parameter_files = files.parameter_files(parameters, stem)

    def make_node():
        return Node(package=helpers.PACKAGE, parameters=parameter_files, output='screen',
                    **kwargs)
    return helpers.supervised_node(make_node, label, respawn)


def _setup(context, *args, **kwargs):
    """Read the cameras file and return the supervised nodes."""
    values = helpers.launch_values(
        {name: LaunchConfiguration(name).perform(context)
         for name, _default, _doc in helpers.VEHICLE_ARGUMENTS},
        helpers.VEHICLE_ARGUMENTS)
    config_dir = os.path.join(get_package_share_directory(helpers.PACKAGE), 'config')
    cameras_file = values['cameras_file'] or os.path.join(config_dir, helpers.CAMERAS_FILE)
    cameras = helpers.load_cameras(os.path.expanduser(cameras_file))
    enabled = helpers.enabled_cameras(cameras)
    per_camera = helpers.parse_bool(values['process_per_camera'], 'process_per_camera')
    platform, why = helpers.resolve_platform(values['platform'])
    platform_file = helpers.platform_params_file(platform, config_dir)
    params_file = helpers.check_params_file(values['params_file'])
    threads, threads_why = helpers.parse_cpu_threads(values['cpu_threads']), ''
    if per_camera:
        threads, threads_why = helpers.vehicle_cpu_threads(threads, platform_file, params_file,
                                                           len(enabled))
    use_sim_time = helpers.parse_bool(values['use_sim_time'], 'use_sim_time')
    overrides = helpers.node_overrides(
        weights=values['weights'], backend=values['backend'], use_sim_time=use_sim_time,
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
        if per_camera:
            actions += _node(
                files, helpers.node_prefix(cam.namespace).rstrip('/'), respawn,
                helpers.node_parameters(platform_file, params_file,
                                        dict(overrides, input_transport=cam.transport)),
                helpers.file_stem(cam.namespace), executable=helpers.EXECUTABLE,
                name=helpers.NODE_NAME, namespace=cam.namespace,
                remappings=[('image', cam.topic)])
    if not per_camera:
        actions.append(LogInfo(msg=f'regseg: one {helpers.MULTI_EXECUTABLE} for '
                                   f'{len(enabled)} camera(s) (process_per_camera:=true starts '
                                   'one node per camera)'))
        actions += _node(
            files, f'/{helpers.MULTI_NODE_NAME}', respawn,
            helpers.node_parameters(platform_file, params_file, dict(
                overrides, **helpers.multi_camera_parameters(enabled))),
            helpers.MULTI_NODE_NAME, executable=helpers.MULTI_EXECUTABLE,
            name=helpers.MULTI_NODE_NAME)
    if helpers.parse_bool(values['freespace'], 'freespace'):
        freespace_file = os.path.join(config_dir, helpers.FREESPACE_FILE)
        parameters = [freespace_file] if os.path.isfile(freespace_file) else []
        parameters.append(dict(helpers.freespace_parameters(
            enabled, label_set=values['freespace_label_set']), use_sim_time=use_sim_time))
        actions += _node(files, f'/{helpers.FREESPACE_NODE_NAME}', respawn, parameters,
                         helpers.FREESPACE_NODE_NAME, executable=helpers.FREESPACE_EXECUTABLE,
                         name=helpers.FREESPACE_NODE_NAME)
    return actions


def generate_launch_description():
    """Declare the arguments (each with its default and description) and the nodes."""
    return LaunchDescription([
        DeclareLaunchArgument(name, default_value=default, description=doc,
                              choices=helpers.ARGUMENT_CHOICES.get(name))
        for name, default, doc in helpers.VEHICLE_ARGUMENTS
    ] + [OpaqueFunction(function=_setup)])
