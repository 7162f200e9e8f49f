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

"""ament_copyright on the package's sources (it is not on PyPI: this runs in a ROS workspace)."""

import importlib.util
from pathlib import Path

from lint_paths import LINT_PATHS
import pytest


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    if importlib.util.find_spec('ament_copyright') is None:
        pytest.skip('ament_copyright is not installed (it is not on PyPI); this test runs in a '
                    'ROS 2 workspace with colcon test')
    from ament_copyright.main import main
    rc = main(argv=LINT_PATHS)
    assert rc == 0, 'Found errors'


HEADER = """# Copyright 2026 regseg_ros maintainers
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


def test_every_python_source_starts_with_the_apache_header():
    # The form ament_copyright accepts (checked with it in a workspace); this test runs here too,
    # so a new file without the header fails before it reaches a ROS workspace.
    body = HEADER.split('\n', 1)[1]
    missing = []
    for top in LINT_PATHS:
        root = Path(top)
        for path in ([root] if root.is_file() else sorted(root.rglob('*.py'))):
            if path.name == 'setup.py' or '__pycache__' in path.parts:
                continue
            text = path.read_text()
            first = text.split('\n', 1)[0]
            if not (first.startswith('# Copyright 20') and body in text[:len(HEADER) + 80]):
                missing.append(str(path))
    assert not missing, f'no Apache-2.0 header in {missing}'
    assert (Path(LINT_PATHS[0]).parent / 'LICENSE').read_text().startswith(
        '\n                                 Apache License')
