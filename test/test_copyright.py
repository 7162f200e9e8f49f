"""ament_copyright on the package's sources (it is not on PyPI: this runs in a ROS workspace)."""

import importlib.util

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
