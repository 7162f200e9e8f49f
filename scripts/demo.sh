#!/usr/bin/env bash
# Main job on a fresh machine: set up the venv, then play the bundled sample drive through the
# segmentation node (CPU backend) over loopback DDS; overlays land in demo_output/.
# Pass a checkpoint to see real segmentation: REGSEG_WEIGHTS=/path/to/checkpoint bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
. scripts/ros_env.sh
exec regseg_demo "$@"
