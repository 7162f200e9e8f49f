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

"""Checkpoint loading: the authors' layout, URLs with a cache, and errors asserted by text."""

import hashlib
import http.server
import socket
import threading
import time

from keylist import released_keys
import pytest
from regseg_ros import RegsegError, RegsegWarning
from regseg_ros.model import (
    build_model, load_weights, RELEASED_CHECKPOINTS, released_url, resolve_weights)
from regseg_ros.model.weights import download
import torch

KEYS = released_keys()


def authors_checkpoint(variant='exp48_decoder26', num_classes=19, seed=0):
    """Build a state_dict from the released key/shape list alone, with random values."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in KEYS[(variant, num_classes)]:
        if dtype == 'int64':
            state[key] = torch.tensor(7, dtype=torch.int64)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


def training_dict(state):
    return {'model': state, 'optimizer': {'state': {}, 'param_groups': []},
            'lr_scheduler': {'last_epoch': 1000}, 'scaler': {}, 'epoch': 999,
            'best_mIU': 78.3, 'run': 1}


def assert_loaded(model, state):
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize('variant', ['exp48_decoder26', 'exp53_decoder29'])
def test_loads_authors_training_dict(tmp_path, variant):
    state = authors_checkpoint(variant)
    path = tmp_path / f'cityscapes_{variant}_trainval'
    torch.save(training_dict(state), path)
    model = load_weights(build_model(variant), path)
    assert_loaded(model, state)


def test_loads_bare_state_dict_and_strips_module_prefix(tmp_path):
    state = authors_checkpoint()
    torch.save({'module.' + k: v for k, v in state.items()}, tmp_path / 'ddp.pth')
    assert_loaded(load_weights(build_model('exp48_decoder26'), tmp_path / 'ddp.pth'), state)


def test_other_class_count_keeps_all_but_the_classifier(tmp_path):
    state = authors_checkpoint()
    torch.save(training_dict(state), tmp_path / 'ckpt')
    model = build_model('exp48_decoder26', num_classes=11)
    fresh_classifier = model.decoder.classifier.weight.detach().clone()
    with pytest.warns(RegsegWarning, match='have 19 classes, the model has 11: the classifier is '
                                           're-initialised'):
        load_weights(model, tmp_path / 'ckpt')
    loaded = model.state_dict()
    for key, value in state.items():
        if key.startswith('decoder.classifier.'):
            assert loaded[key].shape[0] == 11
        else:
            assert torch.equal(loaded[key], value), key
    assert torch.equal(model.decoder.classifier.weight, fresh_classifier)


def test_mismatch_lists_missing_unexpected_and_wrong_shapes(tmp_path):
    state = authors_checkpoint()
    del state['stem.conv.weight']
    state['body.extra.weight'] = torch.zeros(3)
    state['decoder.conv4.conv.weight'] = torch.zeros(64, 80, 3, 3)
    torch.save(state, tmp_path / 'bad')
    with pytest.raises(RegsegError) as info:
        load_weights(build_model('exp48_decoder26'), tmp_path / 'bad')
    text = str(info.value)
    assert "do not fit model 'exp48_decoder26'" in text
    assert 'missing keys (1): stem.conv.weight' in text
    assert 'unexpected keys (1): body.extra.weight' in text
    assert ('wrongly shaped keys (1): decoder.conv4.conv.weight checkpoint (64, 80, 3, 3) vs '
            'model (64, 72, 3, 3)') in text
    assert 'Check the `model` setting' in text


def test_other_variant_is_a_mismatch_not_a_warning(tmp_path):
    torch.save(training_dict(authors_checkpoint('exp53_decoder29')), tmp_path / 'exp53')
    with pytest.raises(RegsegError, match=r'missing keys \(\d+\): body\.stage4\.conv1\.weight'):
        load_weights(build_model('exp48_decoder26'), tmp_path / 'exp53')


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(RegsegError, match=r"weights file '.*nope\.pth' does not exist: pass a "
                                          r'checkpoint path, an https:// URL'):
        load_weights(build_model('exp48_decoder26'), tmp_path / 'nope.pth')


def test_not_a_checkpoint(tmp_path):
    (tmp_path / 'junk').write_bytes(b'this is not a zip file')
    with pytest.raises(RegsegError, match=r"cannot read weights file '.*junk' as a PyTorch "
                                          r'checkpoint'):
        load_weights(build_model('exp48_decoder26'), tmp_path / 'junk')


class _Payload:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def test_refuses_pickled_code(tmp_path):
    torch.save({'model': authors_checkpoint(), 'extra': _Payload()}, tmp_path / 'pickle')
    with pytest.raises(RegsegError, match='cannot read weights file'):
        load_weights(build_model('exp48_decoder26'), tmp_path / 'pickle')


def test_released_url_table():
    assert released_url('cityscapes_exp48_trainval') == (
        'https://github.com/RolandGao/RegSeg/releases/download/v1.0-alpha/'
        'cityscapes_exp48_decoder26_trainval_1000_epochs_1024_crop_bootstrapped_run1')
    with pytest.raises(RegsegError, match="unknown released checkpoint 'x'"):
        released_url('x')


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1, counting GET requests per path."""
    root = tmp_path / 'www'
    root.mkdir()
    hits = {}

    class Handler(http.server.SimpleHTTPRequestHandler):

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 (http.server API)
            hits[self.path] = hits.get(self.path, 0) + 1
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}', root, hits
    finally:
        server.shutdown()
        server.server_close()


