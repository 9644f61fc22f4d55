"""`datasets build-atari`: episodes played on the ALE eval protocol, stored in the DQN-Replay import format."""

from __future__ import annotations

import json

import gymnasium as gym
import minari
import numpy as np
import pytest

from decision_seq.cli.datasets import main as datasets_main
from decision_seq.datasets import naming
from decision_seq.datasets.atari_build import build_atari, collect_episodes, collection_env
from decision_seq.datasets.dqn_replay import GAMES, eval_env_spec
from decision_seq.datasets.minari_io import dataset_exists_locally

pytest.importorskip("ale_py", reason="the ALE: pip install 'decision-seq[atari]'")
pytest.importorskip("cv2", reason="gymnasium's AtariPreprocessing needs opencv (the atari extra)")

BREAKOUT = GAMES["breakout"]


def _check_stored(ds: minari.MinariDataset, budget: int) -> list:
    """Format of import-dqn-replay: frames, actions, clipped rewards, boundaries, metadata."""
    episodes = list(ds.iterate_episodes())
    lengths = [len(e.actions) for e in episodes]
    assert sum(lengths) >= budget > sum(lengths) - lengths[-1]  # whole episodes; the last one reaches the budget
    for e in episodes:
        T = len(e.actions)
        assert e.observations.dtype == np.uint8 and e.observations.shape == (T + 1, 84, 84)
        assert e.actions.min() >= 0 and e.actions.max() < BREAKOUT.num_actions
        assert set(np.unique(e.rewards)) <= {0.0, 1.0}  # Breakout's rewards, clipped
        ends = e.terminations | e.truncations
        assert ends[-1] and not ends[:-1].any()
    meta = ds.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (BREAKOUT.random_score, BREAKOUT.gamer_score)
    assert json.loads(meta["eval_env_spec"]) == json.loads(eval_env_spec(BREAKOUT).to_json())
    build = meta["atari_build"]
    assert build["steps"] == sum(lengths) and build["episodes"] == len(episodes)
    # stored (clipped) returns are the sums of rewards; Breakout's raw brick rewards are >= the clipped ones
    for e, raw in zip(episodes, build["raw_returns"], strict=True):
        assert raw >= float(e.rewards.sum()) >= 0
    assert ds.action_space == gym.spaces.Discrete(BREAKOUT.num_actions)
    return episodes


def test_random_build_replays_exactly(fresh_minari_root):
    """random_prob 1 (no agent): the stored actions, replayed on a fresh eval env with the same seed, give
    the stored frames and rewards exactly, so frames, actions and rewards line up step by step."""
    ds = build_atari("Breakout", agent_steps=0, steps=150, random_prob=1.0, seed=3, level="t", progress=False)
    assert ds.id == naming.atari_build_id("Breakout", "t") == "decision-seq/atari-breakout/t-v0"
    episodes = _check_stored(ds, 150)
    assert ds.storage.metadata["atari_build"]["random_actions"] == ds.total_steps
    env = collection_env(BREAKOUT)
    for i, e in enumerate(episodes):
        frame, _ = env.reset(seed=3 if i == 0 else None)
        np.testing.assert_array_equal(frame, e.observations[0])
        for t, a in enumerate(e.actions):
            frame, r, *_ = env.step(int(a))
            np.testing.assert_array_equal(frame, e.observations[t + 1])
            assert np.sign(r) == e.rewards[t]
    env.close()


def test_policy_sees_stacked_frames_and_mixing():
    """The policy gets the last 4 frames, zeros before the episode's first; random_prob 0 = its actions only."""
    seen = []

    def policy(stack):
        seen.append(stack.copy())
        return 1  # FIRE

    env = collection_env(BREAKOUT)
    [ep] = list(collect_episodes(env, policy, steps=1, random_prob=0.0, seed=0, progress=False))
    env.close()
    assert (ep.actions == 1).all() and len(seen) == len(ep.actions)
    obs = ep.observations
    assert seen[0].shape == (4, 84, 84) and not seen[0][:3].any()
    np.testing.assert_array_equal(seen[0][3], obs[0])
    np.testing.assert_array_equal(seen[5], obs[2:6])  # (4, 84, 84): frames t-3..t at t=5


@pytest.mark.slow  # ~15 s of torch + stable-baselines3 imports and PPO on a loaded 2-core CPU
def test_tiny_build_with_ppo_agent(fresh_minari_root, tmp_path):
    """A few dozen PPO steps (one short rollout), saved in the work dir and reused by a second build."""
    pytest.importorskip("stable_baselines3")
    work = tmp_path / "work"
    ds = build_atari("Breakout", agent_steps=64, steps=120, random_prob=0.5, seed=0, work_dir=work, progress=False)
    _check_stored(ds, 120)
    build = ds.storage.metadata["atari_build"]
    assert 0 < build["random_actions"] < ds.total_steps and build["agent_steps"] == 64
    agent = work / "breakout-ppo-64steps-seed0" / "agent.zip"
    assert agent.is_file() and build["agent_path"] == str(agent)
    mtime = agent.stat().st_mtime_ns
    build_atari("Breakout", agent_steps=64, steps=10, seed=0, level="again", work_dir=work, progress=False)
    assert agent.stat().st_mtime_ns == mtime  # reused, not retrained


@pytest.mark.parametrize(
    "args, message",
    [
        (["Pitfall"], "unknown or unsupported game 'Pitfall'"),
        (["Breakout", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["Breakout", "--random-prob", "1.5"], "--random-prob must be a probability in [0, 1], got 1.5"),
        (["Breakout", "--agent-steps", "0"], "--agent-steps must be an integer >= 1, got 0"),
        (["Breakout", "--level", "Bad Level"], "--level must be lowercase letters"),
        (["Breakout", "--id", "no version"], "invalid dataset id 'no version'"),
    ],
)
def test_bad_input_one_line_exit_2(fresh_minari_root, capsys, args, message):
    assert datasets_main(["build-atari", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert list(fresh_minari_root.iterdir()) == []


def test_cli_builds_and_refuses_existing(fresh_minari_root, capsys):
    argv = ["build-atari", "Breakout", "--random-prob", "1", "--steps", "20", "--level", "r", "--no-progress"]
    assert datasets_main(argv) == 0
    assert "built decision-seq/atari-breakout/r-v0" in capsys.readouterr().out
    assert dataset_exists_locally("decision-seq/atari-breakout/r-v0")
    assert datasets_main(argv) == 2
    assert "already exists locally; pass --overwrite" in capsys.readouterr().err


def test_collection_env_is_the_eval_protocol():
    env = collection_env(BREAKOUT)
    try:
        assert env.observation_space == gym.spaces.Box(0, 255, (84, 84), np.uint8)
        assert env.spec.kwargs["repeat_action_probability"] == 0.25 and env.spec.kwargs["frameskip"] == 1
        assert isinstance(env, gym.wrappers.AtariPreprocessing) and env.frame_skip == 4 and env.noop_max == 30
    finally:
        env.close()
