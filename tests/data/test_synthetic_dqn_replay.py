"""scripts/make_synthetic_dqn_replay.py: a tiny run in DQN-Replay's file format imports to exactly the whole
episodes its files hold (found here by a plain scan of the terminal flags), in buffer order."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from decision_seq.data.episodes import load_episodes
from decision_seq.datasets.dqn_replay import PADDING, import_dqn_replay

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_synthetic_dqn_replay.py"


@pytest.fixture(scope="module")
def synth():
    spec = importlib.util.spec_from_file_location("make_synthetic_dqn_replay", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _load(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.load(f)


def test_tiny_run_has_the_real_layout_and_imports_exactly(synth, tmp_path, fresh_minari_root):
    args = ["--buffers", "3", "--capacity", "600", "--seed", "4", "--mean-lengths", "60,120"]
    assert synth.main([str(tmp_path / "run"), *args]) == 0
    d = tmp_path / "run" / "replay_logs"
    frames, actions, rewards = [], [], []
    for n in (0, 1, 2):
        obs = _load(d / f"$store$_observation_ckpt.{n}.gz")
        act, rew = _load(d / f"$store$_action_ckpt.{n}.gz"), _load(d / f"$store$_reward_ckpt.{n}.gz")
        term = _load(d / f"$store$_terminal_ckpt.{n}.gz")
        assert (obs.dtype, obs.shape) == (np.uint8, (600, 84, 84))
        assert (act.dtype, rew.dtype, term.dtype) == (np.int32, np.float32, np.uint8)
        assert act.shape == rew.shape == term.shape == (600,) and set(np.unique(act)) <= {0, 1, 2, 3}
        add_count = int(_load(d / f"add_count_ckpt.{n}.gz"))
        assert add_count == (n + 1) * 600  # #0 filled once from index 0, #1 wrapped once (cursor at 0)
        terminals = np.flatnonzero(term) + 1  # one past each terminal
        # #0's first episode starts at 0; the others start inside an older episode, which ends at the first terminal.
        starts = np.concatenate([[0], terminals[:-1]]) if n == 0 else terminals[:-1]
        ends = terminals if n == 0 else terminals[1:]
        assert len(terminals) and terminals[-1] < 600 and (n > 0 or len(ends) >= 3)  # an unfinished one ends it
        for s, e in zip(starts, ends, strict=True):
            assert not obs[s : s + PADDING].any() and not act[s : s + PADDING].any()  # Dopamine's padding
            assert obs[s + PADDING : e].reshape(e - s - PADDING, -1).any(axis=1).all()  # real frames never blank
            frames.append(obs[s + PADDING : e])
            actions.append(act[s + PADDING : e])
            rewards.append(rew[s + PADDING : e])
        ratio = obs.nbytes / (d / f"$store$_observation_ckpt.{n}.gz").stat().st_size
        assert 6 < ratio < 40, ratio  # compresses like rendered frames: well, not to nothing

    ds = import_dqn_replay(tmp_path / "run", game="Breakout", steps=10**6, seed=0, progress=False)
    eps = load_episodes(ds.id)
    np.testing.assert_array_equal(eps.episode_lengths, [len(a) for a in actions])
    np.testing.assert_array_equal(eps.observations, np.concatenate(frames))
    np.testing.assert_array_equal(eps.actions, np.concatenate(actions))
    np.testing.assert_array_equal(eps.rewards, np.concatenate(rewards))

    # Same seed, same bytes of arrays; the buffers are seeded one by one.
    again = tmp_path / "again"
    synth.write_run(again, buffers=1, capacity=600, seed=4, mean_lengths=(60, 120), log=lambda *_: None)
    name = "$store$_observation_ckpt.0.gz"
    np.testing.assert_array_equal(_load(again / "replay_logs" / name), _load(d / name))


def test_bad_arguments_are_one_line(synth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth.main([str(tmp_path / "x"), "--capacity", "10"])
    assert exit_info.value.code == 2
    assert "--capacity must be >= 100" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()
