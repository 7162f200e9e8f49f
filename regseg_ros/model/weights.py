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
Load RegSeg weights from a path or an https:// URL (cached, sha256-verified).

A download goes to a temporary file in the cache folder; it enters the cache only when its
length matches ``Content-Length``, it loads as a checkpoint (``torch.load(weights_only=True)``)
and, where a sha256 is known, its hash matches. Without a known sha256 (the released short
names) the hash of the verified download is recorded beside it (``<file>.sha256``) and checked
on every later load.
"""

import hashlib
import http.client
import os
from pathlib import Path
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple
import urllib.error
import urllib.parse
import urllib.request
import warnings

from regseg_ros.core.errors import RegsegError, RegsegWarning
from regseg_ros.core.files import write_atomic
import torch
from torch import nn

RELEASE_URL = 'https://github.com/RolandGao/RegSeg/releases/download/v1.0-alpha/'
RELEASE_URL_ENV = 'REGSEG_RELEASE_URL'  # a mirror of the release folder (and tests' stand-in)

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
CONNECT_TIMEOUT = 5.0  # seconds to look up the host and connect: offline shows in seconds
READ_TIMEOUT = 60.0    # seconds a connected server may stay silent
SHA256_SUFFIX = '.sha256'
_CHUNK = 1 << 20


def released_url(name: str) -> str:
    """
    Return the download URL of a released checkpoint by short name or file name.

    ``$REGSEG_RELEASE_URL`` replaces the release folder (a mirror), e.g. ``http://host/regseg/``.
    """
    base = os.environ.get(RELEASE_URL_ENV) or RELEASE_URL
    for short, (filename, _variant) in RELEASED_CHECKPOINTS.items():
        if name in (short, filename):
            return base.rstrip('/') + '/' + filename
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
        if not _is_sha256(sha256):
            raise RegsegError(f'sha256 {sha256!r} is not 64 hex digits')
    return urllib.parse.urlunsplit(parsed._replace(fragment='')), sha256


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in '0123456789abcdef' for c in text)


def file_sha256(path: os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_record(path: os.PathLike) -> Path:
    """Where the sha256 of a downloaded file is recorded: ``<file>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SHA256_SUFFIX)


def _stderr_progress(done: int, total: Optional[int]) -> None:
    if total:
        sys.stderr.write(f'\rdownloading weights: {done / 1e6:.1f}/{total / 1e6:.1f} MB '
                         f'({100 * done / total:.0f} %)')
    else:
        sys.stderr.write(f'\rdownloading weights: {done / 1e6:.1f} MB')
    sys.stderr.flush()


