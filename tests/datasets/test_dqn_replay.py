"""DQN-Replay import: tiny synthetic buffers in Dopamine's layout -> exact Minari episodes; bad input -> one line."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from decision_seq.cli.datasets import main as datasets_main
from decision_seq.data.episodes import load_episodes
from decision_seq.datasets.dqn_replay import (
    EPISODES_PER_VISIT,
    PADDING,
    Episode,
    import_dqn_replay,
    sample_episodes,
)
from decision_seq.datasets.minari_io import dataset_exists_locally


def make_episode(rng: np.random.Generator, tag: int, length: int) -> dict[str, np.ndarray]:
    """Frames with the episode's tag at [0, 0], the step at [0, 1] and 255 at [1, 1] (never all zero)."""
    frames = rng.integers(0, 256, (length, 84, 84), dtype=np.uint8)
    frames[:, 0, 0], frames[:, 0, 1], frames[:, 1, 1] = tag, np.arange(length), 255
    return {
        "frames": frames,
        "actions": rng.integers(0, 4, length).astype(np.int32),
        "rewards": rng.choice([-1.0, 0.0, 1.0], length).astype(np.float32),
    }


def save_gz(path, array) -> None:
    with gzip.open(path, "wb") as f:
        np.save(f, array)


def load_gz(path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.load(f)


def write_buffer(directory, n: int, episodes, *, lead_in: int = 0, add_count: bool = True, tail: int = 0) -> None:
    """A buffer as Dopamine writes it: per episode PADDING zero transitions, then its steps (terminal 1 on
    the last). `lead_in` steps of an earlier episode (ending with a terminal) come first, `tail` steps of an
    unfinished one last; add_count is the number of entries (a buffer that never wrapped)."""
    obs, act, rew, term = [], [], [], []

    def add(frames, actions, rewards, terminal):
        obs.append(frames)
        act.append(actions.astype(np.int32))
        rew.append(rewards.astype(np.float32))
        term.append(terminal.astype(np.uint8))

    if lead_in:
        add(np.full((lead_in, 84, 84), 7, np.uint8), np.ones(lead_in), np.ones(lead_in), np.eye(lead_in)[-1])
    for ep in episodes:
        T = len(ep["actions"])
        add(np.zeros((PADDING, 84, 84), np.uint8), np.zeros(PADDING), np.zeros(PADDING), np.zeros(PADDING))
        add(ep["frames"], ep["actions"], ep["rewards"], np.eye(T)[-1])
    if tail:
        add(np.full((tail, 84, 84), 9, np.uint8), np.ones(tail), np.ones(tail), np.zeros(tail))
    arrays = {"observation": obs, "action": act, "reward": rew, "terminal": term}
    for kind, parts in arrays.items():
        save_gz(directory / f"$store$_{kind}_ckpt.{n}.gz", np.concatenate(parts))
    if add_count:
        save_gz(directory / f"add_count_ckpt.{n}.gz", np.array(sum(len(a) for a in act), np.int64))


@pytest.fixture
def replay(tmp_path):
    """Two buffers: #0 never wrapped (3 episodes from index 0), #1 without add_count (a partial episode
    first, whose start is unknown, and an unfinished one last; 4 whole episodes)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "Breakout" / "1" / "replay_logs"
    d.mkdir(parents=True)
    b0 = [make_episode(rng, 10 + i, length) for i, length in enumerate([20, 35, 12])]
    b1 = [make_episode(rng, 20 + i, length) for i, length in enumerate([40, 8, 25, 30])]
    write_buffer(d, 0, b0)
    write_buffer(d, 1, b1, lead_in=6, add_count=False, tail=5)
    return d, b0 + b1


def test_import_all_episodes_exactly(replay, fresh_minari_root):
    d, expected = replay
    ds = import_dqn_replay(d.parent, game="breakout", steps=10_000, seed=5, progress=False)
    assert ds.id == "dqn-replay/breakout/10000steps-v0"
    eps = load_episodes(ds.id)
    assert eps.is_image and eps.observations.dtype == np.uint8 and eps.obs_shape == (84, 84)
    assert eps.discrete and eps.action_dim == 4 and eps.num_episodes == 7
    np.testing.assert_array_equal(eps.episode_lengths, [20, 35, 12, 40, 8, 25, 30])  # buffer order
    np.testing.assert_array_equal(eps.observations, np.concatenate([e["frames"] for e in expected]))
    np.testing.assert_array_equal(eps.actions, np.concatenate([e["actions"] for e in expected]))
    np.testing.assert_array_equal(eps.rewards, np.concatenate([e["rewards"] for e in expected]))
    np.testing.assert_allclose(eps.episode_returns, [e["rewards"].sum() for e in expected])
    np.testing.assert_array_equal(eps.timesteps[:21], [*range(20), 0])
    ends = np.cumsum(eps.episode_lengths) - 1
    assert eps.terminations[ends].all() and eps.terminations.sum() == 7 and not eps.truncations.any()
    # gamer-normalized scores with Breakout's random 2 / gamer 30
    np.testing.assert_allclose(eps.normalized_score([2.0, 30.0, 16.0]), [0.0, 100.0, 50.0])
    assert eps.eval_env_spec.id == "ALE/Breakout-v5"
    assert eps.eval_env_spec.kwargs["repeat_action_probability"] == 0.25
    meta = ds.storage.metadata["dqn_replay"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta["seed"] == 5 and meta["steps"] == 170 and meta["steps_budget"] == 10_000
    kinds = ("observation", "action", "reward", "terminal")
    assert meta["files"] == [f"$store$_{k}_ckpt.{n}.gz" for n in (0, 1) for k in kinds]


def test_budget_takes_whole_episodes_reproducibly(replay, fresh_minari_root):
    d, expected = replay
    lengths = {int(e["frames"][0, 0, 0]): len(e["actions"]) for e in expected}
    picked = {}
    for seed, name in ((1, "a"), (1, "b"), (2, "c")):
        ds = import_dqn_replay(
            d, game="Breakout", steps=60, seed=seed, dataset_id=f"tests/dqn-{name}-v0", progress=False
        )
        eps = load_episodes(ds.id)
        tags = [int(eps.observations[s, 0, 0]) for s in eps.episode_starts]
        assert eps.num_steps <= 60 and [lengths[t] for t in tags] == list(eps.episode_lengths)
        for s, n, t in zip(eps.episode_starts, eps.episode_lengths, tags, strict=True):
            src = next(e for e in expected if e["frames"][0, 0, 0] == t)
            np.testing.assert_array_equal(eps.observations[s : s + n], src["frames"])
            np.testing.assert_array_equal(eps.actions[s : s + n], src["actions"])
        picked[name] = tags
    assert picked["a"] == picked["b"] and picked["a"] != picked["c"]  # the seed decides


def test_sampling_visits_buffers_like_the_dt_code():
    per_buffer = {n: [Episode(n, 10 * i, 10 * i + PADDING + 5) for i in range(12)] for n in (0, 1)}  # 5 steps each
    chosen = sample_episodes(per_buffer, steps=5 * 13, seed=0)
    assert len(chosen) == 13
    # the first visit takes EPISODES_PER_VISIT consecutive episodes of one buffer from its start
    first = chosen[0].buffer
    assert chosen[:EPISODES_PER_VISIT] == per_buffer[first][:EPISODES_PER_VISIT]
    for n in (0, 1):  # each buffer is read in order, from its first episode
        mine = [ep for ep in chosen if ep.buffer == n]
        assert mine == per_buffer[n][: len(mine)]
    assert sample_episodes(per_buffer, steps=4, seed=0) == []  # nothing fits
    assert len(sample_episodes(per_buffer, steps=10_000, seed=0)) == 24  # all, then the buffers run dry


def _cli(*args) -> int:
    return datasets_main(["import-dqn-replay", *map(str, args), "--no-progress"])


def _remove(d, name):
    (d / name).unlink()


def _bad_action(d):
    """Action 6 on a real step (not on a padding entry) of buffer 0."""
    actions = load_gz(d / "$store$_action_ckpt.0.gz")
    actions[PADDING + 2] = 6
    save_gz(d / "$store$_action_ckpt.0.gz", actions)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda d: _remove(d, "$store$_reward_ckpt.1.gz"),
            "checkpoint 1 is incomplete, missing $store$_reward_ckpt.1.gz",
        ),
        (lambda d: save_gz(d / "$store$_action_ckpt.0.gz", np.zeros(5, np.int32)), "different lengths"),
        (lambda d: save_gz(d / "$store$_action_ckpt.0.gz", np.zeros(76, np.int64)), "expected int32"),
        (lambda d: save_gz(d / "$store$_observation_ckpt.0.gz", np.zeros((76, 84, 83), np.uint8)), "expected uint8"),
        (lambda d: (d / "$store$_terminal_ckpt.0.gz").write_bytes(b"not gzip"), "not a gzip-wrapped np.save array"),
        (_bad_action, "action 6 outside Breakout's 4 actions"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(replay, fresh_minari_root, capsys, damage, message):
    d, _ = replay
    damage(d)
    assert _cli(d, "--game", "Breakout") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("decision-seq datasets: error: ") and message in err[-1], err
    assert not dataset_exists_locally("dqn-replay/breakout/1pct-v0")
    assert not [p for p in fresh_minari_root.rglob("*") if p.is_file() and "namespace" not in p.name]


def test_unknown_game_and_missing_dir(replay, fresh_minari_root, capsys, tmp_path):
    d, _ = replay
    assert _cli(d, "--game", "Asterix") == 2
    assert "unsupported game 'Asterix'; supported: Breakout, Qbert, Pong, Seaquest" in capsys.readouterr().err
    assert _cli(tmp_path / "nope", "--game", "Breakout") == 2
    assert "no such directory" in capsys.readouterr().err
    assert _cli(d, "--game", "Breakout", "--steps", "0") == 2
    assert "--steps must be an integer >= 1" in capsys.readouterr().err


def test_frames_not_padded_like_dopamine_are_refused(tmp_path, fresh_minari_root, capsys):
    d = tmp_path / "r"
    d.mkdir()
    rng = np.random.default_rng(1)
    write_buffer(d, 0, [make_episode(rng, 1, 10), make_episode(rng, 2, 10)])
    obs = load_gz(d / "$store$_observation_ckpt.0.gz")
    obs[PADDING + 10 + 1] = 3  # a padding frame of the second episode is not zero
    save_gz(d / "$store$_observation_ckpt.0.gz", obs)
    assert _cli(d, "--game", "Breakout") == 2
    assert "not Dopamine's zero padding" in capsys.readouterr().err
    assert not dataset_exists_locally("dqn-replay/breakout/1pct-v0")


def test_cli_success(replay, fresh_minari_root, capsys):
    d, _ = replay
    assert _cli(d, "--game", "Breakout", "--seed", "3") == 0
    assert "as dqn-replay/breakout/1pct-v0 (7 episodes, 170 steps)" in capsys.readouterr().out


def test_train_and_evaluate_on_ale_breakout(replay, fresh_minari_root, tmp_path, restore_logging):
    """The whole Atari path: imported frames -> training (image encoder, cross-entropy) -> evaluation on the
    dataset's own ALE env (sticky actions, AtariPreprocessing) with frames stacked by the rollout."""
    pytest.importorskip("ale_py", reason="ALE evaluation needs the atari extra: pip install 'decision-seq[atari]'")
    pytest.importorskip("cv2", reason="gymnasium's AtariPreprocessing needs opencv (the atari extra)")
    from decision_seq.cli import main
    from tests.helpers import read_results

    d, _ = replay
    ds = import_dqn_replay(d.parent, game="breakout", steps=10_000, seed=5, progress=False)
    run = tmp_path / "run"
    main(
        [
            "train", f"dataset.id={ds.id}", "dataset.targets=[2]", "dataset.rtg_scale=1", "model=dt",
            "model.context_len=3", "model.net.embed_dim=16", "model.net.backbone_kwargs.n_layer=1",
            "trainer.steps=2", "trainer.batch_size=4", "trainer.warmup_steps=1", "trainer.progress=false",
            "trainer.device=cpu", "eval.episodes=1", "eval.discrete_action=sample", "eval.max_steps=60", "logger=none",
            f"hydra.run.dir={run}",
        ]
    )  # fmt: skip
    res = read_results(run)
    [result] = res["evaluations"][-1]["results"]
    # an untrained policy on Breakout, cut at eval.max_steps (beyond the data's longest episode, 40 steps: the
    # model clamps timesteps); without it the episode would run to game over or the ALE's 108k frames
    assert res["status"] == "completed" and 1 <= result["lengths"][0] <= 60
    assert res["protocol"]["eval_max_steps"] == 60
    assert result["returns"][0] >= 0 and res["protocol"]["eval_env"] == "ALE/Breakout-v5"