def test_url_downloads_once_into_cache_with_progress(tmp_path, http_server):
    base, root, hits = http_server
    state = authors_checkpoint()
    torch.save(training_dict(state), root / 'ckpt')
    digest = hashlib.sha256((root / 'ckpt').read_bytes()).hexdigest()
    url = f'{base}/ckpt#sha256={digest}'
    progress = []
    for _ in range(2):
        model = load_weights(build_model('exp48_decoder26'), url, cache_dir=tmp_path / 'cache',
                             progress=lambda done, total: progress.append((done, total)))
        assert_loaded(model, state)
    assert hits == {'/ckpt': 1}
    size = (root / 'ckpt').stat().st_size
    assert progress[-1] == (size, size)
    assert len(list((tmp_path / 'cache').iterdir())) == 1


def test_url_with_wrong_sha256_is_rejected_and_not_cached(tmp_path, http_server):
    base, root, _hits = http_server
    (root / 'ckpt').write_bytes(b'x' * 1000)
    with pytest.raises(RegsegError, match=r'have sha256 [0-9a-f]{64}, expected 0{64}'):
        download(f'{base}/ckpt', tmp_path / 'cache', sha256='0' * 64, progress=None)
    assert list((tmp_path / 'cache').iterdir()) == []


def test_url_not_found(tmp_path, http_server):
    base, _root, _hits = http_server
    with pytest.raises(RegsegError, match=r"could not download weights from '.*/missing': HTTP "
                                          r'Error 404'):
        download(f'{base}/missing', tmp_path / 'cache', progress=None)


def test_bad_sha256_argument():
    with pytest.raises(RegsegError, match="sha256 'abc' is not 64 hex digits"):
        download('https://example.invalid/x', sha256='abc')


@pytest.fixture
def raw_server():
    """Answer every connection on 127.0.0.1 with ``responses[path]`` (raw bytes), then close."""
    responses = {}
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536).decode('latin-1')
                path = request.split(' ')[1] if request.count(' ') >= 2 else '/'
                conn.sendall(responses.get(path, NOT_FOUND))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.getsockname()[1]}', responses
    finally:
        stop.set()
        server.close()


NOT_FOUND = b'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'


def http_response(body, length=None):
    length = len(body) if length is None else length
    return (f'HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n'
            .encode() + body)


def checkpoint_bytes(tmp_path, seed=0):
    path = tmp_path / f'ckpt-{seed}'
    torch.save(training_dict(authors_checkpoint(seed=seed)), path)
    return path.read_bytes()


