"""Checkpoint loading: the authors' layout, URLs with a cache, and errors asserted by text."""

import hashlib
import http.server
import threading

from keylist import released_keys
import pytest
from regseg_ros import RegsegError, RegsegWarning
from regseg_ros.model import build_model, load_weights, released_url
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
