"""Which paths the ament lint tests check (not the venv or build folders)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_PATHS = [str(ROOT / p) for p in ('regseg_ros', 'launch', 'test', 'setup.py', 'scripts')
              if (ROOT / p).exists()]