def _resolve_host(host: str, port: int, timeout: float) -> list:
    """``getaddrinfo`` bounded by ``timeout`` (a resolver without network can hang far longer)."""
    result = {}

    def lookup():
        try:
            result['infos'] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            result['error'] = exc

    thread = threading.Thread(target=lookup, name='regseg-dns', daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise socket.timeout(f'looking up {host} took over {timeout:g} s')
    if 'error' in result:
        raise result['error']
    return result['infos']


def _create_connection(address, connect_timeout: float, read_timeout: float,
                       source_address=None) -> socket.socket:
    """Look up and connect within ``connect_timeout``; then read with ``read_timeout``."""
    host, port = address
    deadline = time.monotonic() + connect_timeout
    last_error: Optional[OSError] = None
    for family, kind, proto, _name, sockaddr in _resolve_host(host, port, connect_timeout):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.settimeout(read_timeout)
        return sock
    if isinstance(last_error, socket.timeout) or last_error is None:
        raise socket.timeout(f'no connection to {host}:{port} within {connect_timeout:g} s')
    raise last_error


def _connection_class(base, connect_timeout: float, read_timeout: float):
    """Return an http.client connection factory that connects within ``connect_timeout``."""

    def make(host, **kwargs):
        conn = base(host, **kwargs)
        conn._create_connection = (
            lambda address, timeout=None, source_address=None: _create_connection(
                address, connect_timeout, read_timeout, source_address))
        return conn

    return make


def _opener(connect_timeout: float, read_timeout: float) -> urllib.request.OpenerDirector:
    """Return a urllib opener (proxies from the environment) with its own connect timeout."""

    class HTTPHandler(urllib.request.HTTPHandler):

        def http_open(self, req):
            return self.do_open(
                _connection_class(http.client.HTTPConnection, connect_timeout, read_timeout),
                req)

    class HTTPSHandler(urllib.request.HTTPSHandler):

        def https_open(self, req):
            return self.do_open(
                _connection_class(http.client.HTTPSConnection, connect_timeout, read_timeout),
                req, context=self._context)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def _fetch(url: str, out, progress, connect_timeout: float, read_timeout: float) -> str:
    """Write the body of ``url`` to the open file ``out``; return its sha256; check its length."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={'User-Agent': 'regseg_ros'})
    with _opener(connect_timeout, read_timeout).open(request, timeout=read_timeout) as resp:
        total = resp.headers.get('Content-Length')
        total = int(total) if total and total.isdigit() else None
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
    if total is not None and done != total:
        raise _ShortDownload(done, total)
    return digest.hexdigest()


class _ShortDownload(Exception):

    def __init__(self, done: int, total: int):
        super().__init__(f'the server sent {done} of {total} bytes (Content-Length) and closed '
                         'the connection')


class _BadCheckpoint(Exception):
    """A file that is not a checkpoint; ``unreadable`` tells torch.load failing from the rest."""

    def __init__(self, problem: str, unreadable: bool):
        super().__init__(problem)
        self.unreadable = unreadable


def _load_checkpoint(path: os.PathLike) -> Mapping:
    """Load a training dict or a bare state_dict (``weights_only``); return the state_dict."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: B902 torch raises many types for a bad file
        first = str(exc).splitlines()[0] if str(exc) else ''
        raise _BadCheckpoint(f'{type(exc).__name__}: {first}', unreadable=True) from None
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get('model'), Mapping):
        ckpt = ckpt['model']
    if not isinstance(ckpt, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise _BadCheckpoint("it holds neither a state_dict nor a training dict with a 'model' "
                             'state_dict', unreadable=False)
    return ckpt


def _checkpoint_problem(path: os.PathLike) -> Optional[str]:
    """Return why ``path`` is not a loadable checkpoint, or None."""
    try:
        _load_checkpoint(path)
    except _BadCheckpoint as exc:
        return f'it is not a PyTorch checkpoint ({exc})' if exc.unreadable else str(exc)
    return None


def _check_cached(target: Path, sha256: Optional[str]) -> Path:
    """Check a cached download against the known or the recorded sha256 (or record it)."""
    record = sha256_record(target)
    delete = (f'delete {str(target)!r} (and {record.name!r} beside it) and run again to '
              'download it anew')
    if sha256:
        actual = file_sha256(target)
        if actual != sha256:
            raise RegsegError(
                f'cached weights {str(target)!r} have sha256 {actual}, expected {sha256}: '
                f'{delete}')
        return target
    if record.is_file():
        recorded = record.read_text().strip().lower()
        actual = file_sha256(target)
        if actual != recorded:
            raise RegsegError(
                f'cached weights {str(target)!r} have sha256 {actual}, but {str(record)!r} '
                f'recorded {recorded or "nothing"} when they were downloaded: the file changed '
                f'or is damaged; {delete}')
        return target
    # Cached before hashes were recorded (or by a broken download): check it once, then record.
    problem = _checkpoint_problem(target)
    if problem:
        raise RegsegError(f'cached weights {str(target)!r} cannot be used: {problem}; {delete}')
    _write_record(record, file_sha256(target))
    return target


def _write_record(record: Path, digest: str) -> None:
    write_atomic(record, (digest + '\n').encode())


def download(url: str, cache_dir: Optional[os.PathLike] = None, sha256: Optional[str] = None,
             progress: Optional[Callable[[int, Optional[int]], None]] = _stderr_progress,
             timeout: float = READ_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT) -> Path:
    """
    Download ``url`` once into ``cache_dir`` and return the cached file.

    The download goes to a temporary file in ``cache_dir`` and is renamed into the cache only
    when it is complete (``Content-Length``), loads as a checkpoint and matches the known
    ``sha256`` (argument or ``#sha256=`` URL fragment). Without a known sha256 the verified
    file's hash is recorded in ``<file>.sha256`` and checked on every later call. Looking up
    the host and connecting must finish within ``connect_timeout`` seconds (offline fails
    fast); a connected server may stay silent for ``timeout`` seconds.
    """
    url, sha256 = _split_hash(url, sha256)
    if urllib.parse.urlsplit(url).scheme not in ('https', 'http'):
        raise RegsegError(f'weights URL {url!r} must start with https://')
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = os.path.basename(urllib.parse.urlsplit(url).path) or 'weights'
    url_tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = cache / f'{url_tag}-{name}'
    if target.is_file():
        return _check_cached(target, sha256)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=cache, prefix='.download-')
    except OSError as exc:
        raise RegsegError(
            f'cannot write to the weights cache {str(cache)!r} ({exc}): set cache_dir '
            '(--cache-dir, $REGSEG_CACHE_DIR) to a writable folder') from None
    not_cached = f'nothing was written to {str(target)!r}'
    shown = []

    def report(done: int, total: Optional[int]) -> None:
        shown.append(True)
        progress(done, total)

    try:
        try:
            with os.fdopen(fd, 'wb') as out:
                digest = _fetch(url, out, report if progress else None, connect_timeout,
                                timeout)
        finally:
            if shown and progress is _stderr_progress:
                sys.stderr.write('\n')  # end the progress line, also when the download broke
                sys.stderr.flush()
        if sha256 and digest != sha256:
            raise RegsegError(
                f'weights downloaded from {url!r} have sha256 {digest}, expected {sha256}: '
                f'the file changed or the download broke; {not_cached}; check the URL and hash')
        problem = _checkpoint_problem(tmp_name)
        if problem:
            raise RegsegError(
                f'the file downloaded from {url!r} cannot be used: {problem}; {not_cached}; '
                'check the URL (it must name the checkpoint file itself, not a web page)')
        os.replace(tmp_name, target)
        if not sha256:
            _write_record(sha256_record(target), digest)
    except _ShortDownload as exc:
        raise RegsegError(
            f'download of {url!r} broke off: {exc}; {not_cached}; run again, or download the '
            'file yourself and pass its path') from None
    except urllib.error.HTTPError as exc:
        raise RegsegError(
            f'could not download weights from {url!r}: {exc}; {not_cached}; check the URL') \
            from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, socket.gaierror):
            reason = (f'cannot look up the host {urllib.parse.urlsplit(url).hostname!r} '
                      f'({reason.strerror})')
        elif isinstance(reason, BaseException):
            reason = f'{type(reason).__name__}: {reason}'
        raise RegsegError(
            f'could not download weights from {url!r}: {reason} '
            f'(connect timeout {connect_timeout:g} s, read timeout {timeout:g} s); '
            f'{not_cached}; check the URL and the network (offline?), or download the file '
            'yourself and pass its path') from None
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
        ckpt = _load_checkpoint(path)
    except _BadCheckpoint as exc:
        if exc.unreadable:
            raise RegsegError(
                f'cannot read weights file {str(path)!r} as a PyTorch checkpoint ({exc}); pass a '
                'file saved with torch.save, e.g. the released RegSeg checkpoints') from None
        raise RegsegError(f'weights file {str(path)!r}: {exc}') from None
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


