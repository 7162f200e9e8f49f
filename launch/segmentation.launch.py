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
Segment one camera with RegSeg, optionally with RViz.

Live camera, on a Jetson Orin, with the released Cityscapes checkpoint:

    ros2 launch regseg_ros segmentation.launch.py image:=/camera/image_raw \
        platform:=jetson_orin weights:=cityscapes_exp48_trainval rviz:=true

Bag replay: add use_sim_time:=true and play the bag with ``ros2 bag play <bag> --clock``.
Parameters come from config/<platform>.yaml (platform:=auto, the default, picks it for this
machine and logs why), then params_file, then the non-empty launch arguments (the last one
wins). A node that cannot start (exit code 2: a configuration error) ends the launch with a
non-zero exit code and its reason; respawn:=true restarts only crashes.
``ros2 launch regseg_ros segmentation.launch.py --show-args`` lists the arguments.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
import launch.logging
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from regseg_ros.ros import launch_helpers as helpers


def _setup(context, *args, **kwargs):
    """Resolve the arguments into the supervised regseg node (and rviz2)."""
    values = helpers.launch_values(
        {name: LaunchConfiguration(name).perform(context)
         for name, _default, _doc in helpers.SEGMENTATION_ARGUMENTS},
        helpers.SEGMENTATION_ARGUMENTS)
    config_dir = os.path.join(get_package_share_directory(helpers.PACKAGE), 'config')
    use_sim_time = helpers.parse_bool(values['use_sim_time'], 'use_sim_time')
    namespace = helpers.normalize_namespace(values['namespace'])
    respawn = helpers.parse_bool(values['respawn'], 'respawn')
    rviz = helpers.parse_bool(values['rviz'], 'rviz')
    platform, why = helpers.resolve_platform(values['platform'])
    parameters = helpers.node_parameters(
        helpers.platform_params_file(platform, config_dir),
        helpers.check_params_file(values['params_file']),
        helpers.node_overrides(
            weights=values['weights'], backend=values['backend'],
            input_transport=values['input_transport'], use_sim_time=use_sim_time,
            allow_untrained=helpers.parse_bool(values['allow_untrained'], 'allow_untrained'),
            cpu_threads=helpers.parse_cpu_threads(values['cpu_threads'])))
    files = helpers.LaunchFiles()
    actions = [RegisterEventHandler(OnShutdown(on_shutdown=files.cleanup))]
    if why:
        actions.append(LogInfo(msg=f'regseg: platform:=auto picked {platform}: {why}'))
    stem = helpers.file_stem(namespace)
    parameter_files = files.parameter_files(parameters, stem)

    def make_node():
        return Node(
            package=helpers.PACKAGE, executable=helpers.EXECUTABLE, name=helpers.NODE_NAME,
            namespace=namespace, parameters=parameter_files,
            remappings=[('image', values['image'])], output='screen')
    actions += helpers.supervised_node(
        make_node, helpers.node_prefix(namespace).rstrip('/'), respawn)
    if rviz:
        missing = helpers.rviz_missing()
        if missing:
            launch.logging.get_logger('regseg').warning(missing)
        else:
            with open(os.path.join(config_dir, helpers.RVIZ_FILE)) as f:
                text = helpers.render_rviz_config(f.read(), namespace, values['image'],
                                                  values['input_transport'] or 'raw')
            actions.append(Node(
                package='rviz2', executable='rviz2', name='regseg_rviz',
                arguments=['-d', files.write_text(f'{stem}.rviz', text)],
                parameters=[files.write_params(f'{stem}_rviz.yaml',
                                               {'use_sim_time': use_sim_time})],
                output='screen'))
    return actions


def generate_launch_description():
    """Declare the arguments (each with its default and description) and the node."""
    return LaunchDescription([
        DeclareLaunchArgument(name, default_value=default, description=doc,
                              choices=helpers.ARGUMENT_CHOICES.get(name))
        for name, default, doc in helpers.SEGMENTATION_ARGUMENTS
    ] + [OpaqueFunction(function=_setup)])
