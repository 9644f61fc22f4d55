"""Transformer backbone (Decision Transformer's GPT): GPT-2 init, the attention mask, the window shortcut
for every depth (the first layer is also the last one at n_layer=1), argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decision_seq.models.backbones.transformer import TransformerBackbone


def _net(**kw) -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(d_model=16, dropout=0.0, **kw).double().eval()


def test_gpt2_init():
    """Every Linear from normal(0, 0.02) with zero bias, as HuggingFace's GPT-2 (the official DT's model)."""
    torch.manual_seed(0)
    net = TransformerBackbone(d_model=64, n_layer=2)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * 4  # qkv, proj, mlp in, mlp out per block
    for m in linears:
        assert abs(m.weight.std().item() - 0.02) < 0.003 and abs(m.weight.mean().item()) < 0.003
        assert (m.bias == 0).all()


def test_attention_mask_is_causal_and_hides_padding():
    mask = torch.tensor([[False, True, True], [True, True, True]])
    allowed = TransformerBackbone.attention_mask(mask)  # (B, 1, T, T)
    assert allowed.shape == (2, 1, 3, 3)
    assert torch.equal(allowed[1, 0], torch.ones(3, 3, dtype=torch.bool).tril())
    # padded key 0 is hidden from the real queries 1, 2; the padded query 0 still sees itself (no NaN row)
    assert torch.equal(allowed[0, 0], torch.tensor([[True, False, False], [False, True, False], [False, True, True]]))


@pytest.mark.parametrize("n_layer", [1, 3])
def test_forward_last_equals_forward(n_layer):
    """The evaluation shortcut (last token only, first-layer projections from token_features)."""
    net = _net(n_layer=n_layer, n_head=2)
    x = torch.randn(3, 8, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x)[:, -1]
        torch.testing.assert_close(net.forward_last(x), ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(net.forward_last(x, net.token_features(x)), ref, rtol=1e-10, atol=1e-10)
    assert net.token_features(x).shape == (3, 8, 48)  # the first layer's q, k, v


def test_kv_cache_grows_with_the_tokens():
    net = _net(n_layer=2)
    assert net.constant_time_step is False
    state = net.init_state(2)
    for _ in range(3):
        _, state = net.step(torch.randn(2, 16, dtype=torch.float64), state)
    assert [tuple(c["k"].shape) for c in state] == [(2, 1, 3, 16)] * 2  # (B, nh, t, hs) per layer


def test_argument_errors():
    with pytest.raises(ValueError, match="d_model=16 must be divisible by n_head=3"):
        TransformerBackbone(d_model=16, n_head=3)
    with pytest.raises(ValueError, match="unknown activation 'tanh'; valid: relu, gelu"):
        TransformerBackbone(d_model=16, activation="tanh")
