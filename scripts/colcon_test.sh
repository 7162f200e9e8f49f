#!/usr/bin/env bash
# The ROS 2 workspace route, checked: `colcon build`, `colcon test`, `colcon test-result` in a
# fresh workspace holding this package, with the venv's rclpy and colcon. Fails unless colcon ran
# every test pytest collects (colcon silently runs 0 tests when it does not find pytest) and none
# failed. Usage: bash scripts/colcon_test.sh [workspace folder, default: a temporary one]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ros_env.sh
repo=$(pwd)
ws=${1:-$(mktemp -d "${TMPDIR:-/tmp}/regseg_ws.XXXXXX")}
mkdir -p "$ws/src"
# The committed and untracked-but-not-ignored files, as a clone would have them (no .venv).
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - -cf - | (mkdir -p "$ws/src/regseg_ros" && tar -xf - -C "$ws/src/regseg_ros")
cd "$ws"
# What pytest collects, plus the modules it skips whole (colcon's JUnit file lists each of those
# as one skipped test case): the count colcon must report.
collected=$(cd src/regseg_ros && python -m pytest --collect-only -q -rs -p no:cacheprovider 2>/dev/null)
expected=$(( $(echo "$collected" | sed -n 's/^\([0-9][0-9]*\) tests\{0,1\} collected.*/\1/p') \
    + $(echo "$collected" | grep -c '^SKIPPED \[1\]' || true) ))
colcon build --packages-select regseg_ros --event-handlers console_direct- >/dev/null
set +u  # colcon's setup scripts read unset variables
. install/setup.bash
set -u
status=0
colcon test --packages-select regseg_ros --event-handlers console_direct- \
    --pytest-args -p no:cacheprovider || status=$?
summary=$( (colcon test-result --all --verbose || true) | tee /dev/stderr | sed -n "s/^Summary: //p" | tail -n 1)
echo "colcon test-result: $summary; pytest collects $expected tests"
ran=$(echo "$summary" | sed -n 's/^\([0-9][0-9]*\) tests.*/\1/p')
if [ -z "$expected" ] || [ "$ran" != "$expected" ]; then
    echo "colcon_test: error: colcon ran ${ran:-no} tests, pytest collects ${expected:-none}" >&2
    exit 1
fi
colcon test-result >/dev/null || { echo 'colcon_test: error: failed tests above' >&2; exit 1; }
[ "$status" -eq 0 ] || { echo "colcon_test: error: colcon test exited $status" >&2; exit 1; }
[ -n "${1:-}" ] || rm -rf "$ws"
echo "colcon_test: $ran tests run by colcon, all passed or skipped"
