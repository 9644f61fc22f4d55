"""decision_seq.data.episodes: EpisodeSet conversion from Minari, spaces, normalization, summaries, error messages."""

from __future__ import annotations

import gymnasium as gym
import minari
import numpy as np
import pytest

from decision_seq.data.episodes import (
    DatasetNotFoundError,
    EpisodeSet,
    episodes_from_arrays,
    episodes_from_minari,
    load_episodes,
    load_minari_dataset,
)

# Two hand-made episodes (lengths 3 and 5) with known rewards and returns-to-go.
REWARDS = [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0, 50.0]]
RTG = [[6.0, 5.0, 3.0], [150.0, 140.0, 120.0, 90.0, 50.0]]


@pytest.fixture(scope="module")
def tiny(make_minari_dataset) -> EpisodeSet:
    """obs[t] of episode e is (e, t); actions t / 10; refs 0 / 200."""
    ds = make_minari_dataset("tests/tiny-v0", REWARDS, ref_min_score=0.0, ref_max_score=200.0)
    return episodes_from_minari(ds)


def test_tiny_episode_set_layout(tiny: EpisodeSet):
    assert tiny.num_episodes == 2 and tiny.num_steps == 8 and tiny.state_dim == 2
    np.testing.assert_array_equal(tiny.episode_starts, [0, 3])
    np.testing.assert_array_equal(tiny.episode_lengths, [3, 5])
    np.testing.assert_array_equal(tiny.timesteps, [0, 1, 2, 0, 1, 2, 3, 4])
    np.testing.assert_allclose(tiny.returns_to_go, RTG[0] + RTG[1])
    np.testing.assert_allclose(tiny.episode_returns, [6.0, 150.0])
    # final (T+1-th) observation dropped: obs (e, t) for t < T only
    np.testing.assert_array_equal(tiny.observations[:, 1], [0, 1, 2, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(tiny.dones, [0, 0, 1, 0, 0, 0, 0, 1])
    assert tiny.observations.dtype == np.float32 and tiny.actions.shape == (8, 1)
    assert tiny.max_episode_length == 5


def test_normalized_score_and_summary(tiny: EpisodeSet):
    np.testing.assert_allclose(tiny.normalized_score([0.0, 200.0, 150.0]), [0.0, 100.0, 75.0])
    s = tiny.summary()
    assert s["dataset_id"] == "tests/tiny-v0" and s["episodes"] == 2 and s["steps"] == 8
    assert s["return_mean"] == pytest.approx(78.0) and s["return_min"] == 6.0 and s["return_max"] == 150.0
    assert s["normalized_score_mean"] == pytest.approx(39.0)


def test_missing_reference_scores_raise(make_minari_dataset):
    ep = episodes_from_minari(make_minari_dataset("tests/norefs-v0", REWARDS))
    assert ep.ref_min_score is None and ep.summary()["normalized_score_mean"] is None
    with pytest.raises(ValueError, match="tests/norefs-v0"):
        ep.normalized_score([1.0])


def test_box_and_discrete_detection(pendulum_dataset_id, cartpole_dataset_id):
    pend = load_episodes(pendulum_dataset_id)
    assert not pend.discrete and pend.action_dim == 1 and pend.state_dim == 3
    assert pend.actions.shape == (pend.num_steps, 1) and pend.actions.dtype == np.float32
    np.testing.assert_array_equal(pend.action_low, [-2.0])
    np.testing.assert_array_equal(pend.action_high, [2.0])
    assert np.all(pend.episode_lengths == 200) and pend.truncations.sum() == pend.num_episodes

    cart = load_episodes(cartpole_dataset_id)
    assert cart.discrete and cart.action_dim == 2 and cart.state_dim == 4 and cart.action_low is None
    assert cart.actions.shape == (cart.num_steps,) and cart.actions.dtype == np.int64
    assert set(np.unique(cart.actions)) <= {0, 1}
    # episodes end exactly at their last step, by termination (pole fell) or truncation (500 steps)
    last = cart.episode_starts + cart.episode_lengths - 1
    assert cart.dones[last].all() and cart.dones.sum() == cart.num_episodes
    assert cart.terminations.any()


def test_normalization_stats_match_numpy(pendulum_dataset_id):
    ds = minari.load_dataset(pendulum_dataset_id)
    obs = np.concatenate([e.observations[:-1] for e in ds.iterate_episodes()])  # (N, S)
    ep = episodes_from_minari(ds)
    np.testing.assert_array_equal(ep.observations, obs)
    np.testing.assert_allclose(ep.obs_mean, obs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ep.obs_std, obs.std(0) + 1e-6, rtol=1e-5)


def test_unsupported_spaces_raise(make_minari_dataset):
    T = 3
    dict_obs = make_minari_dataset(
        "tests/dict-obs-v0",
        [[1.0] * T],
        observations=[{"a": np.zeros((T + 1, 2), np.float32)}],
        observation_space=gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,), np.float32)}),
    )
    with pytest.raises(ValueError, match=r"tests/dict-obs-v0 has observation space Dict.*supports Box observations"):
        episodes_from_minari(dict_obs)

    multi_act = make_minari_dataset(
        "tests/multidiscrete-v0",
        [[1.0] * T],
        actions=[np.zeros((T, 2), np.int64)],
        action_space=gym.spaces.MultiDiscrete([2, 3]),
    )
    with pytest.raises(ValueError, match=r"action space MultiDiscrete.*Box or Discrete actions"):
        episodes_from_minari(multi_act)


