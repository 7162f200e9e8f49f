from lint_paths import LINT_PATHS
import pytest

ament_copyright = pytest.importorskip(
    'ament_copyright.main', reason='ament_copyright is not installed (it is not on PyPI); '
    'this test runs in a ROS 2 workspace with colcon test')


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    rc = ament_copyright.main(argv=LINT_PATHS)
    assert rc == 0, 'Found errors'
