"""Decision ConvFormer backbone: the kind-wise causal convolution against a hand loop and against the
official code's formulation, padding, the receptive field that forward_last and the rolling step buffer
rely on, recurrent == window evaluation, argument errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decision_seq.evaluation.policy import SequencePolicy
from decision_seq.models.backbones.convformer import CausalKindConv, ConvFormerBackbone, token_kinds
from decision_seq.models.trajectory import TrajectoryModel

F64 = torch.float64
D, W = 4, 3


def _conv() -> CausalKindConv:
    torch.manual_seed(0)
    return CausalKindConv(D, W).to(F64)


def _net(**kw) -> ConvFormerBackbone:
    torch.manual_seed(0)
    return ConvFormerBackbone(d_model=8, dropout=0.0, **kw).to(F64).eval()


def test_token_kinds_count_from_the_first_real_token():
    assert token_kinds(5, 0).tolist() == [[0, 1, 2, 0, 1]]
    assert token_kinds(5, torch.tensor([0, 2])).tolist() == [[0, 1, 2, 0, 1], [1, 2, 0, 1, 2]]


def test_conv_equals_a_hand_loop():
    """y[t] = sum_j x[t - W + 1 + j] * w_k[j] + b_k, k the kind of token t, x = 0 before the sequence."""
    conv = _conv()
    x = torch.randn(2, 7, D, dtype=F64)
    kinds = token_kinds(7, torch.tensor([0, 1]))  # (B, T)
    with torch.no_grad():
        y = conv(x, kinds)
        ref = torch.zeros_like(y)
        for b in range(2):
            for t in range(7):
                f = conv.filters[int(kinds[b, t])]
                ref[b, t] = f.bias
                for j in range(W):
                    if t - W + 1 + j >= 0:
                        ref[b, t] += x[b, t - W + 1 + j] * f.weight[:, 0, j]
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_conv_equals_the_official_formulation():
    """The official code convolves the whole sequence with each kind's nn.Conv1d and keeps every third
    output (kind k at positions k, k+3, ...): the same numbers."""
    conv = _conv()
    x = torch.randn(2, 9, D, dtype=F64)
    with torch.no_grad():
        padded = F.pad(x, (0, 0, W - 1, 0)).transpose(1, 2)  # (B, D, W-1+T)
        ref = torch.empty_like(x)
        for k, f in enumerate(conv.filters):
            ref[:, k::3] = f(padded)[:, :, k::3].transpose(1, 2)
        torch.testing.assert_close(conv(x, token_kinds(9, 0)), ref, rtol=1e-12, atol=1e-12)


def test_padding_is_zero_mixer_input():
    """Real outputs of a left-padded row equal the unpadded row's, also when the padding is not a whole
    number of steps (kinds are counted from the first real token)."""
    net = _net(n_layer=2, window=4)
    real = torch.randn(1, 5, 8, dtype=F64)
    x = torch.cat([torch.randn(1, 2, 8, dtype=F64) * 100, real], dim=1)  # 2 padded tokens
    mask = torch.tensor([[False, False, True, True, True, True, True]])
    with torch.no_grad():
        torch.testing.assert_close(net(x, mask)[:, 2:], net(real), rtol=1e-12, atol=1e-12)


def test_receptive_field():
    """The last output depends on exactly the last n_layer * (window - 1) + 1 tokens."""
    net = _net(n_layer=2, window=3)
    assert net.receptive_field == 5
    x = torch.randn(2, 12, 8, dtype=F64)
    with torch.no_grad():
        ref = net(x)[:, -1]
        outside, inside = x.clone(), x.clone()
        outside[:, : 12 - 5] = torch.randn(2, 7, 8, dtype=F64)
        inside[:, 12 - 5] = torch.randn(2, 8, dtype=F64)
        torch.testing.assert_close(net(outside)[:, -1], ref, rtol=0, atol=0)
        assert not torch.allclose(net(inside)[:, -1], ref)
        for T in (1, 4, 5, 6, 12):  # windows shorter and longer than the receptive field
            torch.testing.assert_close(net.forward_last(x[:, :T]), net(x[:, :T])[:, -1], rtol=1e-12, atol=1e-12)


def test_step_buffer_has_the_window_size():
    net = _net(n_layer=2, window=5)
    state = net.init_state(3, dtype=F64)
    for _ in range(7):
        _, state = net.step(torch.randn(3, 8, dtype=F64), state)
    assert [tuple(b.shape) for b in state["buffers"]] == [(3, 5, 8)] * 2 and state["t"] == 7


def test_recurrent_evaluation_equals_window_evaluation():
    """The receptive field (16 tokens) fits in a window of K = 6 steps (17 tokens up to s_t): evaluating
    with the O(1) step over the whole episode gives the window's actions exactly, also beyond K."""
    torch.manual_seed(0)
    model = TrajectoryModel(state_dim=3, action_dim=2, embed_dim=8, max_ep_len=64, dropout=0.0, backbone="conv").to(F64)
    model.eval()
    K, T, n = 6, 14, 2
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(T, n, 3, generator=g, dtype=F64)
    rtg = torch.linspace(1.0, 0.2, T, dtype=F64)[:, None, None].expand(T, n, 1)
    actions = {}
    for mode in ("window", "recurrent"):
        policy = SequencePolicy(model, batch_size=n, context_len=K, max_steps=T, mode=mode)
        actions[mode] = torch.stack([policy.act(obs[t], rtg[t]) for t in range(T)])
    torch.testing.assert_close(actions["recurrent"], actions["window"], rtol=1e-10, atol=1e-10)


def test_official_defaults_and_init():
    net = ConvFormerBackbone(d_model=16)
    assert len(net.blocks) == 3 and net.window == 6 and net.constant_time_step
    conv = net.blocks[0].conv.filters[0]
    assert tuple(conv.weight.shape) == (16, 1, 6) and conv.bias is not None  # depthwise, with bias
    bound = 6**-0.5  # PyTorch's Conv1d init U(-1/sqrt(fan_in), ...), fan_in = window taps
    assert conv.weight.abs().max() <= bound and (net.blocks[0].mlp[0].bias == 0).all()


def test_argument_errors_and_meta_device():
    with pytest.raises(ValueError, match="window .* must be an integer >= 1, got 0"):
        ConvFormerBackbone(d_model=8, window=0)
    with pytest.raises(ValueError, match="n_layer must be an integer >= 1"):
        ConvFormerBackbone(d_model=8, n_layer=0)
    with torch.device("meta"):  # how the config validation checks the arguments
        net = ConvFormerBackbone(d_model=128, dropout=0.1, n_layer=3, window=6)
    assert net.ln_f.weight.is_meta