def test_empty_dataset_raises(make_minari_dataset):
    with pytest.raises(ValueError, match="tests/empty-v0 has no episodes"):
        episodes_from_minari(make_minari_dataset("tests/empty-v0", []))
    with pytest.raises(ValueError, match="no steps"):
        episodes_from_arrays([np.zeros((1, 2))], [np.zeros((0, 1))], [np.zeros(0)], dataset_id="x")


def test_missing_dataset_message(minari_root):
    dataset_id = "nobody/missing-v0"
    with pytest.raises(DatasetNotFoundError) as info:
        load_minari_dataset(dataset_id)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert dataset_id in msg and str(minari_root / "nobody" / "missing-v0") in msg
    assert f"dataset.id={dataset_id} dataset.download=true" in msg and f"minari download {dataset_id}" in msg


@pytest.mark.parametrize(
    "dataset_id, how",
    [
        (
            "dqn-replay/breakout/1pct-v0",
            "decision-seq datasets import-dqn-replay <DQN-Replay dir>/Breakout/1 --game Breakout",
        ),
        ("decision-seq/hopper/medium-v0", "decision-seq datasets build"),
        ("decision-seq/atari-breakout/demo-v0", "decision-seq datasets build-atari Breakout"),
    ],
)
def test_missing_local_only_dataset_says_how_to_make_it(minari_root, dataset_id, how):
    """Our builds and imports are never on Minari's remote: the message says how to make them, not download."""
    with pytest.raises(DatasetNotFoundError) as info:
        load_minari_dataset(dataset_id)
    msg = str(info.value)
    assert dataset_id in msg and how in msg and "download" not in msg


def test_empty_dataset_clear_error():
    from decision_seq.data.episodes import episodes_from_arrays

    with pytest.raises(ValueError, match="has no steps"):
        episodes_from_arrays(
            observations=[np.zeros((1, 2))], actions=[np.zeros((0, 1))], rewards=[np.zeros(0)], dataset_id="empty"
        )


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupted_dataset_file_clear_error(damage, make_minari_dataset, minari_root):
    from decision_seq.data.episodes import DatasetCorruptError, load_episodes

    dataset_id = f"tests/corrupt-{damage}-v0"
    make_minari_dataset(dataset_id, rewards=[[1.0, 2.0, 3.0]] * 4)
    (f,) = (minari_root / "tests" / f"corrupt-{damage}-v0").rglob("*.hdf5")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\0" * 64)
    with pytest.raises(DatasetCorruptError, match=f"'{dataset_id}' at .* cannot be read .*corrupt or incomplete"):
        load_episodes(dataset_id)


def test_top_fraction_keeps_the_best_episodes_like_the_dt_code():
    """Filtered %BC: the best-return episodes holding at most the fraction of steps (at least the best one),
    in their original order, with the full dataset's observation statistics."""
    from decision_seq.data.episodes import episodes_from_arrays

    lengths, returns = [4, 2, 3, 1], [10.0, 30.0, 20.0, 40.0]  # 10 steps; best first: ep 3, 1, 2, 0
    eps = episodes_from_arrays(
        observations=[np.full((n, 2), e, np.float32) for e, n in enumerate(lengths)],
        actions=[np.zeros((n, 1)) for n in lengths],
        rewards=[np.full(n, r / n) for n, r in zip(lengths, returns, strict=True)],
        dataset_id="toy",
    )
    kept = {f: eps.top_fraction(f) for f in (0.05, 0.3, 0.6, 1.0)}
    # budgets 1, 3, 6, 10 steps: ep 3 (1 step); + ep 1 (3); + ep 2 (6); all
    assert [sorted({int(o) for o in kept[f].observations[:, 0]}) for f in kept] == [
        [3],
        [1, 3],
        [1, 2, 3],
        [0, 1, 2, 3],
    ]
    sub = kept[0.6]
    assert sub.episode_lengths.tolist() == [2, 3, 1] and sub.episode_starts.tolist() == [0, 2, 5]
    assert sub.episode_returns.tolist() == pytest.approx([30.0, 20.0, 40.0])
    assert sub.returns_to_go[:2].tolist() == pytest.approx([30.0, 15.0]) and sub.timesteps.tolist() == [
        0,
        1,
        0,
        1,
        2,
        0,
    ]
    np.testing.assert_array_equal(sub.obs_mean, eps.obs_mean)
    np.testing.assert_array_equal(sub.obs_std, eps.obs_std)
    assert eps.top_fraction(1.0).num_steps == eps.num_steps
    with pytest.raises(ValueError, match=r"top fraction must be in \(0, 1\]"):
        eps.top_fraction(0)
