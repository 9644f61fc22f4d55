"""Data layer tests: EpisodeSet conversion, DT window sampling, built-in datasets, error messages."""

from __future__ import annotations

import io
from collections import Counter

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from decision_seq.datasets import builtin as builders
from decision_seq.datasets.builtin import (
    DEFAULT_DATASET_ID,
    build_pendulum_mixed,
    dataset_exists_locally,
    ensure_builtin_dataset,
)
from decision_seq.data.episodes import (
    DatasetNotFoundError,
    EpisodeSet,
    episodes_from_arrays,
    episodes_from_minari,
    load_episodes,
    load_minari_dataset,
)
from decision_seq.data.sampler import SequenceSampler

# Two hand-made episodes (lengths 3 and 5) with known rewards; K = 4.
REWARDS = [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0, 50.0]]
RTG = [[6.0, 5.0, 3.0], [150.0, 140.0, 120.0, 90.0, 50.0]]
K = 4


@pytest.fixture(scope="module")
def tiny(make_minari_dataset) -> EpisodeSet:
    """obs[t] of episode e is (e, t); actions t / 10; refs 0 / 200."""
    ds = make_minari_dataset("tests/tiny-v0", REWARDS, ref_min_score=0.0, ref_max_score=200.0)
    return episodes_from_minari(ds)


def raw_states(sampler: SequenceSampler, states: torch.Tensor) -> np.ndarray:
    """Undo the sampler's normalization: (B, K, S) raw observations."""
    ep = sampler.episodes
    return states.numpy() * ep.obs_std + ep.obs_mean


def expected_window(episode: int, t: int) -> dict[str, np.ndarray]:
    """Hand-computed DT window starting at step t of an episode: truncated at its end, left-padded."""
    T = len(REWARDS[episode])
    length = min(K, T - t)
    pad = K - length
    steps = np.arange(t, t + length)
    mask = np.array([False] * pad + [True] * length)
    return {
        "mask": mask,
        "obs": np.concatenate([np.zeros((pad, 2)), np.stack([np.full(length, episode), steps], 1)]),
        "actions": np.concatenate([np.zeros(pad), steps / 10]),
        "rtg": np.concatenate([np.zeros(pad), np.asarray(RTG[episode])[steps]]),
        "timesteps": np.concatenate([np.zeros(pad, int), steps]),
    }


