"""Feed-forward baselines (RvS-R and BC) as a backbone: each output is the MLP on a token and the token
before it (or the token alone), so a predicted action depends on (R_t, s_t) only, or s_t only for BC."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decision_seq.models.backbones.mlp import MLPBackbone
from decision_seq.models.trajectory import TrajectoryModel

F64 = torch.float64
D = 4


def _net(**kw) -> MLPBackbone:
    torch.manual_seed(0)
    return MLPBackbone(d_model=D, dropout=0.0, hidden=8, **kw).to(F64).eval()


def test_each_output_is_the_mlp_on_the_token_and_its_predecessor():
    net = _net()
    x = torch.randn(2, 5, D, dtype=F64)
    with torch.no_grad():
        y = net(x)
        prev = torch.zeros(2, D, dtype=F64)  # nothing before the first token
        for t in range(5):
            torch.testing.assert_close(y[:, t], net.net(torch.cat([prev, x[:, t]], -1)), rtol=0, atol=0)
            prev = x[:, t]


def test_bc_ignores_the_previous_token():
    net = _net(condition_on_return=False)
    assert net.net[0].in_features == D
    x = torch.randn(2, 5, D, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.net(x), rtol=0, atol=0)
        torch.testing.assert_close(net.forward_last(x), net.net(x[:, -1]), rtol=0, atol=0)


def test_padding_before_the_first_real_token_reads_as_zero():
    net = _net()
    real = torch.randn(1, 3, D, dtype=F64)
    x = torch.cat([torch.full((1, 2, D), 50.0, dtype=F64), real], dim=1)
    mask = torch.tensor([[False, False, True, True, True]])
    with torch.no_grad():
        torch.testing.assert_close(net(x, mask)[:, 2:], net(real), rtol=0, atol=0)


@pytest.mark.parametrize("condition_on_return", [True, False], ids=["rvs", "bc"])
def test_action_depends_on_this_step_only(condition_on_return):
    """Through TrajectoryModel: a_t's prediction reads s_t and R_t (RvS) or s_t alone (BC), never the past."""
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=3,
        action_dim=2,
        embed_dim=8,
        max_ep_len=16,
        dropout=0.0,
        backbone="mlp",
        backbone_kwargs={"hidden": 16, "condition_on_return": condition_on_return},
    ).to(F64)
    B, K = 2, 4
    states, actions = torch.randn(B, K, 3, dtype=F64), torch.randn(B, K, 2, dtype=F64)
    rtg, ts = torch.randn(B, K, 1, dtype=F64), torch.arange(K).expand(B, K)
    with torch.no_grad():
        ref = model(states, actions, rtg, ts)[:, -1]
        past = [t.clone() for t in (states, actions, rtg)]
        for t in past:
            t[:, :-1] = torch.randn_like(t[:, :-1])
        torch.testing.assert_close(model(past[0], past[1], past[2], ts)[:, -1], ref, rtol=0, atol=0)
        rtg2 = rtg.clone()
        rtg2[:, -1] += 1.0
        changed = not torch.allclose(model(states, actions, rtg2, ts)[:, -1], ref)
        assert changed is condition_on_return


def test_rvs_sizes():
    """RvS's gym network: 2 hidden layers of 1024 with ReLU; the last Linear maps to d_model for the head."""
    net = MLPBackbone(d_model=128)
    linears = [m for m in net.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 1024), (1024, 1024), (1024, 128)]
    assert sum(isinstance(m, nn.ReLU) for m in net.net) == 2 and net.constant_time_step


def test_argument_errors_and_meta_device():
    with pytest.raises(ValueError, match="hidden .* must be an integer >= 1, got 0"):
        MLPBackbone(d_model=D, hidden=0)
    with pytest.raises(ValueError, match="condition_on_return must be true or false"):
        MLPBackbone(d_model=D, condition_on_return="no")
    with pytest.raises(ValueError, match="n_layer must be an integer >= 1"):
        MLPBackbone(d_model=D, n_layer=0)
    with torch.device("meta"):  # how the config validation checks the arguments
        assert MLPBackbone(d_model=128, dropout=0.0, n_layer=2, hidden=1024).net[0].weight.is_meta