def cache_files(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_body_cut_short_is_not_cached_and_says_so(tmp_path, raw_server, capsys):
    base, responses = raw_server
    good = checkpoint_bytes(tmp_path)
    responses['/ckpt'] = http_response(good[:len(good) // 2], length=len(good))
    cache = tmp_path / 'cache'
    with pytest.raises(RegsegError) as info:
        download(f'{base}/ckpt', cache)
    text = str(info.value)
    assert f'the server sent {len(good) // 2} of {len(good)} bytes (Content-Length)' in text
    assert f"nothing was written to '{cache}/" in text and 'run again' in text
    assert cache_files(cache) == []
    # the progress line ends before the error is printed: no '(50 %)[FATAL]' glued lines
    err = capsys.readouterr().err
    assert err.startswith('\rdownloading weights:') and err.endswith('(50 %)\n')
    # the next start downloads again instead of failing on a broken cached file
    responses['/ckpt'] = http_response(good)
    path = download(f'{base}/ckpt', cache)
    assert path.read_bytes() == good
    assert capsys.readouterr().err.endswith('(100 %)\n')


def test_complete_response_that_is_not_a_checkpoint_is_not_cached(tmp_path, raw_server):
    base, responses = raw_server
    responses['/page'] = http_response(b'<html>Sign in to continue</html>' * 100)
    cache = tmp_path / 'cache'
    with pytest.raises(RegsegError, match=r"the file downloaded from '.*/page' cannot be used: it "
                                          r'is not a PyTorch checkpoint \(.*\); nothing was '
                                          r"written to '.*page'; check the URL"):
        download(f'{base}/page', cache, progress=None)
    assert cache_files(cache) == []
    torch.save({'epoch': 3}, tmp_path / 'not_weights')
    responses['/dict'] = http_response((tmp_path / 'not_weights').read_bytes())
    with pytest.raises(RegsegError, match='cannot be used: it holds neither a state_dict'):
        download(f'{base}/dict', cache, progress=None)
    assert cache_files(cache) == []


def test_released_name_records_sha256_and_rechecks_it(tmp_path, raw_server, monkeypatch):
    base, responses = raw_server
    filename = RELEASED_CHECKPOINTS['cityscapes_exp48_trainval'][0]
    good = checkpoint_bytes(tmp_path)
    responses[f'/mirror/{filename}'] = http_response(good)
    monkeypatch.setenv('REGSEG_RELEASE_URL', f'{base}/mirror/')
    cache = tmp_path / 'cache'
    path = resolve_weights('cityscapes_exp48_trainval', cache, progress=None)
    digest = hashlib.sha256(good).hexdigest()
    assert path.name.endswith(filename) and path.read_bytes() == good
    assert cache_files(cache) == sorted([path.name, path.name + '.sha256'])
    assert (cache / (path.name + '.sha256')).read_text().strip() == digest
    del responses[f'/mirror/{filename}']  # later loads come from the cache alone
    assert resolve_weights('cityscapes_exp48_trainval', cache, progress=None) == path
    # a cached file that changed (even into another valid checkpoint) is refused
    other = checkpoint_bytes(tmp_path, seed=1)
    path.write_bytes(other)
    with pytest.raises(RegsegError) as info:
        load_weights(build_model('exp48_decoder26'), 'cityscapes_exp48_trainval',
                     cache_dir=cache, progress=None)
    text = str(info.value)
    assert (f"cached weights '{path}' have sha256 {hashlib.sha256(other).hexdigest()}, but "
            f"'{path}.sha256' recorded {digest} when they were downloaded") in text
    assert f"delete '{path}' (and '{path.name}.sha256' beside it) and run again" in text


def test_cached_file_from_before_hash_records(tmp_path, raw_server):
    """A broken file a former version cached names itself and the fix; a good one is recorded."""
    base, responses = raw_server
    cache = tmp_path / 'cache'
    good = checkpoint_bytes(tmp_path)
    responses['/ckpt'] = http_response(good)
    path = download(f'{base}/ckpt', cache, progress=None)
    record = path.with_name(path.name + '.sha256')
    record.unlink()
    path.write_bytes(good[:1000])
    with pytest.raises(RegsegError, match=rf"cached weights '{path}' cannot be used: it is not a "
                                          rf"PyTorch checkpoint .*; delete '{path}'"):
        download(f'{base}/ckpt', cache, progress=None)
    path.write_bytes(good)
    assert download(f'{base}/ckpt', cache, progress=None) == path
    assert record.read_text().strip() == hashlib.sha256(good).hexdigest()


def test_refused_connection_fails_at_once(tmp_path):
    port = free_port()
    start = time.monotonic()
    with pytest.raises(RegsegError, match=r"could not download weights from 'http://127\.0\.0\.1:"
                                          r'.*ConnectionRefusedError.*offline\?'):
        download(f'http://127.0.0.1:{port}/ckpt', tmp_path / 'cache', progress=None)
    assert time.monotonic() - start < 2


def test_unanswered_connection_times_out_in_seconds(tmp_path):
    """A host that drops the connection attempt (no network) fails after connect_timeout."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    for _ in range(4):  # fill the accept queue: further connection attempts go unanswered
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(('127.0.0.1', port))
        queued.append(sock)
    try:
        start = time.monotonic()
        with pytest.raises(RegsegError, match=r'TimeoutError: no connection to 127.0.0.1:\d+ '
                                              r'within 1 s .*offline\?'):
            download(f'http://127.0.0.1:{port}/ckpt', tmp_path / 'cache', progress=None,
                     connect_timeout=1.0)
        assert 0.9 < time.monotonic() - start < 3
    finally:
        for sock in queued:
            sock.close()
        server.close()


def test_hanging_host_lookup_times_out_in_seconds(tmp_path, monkeypatch):
    def slow_lookup(*args, **kwargs):
        time.sleep(5)
        raise socket.gaierror(-2, 'Name or service not known')

    monkeypatch.setattr(socket, 'getaddrinfo', slow_lookup)
    start = time.monotonic()
    with pytest.raises(RegsegError, match=r'looking up example.invalid took over 1 s'):
        download('https://example.invalid/ckpt', tmp_path / 'cache', progress=None,
                 connect_timeout=1.0)
    assert time.monotonic() - start < 3


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_unknown_host_says_the_lookup_failed(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, 'Name or service not known')

    monkeypatch.setattr(socket, 'getaddrinfo', no_dns)
    with pytest.raises(RegsegError, match=r"cannot look up the host 'example\.invalid' \(Name or "
                                          r'service not known\).*offline\?'):
        download('https://example.invalid/ckpt', tmp_path / 'cache', progress=None)


def test_train_checkpoints_carry_a_label_set_and_load_strictly(tmp_path):
    from regseg_ros.core.labels import LabelSet
    from regseg_ros.model.weights import (checkpoint_label_set, META_KEY, resolve_label_set,
                                          save_checkpoint)
    labels = LabelSet('yard', ('ground', 'post'), ((1, 2, 3), (4, 5, 6)), ('ground',))
    model = build_model('exp48_decoder26', 2)
    path = save_checkpoint(tmp_path / 'best.pth', {'model': model.state_dict(),
                                                   META_KEY: {'label_set': labels.to_dict()}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['best.pth']  # no temporary left
    assert checkpoint_label_set(str(path)) == labels
    load_weights(build_model('exp48_decoder26', 2), path)  # the node's loader
    assert resolve_label_set('', str(path)) == labels
    with pytest.raises(RegsegError, match="label set 'cityscapes' has 19 classes but checkpoint"):
        resolve_label_set('cityscapes', str(path))
    bare = tmp_path / 'bare.pth'
    torch.save(model.state_dict(), bare)
    assert checkpoint_label_set(str(bare)) is None
    assert resolve_label_set(None, str(bare)).name == 'cityscapes'


def test_a_checkpoint_that_cannot_be_written_leaves_nothing(tmp_path):
    from regseg_ros.model.weights import save_checkpoint
    target = tmp_path / 'out'
    target.mkdir()
    (target / 'last.pth').mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(RegsegError, match='cannot write checkpoint'):
        save_checkpoint(target / 'last.pth', {'model': {'w': torch.zeros(2)}})
    assert sorted(p.name for p in target.iterdir()) == ['last.pth']