# -- checkpoints written by ``train`` --------------------------------------------------------

META_KEY = 'regseg_ros'  # training dict entry with the label set, model variant and config


def save_checkpoint(path: os.PathLike, state: Mapping[str, object]) -> Path:
    """
    Write a training dict (``model`` state_dict plus anything else) atomically.

    The file is written as ``.<name>.tmp-<random>`` in the same folder and renamed over ``path``
    when complete, so ``path`` is always absent or whole. Tensors are moved to the CPU first;
    the file loads with ``torch.load(weights_only=True)`` (the node's loader).
    """
    path = Path(path)
    if not isinstance(state.get('model'), Mapping):
        raise RegsegError("a checkpoint needs a 'model' state_dict")
    state = dict(state)
    state['model'] = {k[len('module.'):] if k.startswith('module.') else k: v.detach().cpu()
                      for k, v in state['model'].items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.tmp-')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise RegsegError(f'cannot write checkpoint {str(path)!r} ({exc.strerror or exc}): free '
                          'space or choose another --output folder') from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_training_dict(path: os.PathLike) -> Dict[str, object]:
    """Load a whole checkpoint (``weights_only``); a bare state_dict comes back as ``model``."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: B902 torch raises many types for a bad file
        first = str(exc).splitlines()[0] if str(exc) else ''
        raise RegsegError(f'cannot read checkpoint {str(path)!r} ({type(exc).__name__}: '
                          f'{first}): pass a file saved by train or torch.save') from None
    if not isinstance(ckpt, Mapping):
        raise RegsegError(f'checkpoint {str(path)!r} holds a {type(ckpt).__name__}, not a dict')
    if not isinstance(ckpt.get('model'), Mapping):
        ckpt = {'model': ckpt}
    return dict(ckpt)


def checkpoint_metadata(source: str, cache_dir: Optional[os.PathLike] = None
                        ) -> Optional[Dict[str, object]]:
    """Return the ``regseg_ros`` entry a ``train`` checkpoint carries (None for others)."""
    path = resolve_weights(os.fspath(source), cache_dir)
    meta = read_training_dict(path).get(META_KEY)
    return dict(meta) if isinstance(meta, Mapping) else None


def checkpoint_label_set(source: str, cache_dir: Optional[os.PathLike] = None):
    """
    Return the :class:`LabelSet` a checkpoint written by ``train`` carries, or None.

    ``source`` is a path, URL or released name (released checkpoints carry none). The model
    is not built; a malformed label set raises naming the file.
    """
    from regseg_ros.core.labels import LabelSet
    meta = checkpoint_metadata(source, cache_dir)
    if not meta or meta.get('label_set') is None:
        return None
    return LabelSet.from_dict(meta['label_set'], f'label set in checkpoint {source!r}')


def resolve_label_set(name: Optional[str], weights: str,
                      cache_dir: Optional[os.PathLike] = None, default: str = 'cityscapes'):
    """
    Choose the label set for ``weights``: the named one, else the checkpoint's, else ``default``.

    An empty ``name`` means "not chosen". When a name is chosen and the checkpoint carries a
    label set of another class count, raise naming both (the classifier would not fit).
    """
    from regseg_ros.core.labels import get_label_set
    carried = checkpoint_label_set(weights, cache_dir) if weights else None
    if not name:
        return carried if carried is not None else get_label_set(default)
    chosen = get_label_set(name)
    if carried is not None and carried.num_classes != chosen.num_classes:
        raise RegsegError(
            f'label set {name!r} has {chosen.num_classes} classes but checkpoint {weights!r} was '
            f'trained on label set {carried.name!r} ({carried.num_classes} classes: '
            f'{", ".join(carried.classes)}): leave the label set unset to use the checkpoint\'s')
    return chosen