def window_start(raw: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """(episode, step) of a window's first real position."""
    first = int(np.argmax(mask))
    return int(round(raw[first, 0])), int(round(raw[first, 1]))


# ---------------------------------------------------------------------------------------------
# EpisodeSet
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# SequenceSampler
# ---------------------------------------------------------------------------------------------


def test_sampler_shapes_and_dtypes(tiny, cartpole_dataset_id):
    batch = SequenceSampler(tiny, context_len=K, batch_size=16).sample()
    assert batch["states"].shape == (16, K, 2) and batch["states"].dtype == torch.float32
    assert batch["actions"].shape == (16, K, 1) and batch["actions"].dtype == torch.float32
    assert batch["returns_to_go"].shape == (16, K, 1) and batch["returns_to_go"].dtype == torch.float32
    assert batch["timesteps"].shape == (16, K) and batch["timesteps"].dtype == torch.int64
    assert batch["mask"].shape == (16, K) and batch["mask"].dtype == torch.bool

    cart = load_episodes(cartpole_dataset_id)
    batch = SequenceSampler(cart, context_len=20, batch_size=8).sample()
    assert batch["actions"].shape == (8, 20) and batch["actions"].dtype == torch.int64
    assert (batch["actions"][~batch["mask"]] == 0).all()  # Discrete padding action 0


def test_every_window_matches_hand_computed(tiny):
    """Draw until every one of the 8 start steps has been seen; each window must equal the hand one."""
    sampler = SequenceSampler(tiny, context_len=K, batch_size=64, rtg_scale=10.0, seed=1)
    seen: dict[tuple[int, int], int] = Counter()
    for _ in range(20):
        batch = sampler.sample()
        raw = raw_states(sampler, batch["states"])
        for b in range(64):
            mask = batch["mask"][b].numpy()
            start = window_start(raw[b], mask)
            exp = expected_window(*start)
            np.testing.assert_array_equal(mask, exp["mask"])
            np.testing.assert_allclose(raw[b][mask], exp["obs"][mask], atol=1e-5)
            # padding is exactly zero after normalization
            assert (batch["states"][b][~batch["mask"][b]] == 0).all()
            np.testing.assert_allclose(batch["actions"][b, :, 0].numpy(), exp["actions"], atol=1e-6)
            np.testing.assert_allclose(batch["returns_to_go"][b, :, 0].numpy(), exp["rtg"] / 10.0, rtol=1e-6)
            np.testing.assert_array_equal(batch["timesteps"][b].numpy(), exp["timesteps"])
            # a window never crosses into the next episode
            assert len(set(np.round(raw[b][mask, 0]).astype(int))) == 1
            seen[start] += 1
    assert set(seen) == {(0, t) for t in range(3)} | {(1, t) for t in range(5)}


def test_specific_windows(tiny):
    # The start of the 3-step episode: 3 real steps, one pad on the left.
    exp = expected_window(0, 0)
    np.testing.assert_array_equal(exp["mask"], [False, True, True, True])
    np.testing.assert_array_equal(exp["rtg"], [0, 6, 5, 3])
    # Step 3 of the 5-step episode: 2 real steps (3, 4), two pads.
    exp = expected_window(1, 3)
    np.testing.assert_array_equal(exp["mask"], [False, False, True, True])
    np.testing.assert_array_equal(exp["timesteps"], [0, 0, 3, 4])
    np.testing.assert_array_equal(exp["rtg"], [0, 0, 90, 50])
    # Step 0 of the 5-step episode: a full window.
    np.testing.assert_array_equal(expected_window(1, 0)["mask"], [True] * 4)


def test_starts_uniform_and_episodes_length_weighted():
    """Episodes of lengths 2, 5, 13: episode frequency ~ length, and every start step equally likely."""
    lengths = [2, 5, 13]
    obs = [np.stack([np.full(T + 1, e), np.arange(T + 1)], 1).astype(np.float32) for e, T in enumerate(lengths)]
    eps = episodes_from_arrays(obs, [np.zeros((T, 1)) for T in lengths], [np.ones(T) for T in lengths])
    sampler = SequenceSampler(eps, context_len=3, batch_size=500, seed=0)
    counts = Counter()
    for _ in range(40):
        batch = sampler.sample()
        raw = raw_states(sampler, batch["states"])
        for b in range(500):
            counts[window_start(raw[b], batch["mask"][b].numpy())] += 1
    n = sum(counts.values())  # 20_000
    starts = [(e, t) for e, T in enumerate(lengths) for t in range(T)]
    assert set(counts) == set(starts)
    # Chi-square over the 20 start steps (19 dof; 43.8 is the 0.999 quantile).
    expected = n / len(starts)
    chi2 = sum((counts[s] - expected) ** 2 / expected for s in starts)
    assert chi2 < 43.8, chi2
    per_episode = np.array([sum(c for (e, _), c in counts.items() if e == i) for i in range(3)]) / n
    np.testing.assert_allclose(per_episode, np.array(lengths) / 20, atol=0.015)


def test_same_seed_same_batches_and_resume(tiny):
    a = SequenceSampler(tiny, K, 32, seed=7)
    b = SequenceSampler(tiny, K, 32, seed=7)
    c = SequenceSampler(tiny, K, 32, seed=8)
    ba, bb, bc = a.sample(), b.sample(), c.sample()
    for key in ba:
        assert torch.equal(ba[key], bb[key])
    assert not torch.equal(ba["timesteps"], bc["timesteps"])

    for _ in range(3):
        a.sample()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # goes through a checkpoint: loadable with weights_only=True
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    expected = [a.sample() for _ in range(3)]
    resumed = SequenceSampler(tiny, K, 32, seed=123)
    resumed.load_state_dict(state)
    for exp in expected:
        got = resumed.sample()
        for key in exp:
            assert torch.equal(got[key], exp[key])


def test_timesteps_clipped_to_max_ep_len(tiny):
    with pytest.warns(UserWarning, match="max_ep_len=3"):
        sampler = SequenceSampler(tiny, K, 64, max_ep_len=3)
    assert int(sampler.sample()["timesteps"].max()) == 2


# ---------------------------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------------------------


def test_default_dataset_is_a_real_minari_dataset(pendulum_dataset_id, minari_root):
    assert pendulum_dataset_id == DEFAULT_DATASET_ID
    ds = minari.load_dataset(pendulum_dataset_id)
    assert ds.total_episodes == 30 and ds.total_steps == 30 * 200
    assert pendulum_dataset_id in minari.list_local_datasets()
    meta = ds.storage.metadata
    ref_min, ref_max = meta["ref_min_score"], meta["ref_max_score"]
    # the expert is far above the uniform random policy (about -150 vs -1200)
    assert ref_max > -300 and ref_min < -900 and ref_max - ref_min > 600
    assert minari.get_normalized_score(ds, np.array([ref_max]))[0] == pytest.approx(1.0)

    env = ds.recover_environment(eval_env=True)
    assert env.spec.id == "Pendulum-v1" and env.spec.max_episode_steps == 200
    env.close()

    ep = episodes_from_minari(ds)
    assert ep.eval_env_spec.id == "Pendulum-v1"
    assert 0.0 < ep.summary()["normalized_score_mean"] < 100.0
    returns = ep.episode_returns
    assert returns.max() - returns.min() > 500  # mixed quality: returns spread widely
    # no build temp dirs left in the Minari root
    assert not [p.name for p in minari_root.iterdir() if p.name.startswith(".")]


def test_builtin_is_built_on_first_load_and_not_rebuilt(fresh_minari_root, monkeypatch):
    calls = []

    def small_build(dataset_id):
        calls.append(dataset_id)
        return build_pendulum_mixed(dataset_id, num_episodes=3, num_reference_episodes=2, progress=False)

    monkeypatch.setitem(builders.BUILTIN, DEFAULT_DATASET_ID, small_build)
    assert not dataset_exists_locally(DEFAULT_DATASET_ID)
    ds = load_minari_dataset(DEFAULT_DATASET_ID)
    assert ds.total_episodes == 3 and calls == [DEFAULT_DATASET_ID]
    assert load_minari_dataset(DEFAULT_DATASET_ID).total_episodes == 3 and len(calls) == 1
    # a direct call with another size loads the existing dataset instead of rebuilding it
    assert build_pendulum_mixed(num_episodes=5, progress=False).total_episodes == 3
    assert ensure_builtin_dataset(DEFAULT_DATASET_ID).total_episodes == 3
    assert sorted(p.name for p in fresh_minari_root.iterdir()) == ["decision-seq"]


def test_failed_build_leaves_nothing_behind(fresh_minari_root, monkeypatch):
    real_create = minari.create_dataset_from_buffers

    def create_then_crash(*args, **kwargs):
        real_create(*args, **kwargs)  # data fully written into the temp dir...
        raise RuntimeError("interrupted")  # ...but the build dies before the rename

    monkeypatch.setattr(builders.minari, "create_dataset_from_buffers", create_then_crash)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_pendulum_mixed("tests/crash-v0", num_episodes=2, num_reference_episodes=1, progress=False)
    assert not dataset_exists_locally("tests/crash-v0")
    assert list(fresh_minari_root.iterdir()) == []


def test_builds_are_reproducible(fresh_minari_root):
    kw = dict(num_episodes=3, num_reference_episodes=2, progress=False)
    a = episodes_from_minari(build_pendulum_mixed("tests/pend-a-v0", seed=3, **kw))
    b = episodes_from_minari(build_pendulum_mixed("tests/pend-b-v0", seed=3, **kw))
    c = episodes_from_minari(build_pendulum_mixed("tests/pend-c-v0", seed=4, **kw))
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert a.ref_min_score == b.ref_min_score == c.ref_min_score  # references do not depend on the seed
    assert not np.array_equal(a.observations, c.observations)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampler_on_cuda(tiny):
    sampler = SequenceSampler(tiny, K, 32, device="cuda", seed=5)
    state = sampler.state_dict()
    batch = sampler.sample()
    assert all(v.device.type == "cuda" for v in batch.values())
    cpu_raw = raw_states(sampler, batch["states"].cpu())
    for b in range(32):
        mask = batch["mask"][b].cpu().numpy()
        exp = expected_window(*window_start(cpu_raw[b], mask))
        np.testing.assert_array_equal(mask, exp["mask"])
    sampler.load_state_dict(state)
    again = sampler.sample()
    assert all(torch.equal(again[k], batch[k]) for k in batch)
