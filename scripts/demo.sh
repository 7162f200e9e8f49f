#!/usr/bin/env bash
# Main job on a fresh machine: set up the venv, then play the bundled sample drive through the
# segmentation node (CPU backend) over loopback DDS; overlays land in demo_output/ (the overlays
# and node log of an earlier run are removed first).
# Weights: the authors' cityscapes_exp48_trainval checkpoint, downloaded once into
# ~/.cache/regseg_ros (sha256 recorded and checked); offline, random weights, marked as such.
# Your own checkpoint: REGSEG_WEIGHTS=/path/to/checkpoint bash scripts/demo.sh (or --weights).
# If the node cannot start, its reason (FATAL line) is printed and the demo exits 1.
#   REGSEG_SKIP_SETUP=1  skip the venv set-up (the venv is already current)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${REGSEG_SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup_venv.sh
fi
. scripts/ros_env.sh
exec regseg_demo "$@"
