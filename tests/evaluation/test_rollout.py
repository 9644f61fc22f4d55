"""rollout: exact episode counting (no autoreset leakage), batched == one-at-a-time, argument errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from decision_seq.evaluation.rollout import episode_cap, rollout
from decision_seq.models.trajectory import TrajectoryModel


class CountdownEnv(gym.Env):
    """Episode length depends on the reset seed (3 + seed % 5); reward 1 per step + the action."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = 3 + (seed or 0) % 5
        self.t = 0
        return np.array([self.left, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        self.left -= 1
        obs = np.array([self.left, self.t], np.float32)
        return obs, 1.0 + float(action[0]), self.left <= 0, False, {}


def _model():
    torch.manual_seed(0)
    return TrajectoryModel(
        state_dim=2,
        action_dim=1,
        embed_dim=16,
        max_ep_len=64,
        dropout=0.0,
        backbone="transformer",
        backbone_kwargs={"n_layer": 1},
    ).eval()


def _run(model, **kw):
    args = dict(
        targets=[10.0, 2.0],
        episodes=6,
        context_len=4,
        obs_mean=np.zeros(2),
        obs_std=np.ones(2),
        rtg_scale=10.0,
        seed=0,
        progress=False,
    )
    args.update(kw)
    return rollout(model, CountdownEnv, **args)


def test_exact_episode_counts_and_lengths():
    model = _model()
    out = _run(model)
    assert sorted(out) == [2.0, 10.0]
    for res in out.values():
        assert res["seeds"] == list(range(6))
        assert res["lengths"] == [3 + s % 5 for s in res["seeds"]]  # no extra/partial episodes counted
        # returns = lengths + sum of actions, actions in [-1, 1]
        for r, n in zip(res["returns"], res["lengths"], strict=True):
            assert 0.0 <= r <= 2.0 * n


def test_batched_equals_sequential():
    model = _model()
    batched = _run(model)
    sequential = _run(model, num_envs=1)
    chunks = _run(model, num_envs=4)
    for t in batched:
        assert batched[t]["lengths"] == sequential[t]["lengths"] == chunks[t]["lengths"]
        np.testing.assert_allclose(batched[t]["returns"], sequential[t]["returns"], rtol=1e-5)
        np.testing.assert_allclose(chunks[t]["returns"], sequential[t]["returns"], rtol=1e-5)


def test_hard_cap_on_episode_steps():
    out = _run(_model(), max_episode_steps=4, episodes=5)
    for res in out.values():
        assert max(res["lengths"]) == 4 and res["lengths"] == [min(4, 3 + s % 5) for s in res["seeds"]]


def test_bad_eval_arguments():
    with pytest.raises(ValueError, match="eval.episodes"):
        _run(_model(), episodes=0)
    with pytest.raises(ValueError, match="eval.targets"):
        _run(_model(), targets=[])
    with pytest.raises(ValueError, match="eval.mode='sideways' is not available; valid modes: window, recurrent"):
        _run(_model(), mode="sideways")


class PickEnv(gym.Env):
    """Five steps; reward 1 when the discrete action is 0: argmax and sampling give different returns."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t, np.float32), float(int(action) == 0), self.t >= 5, False, {}


def test_discrete_action_choice_reaches_the_policy():
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=2, action_dim=4, discrete=True, embed_dim=8, max_ep_len=8, dropout=0.0, backbone="transformer"
    ).eval()
    with torch.no_grad():  # logits favour action 0 (p = 0.7): argmax always takes it, sampling sometimes not
        model.predict_action.weight.zero_()
        model.predict_action.bias.copy_(torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1])))
    kw = dict(targets=[5.0], episodes=8, context_len=4, obs_mean=np.zeros(2), obs_std=np.ones(2), rtg_scale=1.0)
    greedy = rollout(model, PickEnv, **kw, progress=False, discrete_action="argmax")[5.0]["returns"]
    drawn = rollout(model, PickEnv, **kw, progress=False, discrete_action="sample")[5.0]["returns"]
    again = rollout(model, PickEnv, **kw, progress=False, discrete_action="sample")[5.0]["returns"]
    assert greedy == [5.0] * 8
    assert min(drawn) < 5.0 and drawn == again  # draws happen, and the same seeds draw the same actions
    with pytest.raises(ValueError, match="eval.discrete_action='greedy' is not available; valid: sample, argmax"):
        rollout(model, PickEnv, **kw, discrete_action="greedy")


class FrameEnv(gym.Env):
    """One 84x84 uint8 frame per step whose pixels are 10 x (episode index) + step; 6 steps per episode."""

    observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.base, self.t = 10 * (seed % 10), 0
        return self._frame(), {}

    def _frame(self):
        return np.full((84, 84), self.base + self.t, np.uint8)

    def step(self, action):
        self.t += 1
        return self._frame(), 1.0, self.t >= 6, False, {}


def test_image_envs_feed_the_last_four_frames(monkeypatch):
    from decision_seq.evaluation import rollout as rollout_module

    seen = []
    act = rollout_module.SequencePolicy.act

    def spy(self, states, returns_to_go):
        seen.append(states[:, :, 0, 0].clone())  # (n, 4): one pixel of each stacked frame
        return act(self, states, returns_to_go)

    monkeypatch.setattr(rollout_module.SequencePolicy, "act", spy)
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=84 * 84, obs_shape=(84, 84), action_dim=3, discrete=True, embed_dim=8, max_ep_len=8, dropout=0.0
    ).eval()
    kw = dict(context_len=3, obs_mean=np.zeros(1), obs_std=np.ones(1), rtg_scale=1.0, progress=False)
    out = rollout(model, FrameEnv, targets=[6.0], episodes=2, seed=3, **kw)[6.0]
    assert out["returns"] == [6.0, 6.0] and out["lengths"] == [6, 6]
    # env i (reset seed 3 + i) shows 10 * (3 + i) + t at step t; a stack starts as four copies of frame 0
    for t, states in enumerate(seen):
        for i, base in enumerate((30, 40)):
            want = [base + max(0, t - 3 + k) for k in range(4)]
            assert states[i].tolist() == want, (t, i)


def test_episode_cap_is_the_envs_own_limit():
    from decision_seq.datasets.dqn_replay import GAMES, eval_env_spec

    assert episode_cap(gym.spec("Pendulum-v1")) == 200  # its TimeLimit
    # DQN-Replay's ALE protocol: 108k frames at frame skip 4 (AtariPreprocessing) = 27k agent steps
    assert episode_cap(eval_env_spec(GAMES["breakout"])) == 27_000
    assert episode_cap(None) is None
