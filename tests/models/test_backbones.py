"""The Backbone contract (models/backbones/base.py), checked for every registered backbone.

Parametrized over `available_backbones()`, so a new backbone module is held to the contract without
touching this file: causality, left-padding masks, token-by-token `step` == `forward`, `forward_last`
(with and without `token_features`) == forward(x)[:, -1], O(1) state where `constant_time_step` says so.
Plus the registry: unknown names, and classes that do not satisfy the Protocol.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decision_seq.models import backbones
from decision_seq.models.backbones import (
    Backbone,
    BackboneBase,
    available_backbones,
    build_backbone,
    get_backbone_class,
    register_backbone,
)
from decision_seq.models.backbones.base import BACKBONE_MEMBERS, missing_members

F64 = torch.float64
D = 16
EXTRA_KW = {"transformer": {"n_head": 2}}  # a backbone's own arguments beyond the defaults, to cover more paths


def _net(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_backbone(name, d_model=D, dropout=0.0, **EXTRA_KW.get(name, {})).to(F64).eval()


def _x(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed), dtype=F64)  # (B, T, D)


# -- registry -----------------------------------------------------------------------------------------


def test_registry_lists_the_backbones():
    assert {"transformer", "mamba"} <= set(available_backbones())
    assert available_backbones() == sorted(available_backbones())
    with pytest.raises(
        ValueError, match=f"unknown backbone 'nope'; valid backbones: {', '.join(available_backbones())}"
    ):
        build_backbone("nope", d_model=8)


def test_protocol_members_are_read_off_the_protocol():
    assert BACKBONE_MEMBERS == ("constant_time_step", "forward", "forward_last", "init_state", "step", "token_features")


def test_register_refuses_a_class_missing_members(monkeypatch):
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))  # nothing leaks into other tests

    class NoStep(BackboneBase):
        def forward(self, x, mask=None):
            return x

        def init_state(self, batch_size, device=None, dtype=None):
            return None

    class Bare(nn.Module):  # not a BackboneBase: every member must be its own; nn.Module's forward does not count
        pass

    refused = r"'nostep' \(.*NoStep\) does not satisfy the Backbone protocol: missing step \("
    with pytest.raises(TypeError, match=refused):
        register_backbone("nostep")(NoStep)
    with pytest.raises(
        TypeError, match="missing constant_time_step, forward, forward_last, init_state, step, token_features"
    ):
        register_backbone("bare")(Bare)
    with pytest.raises(TypeError, match="is not an nn.Module class"):
        register_backbone("plain")(type("Plain", (), {name: None for name in BACKBONE_MEMBERS}))
    assert "nostep" not in backbones._REGISTRY and "bare" not in backbones._REGISTRY


class _CumulativeMean(BackboneBase):
    """The smallest backbone: y_t = W mean(x_0..x_t) over real tokens; only the required members."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, mask=None):
        w = x.new_ones(x.shape[:2]) if mask is None else mask.to(x.dtype)  # (B, T)
        total = (x * w[..., None]).cumsum(1)  # (B, T, D)
        return self.proj(total / w.cumsum(1).clamp(min=1)[..., None])

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.d_model, device=device, dtype=dtype), 0

    def step(self, x_t, state):
        total, n = state
        total = total + x_t  # (B, D)
        return self.proj(total / (n + 1)), (total, n + 1)


def test_a_backbone_with_only_the_required_members_gets_the_defaults(monkeypatch):
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    register_backbone("cummean")(_CumulativeMean)
    assert get_backbone_class("cummean") is _CumulativeMean
    net = build_backbone("cummean", d_model=D).to(F64)
    assert isinstance(net, Backbone) and net.constant_time_step is False
    x = _x(2, 5)
    assert net.token_features(x) is None
    torch.testing.assert_close(net.forward_last(x), net(x)[:, -1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="already registered by _CumulativeMean"):
        register_backbone("cummean")(type("Other", (_CumulativeMean,), {}))


# -- the contract, for every registered backbone --------------------------------------------------------


@pytest.mark.parametrize("name", available_backbones())
def test_satisfies_the_protocol(name):
    cls = get_backbone_class(name)
    assert missing_members(cls) == []
    net = _net(name)
    assert isinstance(net, Backbone) and isinstance(net, nn.Module)
    assert isinstance(cls.constant_time_step, bool)
    assert net(_x(2, 7)).shape == (2, 7, D)


@pytest.mark.parametrize("name", available_backbones())
def test_causal(name):
    """Changing tokens t+1.. leaves the outputs at 0..t unchanged (and does change the later ones)."""
    net = _net(name)
    x = _x(2, 10)
    with torch.no_grad():
        y = net(x)
        for t in (0, 4, 8):
            x2 = x.clone()
            x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
            y2 = net(x2)
            torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=0)  # exactly
            assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :])


