#!/usr/bin/env bash
# Create (or update) the venv with the pinned stack and install regseg_ros into it.
#   REGSEG_VENV  venv folder (default: .venv in the repository)
#   PYTHON       interpreter to build it with (default: python3; 3.10 or 3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${REGSEG_VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
# torch first and alone, pinned: a bare torch requirement would pull gigabytes of CUDA wheels.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
# A real (non-editable) install: data files (ament index marker, launch, config) land in the venv.
# setuptools copies through ./build/lib, which keeps modules deleted since: start it afresh.
rm -rf build/lib
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall \
    --no-build-isolation .
echo "venv ready: $VENV"
