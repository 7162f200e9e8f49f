"""Load RegSeg weights from a path or an https:// URL (cached, sha256-verified)."""

import hashlib
import os
from pathlib import Path
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Mapping, Optional, Tuple
import urllib.error
import urllib.parse
import urllib.request
import warnings

from regseg_ros.errors import RegsegError, RegsegWarning
import torch
from torch import nn

RELEASE_URL = 'https://github.com/RolandGao/RegSeg/releases/download/v1.0-alpha/'

# The authors' released Cityscapes checkpoints: short name -> (file name, model variant).
RELEASED_CHECKPOINTS: Dict[str, Tuple[str, str]] = {
    'cityscapes_exp48_trainval': (
        'cityscapes_exp48_decoder26_trainval_1000_epochs_1024_crop_bootstrapped_run1',
        'exp48_decoder26'),
    'cityscapes_exp53_trainval': (
        'cityscapes_exp53_decoder29_trainval_1000_epochs_1024_crop_bootstrapped_run1',
        'exp53_decoder29'),
    'cityscapes_exp48_train_run1': ('cityscapes_exp48_decoder26_train_1000_epochs_run1',
                                    'exp48_decoder26'),
    'cityscapes_exp48_train_run2': ('cityscapes_exp48_decoder26_train_1000_epochs_run2',
                                    'exp48_decoder26'),
    'cityscapes_exp48_train_run3': ('cityscapes_exp48_decoder26_train_1000_epochs_run3',
                                    'exp48_decoder26'),
}

CLASSIFIER_KEYS = ('decoder.classifier.weight', 'decoder.classifier.bias')
_CHUNK = 1 << 20


def released_url(name: str) -> str:
    """Return the download URL of a released checkpoint by short name or file name."""
    for short, (filename, _variant) in RELEASED_CHECKPOINTS.items():
        if name in (short, filename):
            return RELEASE_URL + filename
    raise RegsegError(
        f'unknown released checkpoint {name!r}: choose one of {sorted(RELEASED_CHECKPOINTS)}')


def default_cache_dir() -> Path:
    """``$REGSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/regseg_ros``, else ``~/.cache/regseg_ros``."""
    if os.environ.get('REGSEG_CACHE_DIR'):
        return Path(os.environ['REGSEG_CACHE_DIR'])
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(Path.home(), '.cache')
    return Path(base) / 'regseg_ros'


def _split_hash(url: str, sha256: Optional[str]) -> Tuple[str, Optional[str]]:
    """Take a ``#sha256=<hex>`` fragment off a URL; an explicit ``sha256`` argument wins."""
    parsed = urllib.parse.urlsplit(url)
    fragment = urllib.parse.parse_qs(parsed.fragment)
    if sha256 is None and fragment.get('sha256'):
        sha256 = fragment['sha256'][0]
    if sha256 is not None:
        sha256 = sha256.lower()
        if len(sha256) != 64 or any(c not in '0123456789abcdef' for c in sha256):
            raise RegsegError(f'sha256 {sha256!r} is not 64 hex digits')
    return urllib.parse.urlunsplit(parsed._replace(fragment='')), sha256


def file_sha256(path: os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _stderr_progress(done: int, total: Optional[int]) -> None:
    if total:
        sys.stderr.write(f'\rdownloading weights: {done / 1e6:.1f}/{total / 1e6:.1f} MB '
                         f'({100 * done / total:.0f} %)')
    else:
        sys.stderr.write(f'\rdownloading weights: {done / 1e6:.1f} MB')
    sys.stderr.flush()


def download(url: str, cache_dir: Optional[os.PathLike] = None, sha256: Optional[str] = None,
             progress: Optional[Callable[[int, Optional[int]], None]] = _stderr_progress,
             timeout: float = 60.0) -> Path:
    """
    Download ``url`` once into ``cache_dir`` and return the cached file.

    A cached file is never downloaded again. With a known ``sha256`` (argument or ``#sha256=``
    URL fragment) the download is verified before it enters the cache.
    """
    url, sha256 = _split_hash(url, sha256)
    if urllib.parse.urlsplit(url).scheme not in ('https', 'http'):
        raise RegsegError(f'weights URL {url!r} must start with https://')
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = os.path.basename(urllib.parse.urlsplit(url).path) or 'weights'
    url_tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = cache / f'{url_tag}-{name}'
    if target.is_file():
        if sha256 and file_sha256(target) != sha256:
            raise RegsegError(
                f'cached weights {str(target)!r} do not match sha256 {sha256}: delete the file '
                'and run again to download it anew')
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix='.download-')
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get('Content-Length')
            total = int(total) if total else None
            done = 0
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if progress is _stderr_progress:
            sys.stderr.write('\n')
        if sha256 and digest.hexdigest() != sha256:
            raise RegsegError(
                f'weights downloaded from {url!r} have sha256 {digest.hexdigest()}, expected '
                f'{sha256}: the file changed or the download broke; check the URL and hash')
        shutil.move(tmp_name, target)
    except (urllib.error.URLError, OSError) as exc:
        raise RegsegError(
            f'could not download weights from {url!r}: {exc}; check the URL and the network, '
            'or download the file yourself and pass its path') from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def resolve_weights(source: str, cache_dir: Optional[os.PathLike] = None,
                    sha256: Optional[str] = None, **download_kwargs) -> Path:
    """Turn a path, an https:// URL or a released checkpoint's short name into a local file."""
    if '://' in source:
        return download(source, cache_dir, sha256, **download_kwargs)
    if source in RELEASED_CHECKPOINTS:
        return download(released_url(source), cache_dir, sha256, **download_kwargs)
    path = Path(source).expanduser()
    if not path.is_file():
        raise RegsegError(
            f'weights file {source!r} does not exist: pass a checkpoint path, an https:// URL '
            f'or one of {sorted(RELEASED_CHECKPOINTS)}')
    if sha256 and file_sha256(path) != sha256.lower():
        raise RegsegError(f'weights file {source!r} does not match sha256 {sha256}')
    return path


