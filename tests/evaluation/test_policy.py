"""SequencePolicy: the fast window mode and the recurrent mode against the reference window recompute
(the official DT evaluation: `TrajectoryModel.act` on the left-padded last K steps, every step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decision_seq.evaluation.policy import SequencePolicy
from decision_seq.evaluation.rollout import rollout
from decision_seq.models.backbones import available_backbones
from decision_seq.models.trajectory import TrajectoryModel
from tests.evaluation.test_rollout import CountdownEnv

S, A = 3, 2


def _model(backbone: str, discrete: bool = False, dtype=torch.float64, **backbone_kwargs) -> TrajectoryModel:
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=S,
        action_dim=A,
        discrete=discrete,
        embed_dim=16,
        max_ep_len=64,
        dropout=0.0,
        backbone=backbone,
        backbone_kwargs=backbone_kwargs,
    )
    return model.to(dtype).eval()


def _episode(T: int, n: int):
    """A fixed observation sequence (T, n, S) and returns-to-go (T, n, 1), the same for every mode."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(T, n, S, generator=g, dtype=torch.float64)
    rtg = torch.linspace(1.0, 0.2, T, dtype=torch.float64)[:, None, None].expand(T, n, 1)
    return obs, rtg


def _actions(model, mode: str, K: int, T: int, n: int = 4) -> torch.Tensor:
    """Actions of `n` envs over T steps: (T, n, A) or (T, n)."""
    obs, rtg = _episode(T, n)
    policy = SequencePolicy(model, batch_size=n, context_len=K, max_steps=T, mode=mode)
    return torch.stack([policy.act(obs[t], rtg[t]) for t in range(T)])


def _left_pad(K: int, *xs: torch.Tensor):
    """Windows (n, L, ...) left-padded with zeros to K steps, and their mask (n, K), as in training."""
    n, L = xs[0].shape[:2]
    mask = torch.zeros(n, K, dtype=torch.bool)
    mask[:, K - L :] = True
    return (*(torch.cat([x.new_zeros((n, K - L, *x.shape[2:])), x], dim=1) for x in xs), mask)


def _reference_actions(model, K: int, T: int, n: int = 4) -> torch.Tensor:
    """The reference form of window mode: rebuild and recompute the whole left-padded window every step.
    a_t's own slot holds a zero placeholder when a_t is predicted (a causal model never shows it to s_t)."""
    obs, rtg = _episode(T, n)
    states, rtgs = obs.transpose(0, 1), rtg.transpose(0, 1)  # (n, T, S), (n, T, 1)
    actions = torch.zeros(n, T, dtype=torch.long) if model.discrete else torch.zeros(n, T, A, dtype=torch.float64)
    timesteps = torch.arange(T).expand(n, T)  # (n, T)
    for t in range(T):
        win = slice(max(0, t + 1 - K), t + 1)
        actions[:, t] = model.act(*_left_pad(K, states[:, win], actions[:, win], rtgs[:, win], timesteps[:, win]))
    return actions.transpose(0, 1)  # (T, n, A) or (T, n)


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
@pytest.mark.parametrize("backbone", available_backbones())
def test_window_mode_equals_window_recompute(backbone, discrete):
    model = _model(backbone, discrete)
    K = 5
    exact = _reference_actions(model, K, T=3 * K)
    fast = _actions(model, "window", K, T=3 * K)
    torch.testing.assert_close(fast, exact, rtol=1e-9, atol=1e-9)  # before and after t = K


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_mamba_recurrent_equals_window_within_context(discrete):
    # mamba_ssm's init (step sizes 0.001-0.1): a long memory, so what the window drops shows beyond K. With
    # the default GPT-2 init (step 0.69 per token) the state forgets the dropped steps to below 1e-9.
    model = _model("mamba", discrete, n_layer=2, init="mamba_ssm")
    K = 6
    window = _reference_actions(model, K, T=2 * K)
    recurrent = _actions(model, "recurrent", K, T=2 * K)
    if discrete:
        assert torch.equal(recurrent[:K], window[:K])
    else:
        torch.testing.assert_close(recurrent[:K], window[:K], rtol=1e-9, atol=1e-9)
        # Beyond K the recurrent policy sees the whole episode, the window only the last K steps.
        assert not torch.allclose(recurrent[K:], window[K:], rtol=1e-9, atol=1e-9)


def test_recurrent_rollout_equals_window_on_short_episodes():
    """CountdownEnv episodes last 3..7 steps < K: recurrent and window give the same returns."""
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=2,
        action_dim=1,
        embed_dim=16,
        max_ep_len=64,
        dropout=0.0,
        backbone="mamba",
        backbone_kwargs={"n_layer": 2},
    ).eval()
    args = dict(
        targets=[10.0, 2.0],
        episodes=6,
        context_len=8,
        obs_mean=np.zeros(2),
        obs_std=np.ones(2),
        rtg_scale=10.0,
        seed=0,
        progress=False,
    )
    window = rollout(model, CountdownEnv, mode="window", **args)
    recurrent = rollout(model, CountdownEnv, mode="recurrent", **args)
    for t in window:
        assert recurrent[t]["lengths"] == window[t]["lengths"] == [3 + s % 5 for s in range(6)]
        assert recurrent[t]["seeds"] == window[t]["seeds"]
        np.testing.assert_allclose(recurrent[t]["returns"], window[t]["returns"], rtol=1e-5)


def test_episode_longer_than_max_steps():
    model = _model("transformer", n_layer=1)
    policy = SequencePolicy(model, batch_size=1, context_len=3, max_steps=2)
    for _ in range(2):
        policy.act(torch.zeros(1, S), torch.ones(1, 1))
    with pytest.raises(RuntimeError, match="episode longer than max_steps=2"):
        policy.act(torch.zeros(1, S), torch.ones(1, 1))


def test_bad_modes():
    with pytest.raises(ValueError, match="valid modes: window, recurrent"):
        SequencePolicy(_model("mamba"), batch_size=1, context_len=3, max_steps=5, mode="sideways")
    with pytest.raises(ValueError, match="recurrent.*'transformer' has none"):
        SequencePolicy(_model("transformer"), batch_size=1, context_len=3, max_steps=5, mode="recurrent")
