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

"""RegSeg architecture: released key layout, parameter counts, determinism, output sizes."""

from keylist import released_keys
import pytest
from regseg_ros import RegsegError
from regseg_ros.model import build_model, RegSeg, VARIANTS
import torch

KEYS = released_keys()


def randomise_bn(model, seed=0):
    """Non-trivial BatchNorm statistics, so eval-mode outputs depend on every buffer."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
    return model


@pytest.mark.parametrize('variant,num_classes', sorted(KEYS))
def test_state_dict_matches_released_layout(variant, num_classes):
    model = build_model(variant, num_classes)
    ours = [(k, tuple(v.shape), str(v.dtype).replace('torch.', ''))
            for k, v in model.state_dict().items()]
    assert ours == KEYS[(variant, num_classes)]


@pytest.mark.parametrize('variant,params,blocks', [
    ('exp48_decoder26', 3_334_951, 18),
    ('exp53_decoder29', 6_131_579, 22),
])
def test_parameter_counts_and_block_counts(variant, params, blocks):
    model = build_model(variant)
    assert sum(p.numel() for p in model.parameters()) == params
    d_blocks = [m for m in model.modules() if type(m).__name__ == 'DBlock']
    assert len(d_blocks) == blocks


def test_variants_come_from_one_table():
    assert set(VARIANTS) == {'exp48_decoder26', 'exp53_decoder29'}


def test_unknown_variant_names_the_choices():
    with pytest.raises(RegsegError, match=r"unknown RegSeg model 'exp99'.*exp48_decoder26"):
        build_model('exp99')


def test_two_dilation_conv_uses_static_slices_not_tensor_split():
    model = build_model('exp48_decoder26')
    conv = model.body.stage16[2].conv2
    assert [c.dilation for c in conv.convs] == [(1, 1), (2, 2)]
    graph = torch.fx.symbolic_trace(conv).graph
    targets = {getattr(n.target, '__name__', str(n.target)) for n in graph.nodes}
    assert 'tensor_split' not in targets and 'split' not in targets
    assert 'getitem' in targets  # the two static channel slices


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_state_dict_round_trip_gives_identical_outputs(variant):
    torch.manual_seed(1)
    first = randomise_bn(build_model(variant), seed=1)
    second = build_model(variant)
    second.load_state_dict(first.state_dict(), strict=True)
    x = torch.randn(1, 3, 128, 256)
    with torch.no_grad():
        a, b = first(x), second(x)
    assert torch.equal(a, b)
    # and a model with other weights does differ: the comparison above can fail
    with torch.no_grad():
        assert not torch.equal(a, build_model(variant)(x))


@pytest.mark.parametrize('height,width', [(512, 1024), (375, 1242), (513, 1025)])
def test_output_size_equals_input_size(height, width):
    model = build_model('exp48_decoder26')
    with torch.no_grad():
        out = model(torch.randn(1, 3, height, width))
    assert out.shape == (1, 19, height, width)
    assert torch.isfinite(out).all()


def test_exp53_output_size_and_quarter_logits():
    model = build_model('exp53_decoder29', num_classes=11)
    x = torch.randn(1, 3, 375, 1242)
    with torch.no_grad():
        assert model(x).shape == (1, 11, 375, 1242)
        assert model.forward_quarter(x).shape == (1, 11, 94, 311)


def test_rejects_bad_class_count():
    with pytest.raises(RegsegError, match='num_classes must be at least 1'):
        RegSeg('exp48_decoder26', num_classes=0)