def read_state_dict(path: os.PathLike) -> Dict[str, torch.Tensor]:
    """Read a checkpoint (training dict with ``model`` or bare state_dict), ``weights_only``."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise RegsegError(
            f'cannot read weights file {str(path)!r} as a PyTorch checkpoint '
            f'({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}); '
            'pass a file saved with torch.save, e.g. the released RegSeg checkpoints') from None
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get('model'), Mapping):
        ckpt = ckpt['model']
    if not isinstance(ckpt, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise RegsegError(
            f'weights file {str(path)!r} holds neither a state_dict nor a training dict with a '
            "'model' state_dict")
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt.items()}


def _describe_mismatch(missing: List[str], unexpected: List[str],
                       shapes: List[Tuple[str, tuple, tuple]]) -> str:
    parts = []
    if missing:
        parts.append(f'missing keys ({len(missing)}): {", ".join(missing[:10])}'
                     + (' ...' if len(missing) > 10 else ''))
    if unexpected:
        parts.append(f'unexpected keys ({len(unexpected)}): {", ".join(unexpected[:10])}'
                     + (' ...' if len(unexpected) > 10 else ''))
    if shapes:
        parts.append(f'wrongly shaped keys ({len(shapes)}): ' + ', '.join(
            f'{k} checkpoint {tuple(a)} vs model {tuple(b)}' for k, a, b in shapes[:10])
            + (' ...' if len(shapes) > 10 else ''))
    return '; '.join(parts)


def load_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                    source: str = 'state_dict') -> nn.Module:
    """
    Strictly load ``state_dict`` into ``model``.

    A classifier of another class count is left re-initialised, with a warning; any other
    mismatch raises one :class:`RegsegError` listing missing, unexpected and wrongly shaped keys.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(own[k].shape)) for k in own
              if k in state_dict and state_dict[k].shape != own[k].shape]
    classifier_only = bool(shapes) and all(k in CLASSIFIER_KEYS for k, _a, _b in shapes)
    if missing or unexpected or (shapes and not classifier_only):
        raise RegsegError(
            f'weights {source!r} do not fit model '
            f'{getattr(model, "variant", type(model).__name__)!r}: '
            f'{_describe_mismatch(missing, unexpected, shapes)}. '
            'Check the `model` setting against the checkpoint (exp48_decoder26 or '
            'exp53_decoder29)')
    state = dict(state_dict)
    if classifier_only:
        ckpt_classes = state_dict[CLASSIFIER_KEYS[0]].shape[0]
        warnings.warn(
            f'weights {source!r} have {ckpt_classes} classes, the model has '
            f'{own[CLASSIFIER_KEYS[0]].shape[0]}: the classifier is re-initialised and must be '
            'fine-tuned before its output means anything', RegsegWarning, stacklevel=2)
        for key in CLASSIFIER_KEYS:
            state[key] = own[key]
    model.load_state_dict(state, strict=True)
    return model


def load_weights(model: nn.Module, source: os.PathLike, cache_dir: Optional[os.PathLike] = None,
                 sha256: Optional[str] = None, **download_kwargs) -> nn.Module:
    """Load weights from a path, an https:// URL or a released checkpoint name into ``model``."""
    path = resolve_weights(os.fspath(source), cache_dir, sha256, **download_kwargs)
    return load_state_dict(model, read_state_dict(path), os.fspath(source))
