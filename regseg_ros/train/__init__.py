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
Fine-tune RegSeg on labelled images: the authors' recipe, one process or many (torchrun).

ROS-free. :func:`regseg_ros.train.trainer.train` runs a :class:`~regseg_ros.train.recipe.Recipe`;
the ``train`` console script (:mod:`regseg_ros.tools.train`) is a thin shell over it.
"""
