"""SequencePolicy: incremental and recurrent inference agree with the reference window recompute."""

import numpy as np
import pytest
import torch

from decision_seq.evaluation.policy import SequencePolicy
from decision_seq.evaluation.rollout import rollout
from decision_seq.models.trajectory import TrajectoryModel
from test_rollout import CountdownEnv

S, A = 3, 2


def _model(backbone: str, discrete: bool = False, dtype=torch.float64, n_layer: int = 2, **backbone_kwargs):
    torch.manual_seed(0)
    model = TrajectoryModel(state_dim=S, action_dim=A, discrete=discrete, embed_dim=16, max_ep_len=64, dropout=0.0,
                            backbone=backbone, backbone_kwargs={"n_layer": n_layer} | backbone_kwargs)
    return model.to(dtype).eval()


def _actions(model, mode, K, T, incremental=True, n=4):
    """Actions of `n` envs over T steps of a fixed observation sequence (the same for every mode)."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(T, n, S, generator=g, dtype=torch.float64)  # (T, n, S)
    rtg = torch.linspace(1.0, 0.2, T, dtype=torch.float64)[:, None, None].expand(T, n, 1)  # (T, n, 1)
    policy = SequencePolicy(model, batch_size=n, context_len=K, max_steps=T, mode=mode, incremental=incremental)
    return torch.stack([policy.act(obs[t], rtg[t]) for t in range(T)])  # (T, n, A) or (T, n)


@pytest.mark.parametrize("discrete", [False, True])
def test_mamba_recurrent_equals_window_within_context(discrete):
    # mamba_ssm's init (step sizes 0.001-0.1): a long memory, so what the window drops shows beyond K. With
    # the default GPT-2 init (step 0.69 per token) the state forgets the dropped steps to below 1e-9.
    model = _model("mamba", discrete, init="mamba_ssm")
    K = 6
    window = _actions(model, "window", K, T=2 * K, incremental=False)
    recurrent = _actions(model, "recurrent", K, T=2 * K)
    if discrete:
        assert torch.equal(recurrent[:K], window[:K])
    else:
        torch.testing.assert_close(recurrent[:K], window[:K], rtol=1e-9, atol=1e-9)
        # Beyond K the recurrent policy sees the whole episode, the window only the last K steps.
        assert not torch.allclose(recurrent[K:], window[K:], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_incremental_window_equals_window_recompute(backbone):
    model = _model(backbone)
    K = 5
    exact = _actions(model, "window", K, T=3 * K, incremental=False)
    fast = _actions(model, "window", K, T=3 * K, incremental=True)
    torch.testing.assert_close(fast, exact, rtol=1e-9, atol=1e-9)  # before and after t = K


def test_recurrent_rollout_equals_window_on_short_episodes():
    """CountdownEnv episodes last 3..7 steps < K: recurrent and window give the same returns."""
    torch.manual_seed(0)
    model = TrajectoryModel(state_dim=2, action_dim=1, embed_dim=16, max_ep_len=64, dropout=0.0,
                            backbone="mamba", backbone_kwargs={"n_layer": 2}).eval()
    args = dict(targets=[10.0, 2.0], episodes=6, context_len=8, obs_mean=np.zeros(2), obs_std=np.ones(2),
                rtg_scale=10.0, seed=0, progress=False)
    window = rollout(model, CountdownEnv, mode="window", **args)
    recurrent = rollout(model, CountdownEnv, mode="recurrent", **args)
    for t in window:
        assert recurrent[t]["lengths"] == window[t]["lengths"] == [3 + s % 5 for s in range(6)]
        assert recurrent[t]["seeds"] == window[t]["seeds"]
        np.testing.assert_allclose(recurrent[t]["returns"], window[t]["returns"], rtol=1e-5)


def test_bad_modes():
    with pytest.raises(ValueError, match="valid modes: window, recurrent"):
        SequencePolicy(_model("mamba"), batch_size=1, context_len=3, max_steps=5, mode="sideways")
    with pytest.raises(ValueError, match="recurrent.*'transformer' has none"):
        SequencePolicy(_model("transformer"), batch_size=1, context_len=3, max_steps=5, mode="recurrent")
