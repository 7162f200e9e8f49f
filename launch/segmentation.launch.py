"""
Segment one camera with RegSeg, optionally with RViz.

Live camera, on a Jetson Orin, with the released Cityscapes checkpoint:

    ros2 launch regseg_ros segmentation.launch.py image:=/camera/image_raw \
        platform:=jetson_orin weights:=cityscapes_exp48_trainval rviz:=true

Bag replay: add use_sim_time:=true and play the bag with ``ros2 bag play <bag> --clock``.
Parameters come from config/<platform>.yaml, then params_file, then the non-empty launch
arguments (the last one wins). ``ros2 launch regseg_ros segmentation.launch.py --show-args``
lists the arguments.
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from regseg_ros import launch_helpers as helpers


def _setup(context, *args, **kwargs):
    """Resolve the arguments into the regseg node (and rviz2) with typed parameters."""
    values = helpers.launch_values(
        {name: LaunchConfiguration(name).perform(context)
         for name, _default, _doc in helpers.SEGMENTATION_ARGUMENTS},
        helpers.SEGMENTATION_ARGUMENTS)
    config_dir = os.path.join(get_package_share_directory(helpers.PACKAGE), 'config')
    use_sim_time = helpers.parse_bool(values['use_sim_time'], 'use_sim_time')
    namespace = helpers.normalize_namespace(values['namespace'])
    parameters = helpers.node_parameters(
        helpers.platform_params_file(values['platform'], config_dir),
        helpers.check_params_file(values['params_file']),
        helpers.node_overrides(
            weights=values['weights'], backend=values['backend'],
            input_transport=values['input_transport'], use_sim_time=use_sim_time,
            allow_untrained=helpers.parse_bool(values['allow_untrained'], 'allow_untrained')))
    actions = [Node(
        package=helpers.PACKAGE, executable=helpers.EXECUTABLE, name=helpers.NODE_NAME,
        namespace=namespace, parameters=parameters, remappings=[('image', values['image'])],
        respawn=helpers.parse_bool(values['respawn'], 'respawn'),
        respawn_delay=helpers.RESPAWN_DELAY_S, output='screen')]
    if helpers.parse_bool(values['rviz'], 'rviz'):
        with open(os.path.join(config_dir, helpers.RVIZ_FILE)) as f:
            text = helpers.render_rviz_config(f.read(), namespace, values['image'],
                                              values['input_transport'] or 'raw')
        with tempfile.NamedTemporaryFile('w', prefix='regseg_', suffix='.rviz',
                                         delete=False) as f:
            f.write(text)
        actions.append(Node(
            package='rviz2', executable='rviz2', name='regseg_rviz', arguments=['-d', f.name],
            parameters=[{'use_sim_time': use_sim_time}], output='screen',
            condition=IfCondition(LaunchConfiguration('rviz'))))
    return actions


def generate_launch_description():
    """Declare the arguments (each with its default and description) and the node."""
    return LaunchDescription([
        DeclareLaunchArgument(name, default_value=default, description=doc,
                              choices=helpers.ARGUMENT_CHOICES.get(name))
        for name, default, doc in helpers.SEGMENTATION_ARGUMENTS
    ] + [OpaqueFunction(function=_setup)])
