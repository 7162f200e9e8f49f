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

"""Files that appear complete or not at all, and folders proven writable before long work."""

import os
from pathlib import Path
import tempfile

from regseg_ros.core.errors import RegsegError


def _file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename: complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def writable_dir(folder: Path, what: str, fix: str) -> None:
    """Create ``folder`` and prove a file can be made in it, or raise naming it."""
    folder = Path(folder)
    for existing in (folder,) + tuple(folder.parents):
        if existing.exists():
            if not existing.is_dir():
                raise RegsegError(f'cannot write the {what}: {str(existing)!r} is a file, not a '
                                  f'folder: {fix}')
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix='.regseg-write-test-')
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RegsegError(f'cannot write the {what} ({str(folder)!r}: '
                          f'{exc.strerror or exc}): {fix}') from None