@pytest.mark.parametrize("name", available_backbones())
def test_left_padding_is_invisible(name):
    """With the mask, real tokens' outputs do not depend on the left padding and equal the unpadded
    sequence's; an all-True mask is no mask."""
    net = _net(name)
    T, lengths = 10, [10, 6, 1]
    real = [_x(1, n, seed=10 + n)[0] for n in lengths]  # (n, D) each
    mask = torch.stack([torch.arange(T) >= T - n for n in lengths])  # (B, T), True = real token

    def padded(seed: int) -> torch.Tensor:
        x = _x(len(lengths), T, seed) * 10  # padding content: anything
        for i, r in enumerate(real):
            x[i, T - len(r) :] = r
        return x

    with torch.no_grad():
        y1, y2 = net(padded(1), mask), net(padded(2), mask)
        torch.testing.assert_close(y1[mask], y2[mask])
        for i, r in enumerate(real):
            torch.testing.assert_close(y1[i, T - len(r) :], net(r[None])[0])
        x = _x(2, 7)
        torch.testing.assert_close(net(x, torch.ones(2, 7, dtype=torch.bool)), net(x))


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])  # evaluation, and inside autograd
@pytest.mark.parametrize("name", available_backbones())
def test_step_equals_forward(name, grad):
    net = _net(name)  # every backbone's default depth (3 layers where it has layers)
    x = _x(3, 9)
    with torch.set_grad_enabled(grad):
        full = net(x)  # (B, T, D)
        state = net.init_state(3, device=x.device, dtype=x.dtype)
        for t in range(9):
            y, state = net.step(x[:, t], state)  # (B, D)
            torch.testing.assert_close(y, full[:, t])


@pytest.mark.parametrize("name", available_backbones())
def test_constant_time_step_keeps_the_state_size(name):
    """A backbone that claims an O(1) step carries a state whose size does not grow with the tokens fed."""
    net = _net(name)
    if not net.constant_time_step:
        pytest.skip(f"{name}: step is not O(1) per token")

    def size(state) -> int:
        if isinstance(state, torch.Tensor):
            return state.numel()
        if isinstance(state, (list, tuple)):
            return sum(size(s) for s in state)
        if isinstance(state, dict):
            return sum(size(s) for s in state.values())
        return 0

    x = _x(2, 20)
    with torch.no_grad():
        state = net.init_state(2, device=x.device, dtype=x.dtype)
        _, state = net.step(x[:, 0], state)
        first = size(state)
        for t in range(1, 20):
            _, state = net.step(x[:, t], state)
    assert size(state) == first > 0


@pytest.mark.parametrize("T", [1, 2, 8])
@pytest.mark.parametrize("name", available_backbones())
def test_forward_last_equals_forward(name, T):
    """forward_last of an unpadded window is forward(x)[:, -1], also from token features computed token
    by token (as evaluation/policy.py computes them, once per token)."""
    net = _net(name)
    x = _x(3, T)
    with torch.no_grad():
        ref = net(x)[:, -1]  # (B, D)
        torch.testing.assert_close(net.forward_last(x), ref, rtol=1e-10, atol=1e-10)
        per_token = [net.token_features(x[:, t]) for t in range(T)]
        if per_token[0] is not None:
            features = torch.stack(per_token, dim=1)  # (B, T, F)
            torch.testing.assert_close(features, net.token_features(x))
            torch.testing.assert_close(net.forward_last(x, features), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", available_backbones())
def test_gradients_reach_every_parameter(name):
    """No dead parameter: a loss on the outputs gives every parameter (and the input) a nonzero gradient."""
    net = _net(name).train()
    x = _x(2, 8).requires_grad_(True)
    net(x, torch.ones(2, 8, dtype=torch.bool)).square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing and x.grad is not None and x.grad.abs().sum() > 0
