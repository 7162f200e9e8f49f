#!/usr/bin/env bash
# Run the test suite in the venv made by scripts/setup_venv.sh (DDS confined to loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ros_env.sh
exec python -m pytest -ra "$@"
