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

"""
The TensorRT engine cache: keys, metadata and the rebuild decision (no TensorRT needed).

An engine is only valid for the ONNX it was built from, the TensorRT version that built it, the
GPU model (compute capability) it was tuned on, its precision, its input shape and its batch
profile (``[1, N]``: an optimisation profile for batch 1..N; ``[1, 1]``: a static batch 1). Each
of these is part of the metadata written beside the engine; the cache key is a hash of that
metadata, so a change of any of them selects another engine file and never reuses a stale one.
"""

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from regseg_ros.core.errors import RegsegError
from regseg_ros.core.files import write_atomic
from regseg_ros.model.weights import default_cache_dir

# Bump when the way engines are built or used changes in a way the other fields do not show.
CACHE_FORMAT = 1
KEY_FIELDS = ('format', 'onnx_sha256', 'tensorrt', 'gpu', 'compute_capability', 'precision',
              'input_shape', 'calibration', 'batch_profile')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def engine_metadata(onnx_sha256: str, tensorrt_version: str, gpu_name: str,
                    compute_capability: str, precision: str, input_shape: Sequence[int],
                    calibration: str = '', max_batch: int = 1) -> Dict[str, object]:
    """
    Return what an engine depends on; ``calibration`` hashes the int8 calibration images.

    ``max_batch`` > 1: the engine has an optimisation profile for batch 1..max_batch.
    """
    return {'format': CACHE_FORMAT, 'onnx_sha256': onnx_sha256, 'tensorrt': tensorrt_version,
            'gpu': gpu_name, 'compute_capability': compute_capability, 'precision': precision,
            'input_shape': [int(d) for d in input_shape], 'calibration': calibration,
            'batch_profile': [1, int(max_batch)]}


def engine_key(metadata: Mapping[str, object]) -> str:
    """Return the cache key of an engine: a hash of its metadata (hex, 20 digits)."""
    canonical = json.dumps({k: metadata.get(k) for k in KEY_FIELDS}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def engine_dir(cache_dir: Optional[os.PathLike] = None) -> Path:
    """Where engines are kept: ``<cache_dir or the user cache directory>/engines``."""
    return Path(cache_dir if cache_dir else default_cache_dir()) / 'engines'


def engine_files(directory: os.PathLike, stem: str, metadata: Mapping[str, object]
                 ) -> Tuple[Path, Path]:
    """Return the engine file and its metadata file for ``metadata`` in ``directory``."""
    name = f'{stem}-{engine_key(metadata)}'
    return Path(directory) / f'{name}.engine', Path(directory) / f'{name}.json'


def read_metadata(path: os.PathLike) -> Optional[Dict[str, object]]:
    """Read an engine's metadata file; None when it is missing or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stale_reason(expected: Mapping[str, object], found: Optional[Mapping[str, object]],
                 engine_exists: bool = True) -> Optional[str]:
    """
    Decide whether a cached engine can be used: None if so, else why it must be rebuilt.

    ``found`` is the metadata stored with the engine (None when missing or unreadable).
    """
    if not engine_exists:
        return 'no engine in the cache for this ONNX, TensorRT version, GPU, precision and size'
    if found is None:
        return 'the cached engine has no readable metadata file'
    changed = [f'{k} {found.get(k)!r} -> {expected.get(k)!r}' for k in KEY_FIELDS
               if found.get(k) != expected.get(k)]
    if changed:
        return 'the cached engine was built for another setup: ' + ', '.join(changed)
    return None


def newest_sibling(directory: os.PathLike, stem: str, exclude: os.PathLike
                   ) -> Optional[Tuple[Path, Optional[Dict[str, object]]]]:
    """Return the newest other engine of ``stem`` and its metadata, to explain a cache miss."""
    others = [p for p in Path(directory).glob(f'{stem}-*.engine') if p != Path(exclude)]
    if not others:
        return None
    path = max(others, key=lambda p: p.stat().st_mtime)
    return path, read_metadata(path.with_suffix('.json'))


def write_metadata(path: os.PathLike, metadata: Mapping[str, object]) -> None:
    """Write an engine's metadata file (pretty JSON, for people reading the cache too)."""
    write_atomic(path, (json.dumps(dict(metadata), indent=2, sort_keys=True) + '\n').encode())


def calibration_images(directory: os.PathLike) -> Sequence[Path]:
    """List the images (jpg, png, bmp) of a calibration folder, sorted by name."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise RegsegError(
            f'int8_calibration_dir {str(directory)!r} is not a folder: point it at a folder of '
            'a few hundred camera images (jpg/png) like those the vehicle will see')
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise RegsegError(
            f'int8_calibration_dir {str(directory)!r} holds no .jpg/.jpeg/.png/.bmp images: '
            'add a few hundred camera images like those the vehicle will see')
    return files


def calibration_hash(files: Sequence[os.PathLike]) -> str:
    """Hash the calibration set by file names, sizes and modification times (hex, 16 digits)."""
    digest = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        digest.update(f'{os.path.basename(f)}\0{st.st_size}\0{int(st.st_mtime)}\n'.encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def build_lock(engine_file: os.PathLike, log: Callable[[str], None]) -> Iterator[None]:
    """
    Hold an exclusive lock on ``<engine_file>.lock`` while checking and building an engine.

    Several nodes starting together (one per camera) then build a missing engine once: the
    others wait and load it from the cache.
    """
    lock_path = Path(f'{os.fspath(engine_file)}.lock')
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, 'a+') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f'another process is building {Path(engine_file).name}: waiting for it')
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
