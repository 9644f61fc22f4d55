"""decision_seq.data.sampler: DT window sampling (shapes, hand-computed windows, uniform starts, seeds, resume)."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch

from decision_seq.data.episodes import EpisodeSet, episodes_from_arrays, episodes_from_minari, load_episodes
from decision_seq.data.sampler import SequenceSampler

# Two hand-made episodes (lengths 3 and 5) with known rewards; K = 4.
REWARDS = [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0, 50.0]]
RTG = [[6.0, 5.0, 3.0], [150.0, 140.0, 120.0, 90.0, 50.0]]
K = 4


@pytest.fixture(scope="module")
def tiny(make_minari_dataset) -> EpisodeSet:
    """obs[t] of episode e is (e, t); actions t / 10; refs 0 / 200."""
    ds = make_minari_dataset("tests/tiny-sampler-v0", REWARDS, ref_min_score=0.0, ref_max_score=200.0)
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


# -- frames: stored once, stacked on the fly ----------------------------------------------------------


def _frame_set(lengths=(2, 5, 1, 7)) -> tuple[EpisodeSet, np.ndarray]:
    """Episodes of random uint8 frames marked with (episode, step) at pixel [0, 0:2]; and the naive stacks."""
    rng = np.random.default_rng(0)
    obs, naive = [], []
    for e, T in enumerate(lengths):
        frames = rng.integers(0, 256, (T + 1, 84, 84), dtype=np.uint8)  # (T+1, 84, 84), Minari's layout
        frames[:, 0, 0], frames[:, 0, 1] = e, np.arange(T + 1)
        obs.append(frames)
        for t in range(T):  # frames t-3..t, the episode's first frame repeated before its start
            naive.append(np.stack([frames[max(t - k, 0)] for k in (3, 2, 1, 0)]))
    episodes = episodes_from_arrays(
        obs, [rng.integers(0, 3, T) for T in lengths], [np.ones(T) for T in lengths], discrete=True, action_dim=3
    )
    return episodes, np.stack(naive)  # (N, 4, 84, 84)


def test_frame_stacks_equal_naive_stacking():
    episodes, naive = _frame_set()
    assert episodes.is_image and episodes.observations.shape == (15, 84, 84) and episodes.state_dim == 84 * 84
    sampler = SequenceSampler(episodes, context_len=3, batch_size=64, max_ep_len=10, seed=0)
    flat = {(int(f[0, 0]), int(f[0, 1])): i for i, f in enumerate(episodes.observations)}  # marker -> step
    seen = set()
    for _ in range(3):
        b = sampler.sample()
        assert b["states"].shape == (64, 3, 4, 84, 84) and b["states"].dtype == torch.uint8
        for stacks, mask in zip(b["states"].numpy(), b["mask"].numpy(), strict=True):
            for stack, real in zip(stacks, mask, strict=True):
                if not real:
                    assert not stack.any()  # padding is zeros
                    continue
                i = flat[int(stack[-1, 0, 0]), int(stack[-1, 0, 1])]  # the step's own frame is the newest
                np.testing.assert_array_equal(stack, naive[i])
                seen.add(i)
    assert seen == set(range(15))  # every step's stack was checked


def test_frames_are_not_copied():
    """Memory stays ~1x: on CPU the sampler's frames are the EpisodeSet's array, and the rest is small."""
    episodes, _ = _frame_set()
    sampler = SequenceSampler(episodes, context_len=3, batch_size=4, max_ep_len=10)
    assert sampler._frames.data_ptr() == episodes.observations.ctypes.data
    tensors = {k: t for k, t in vars(sampler).items() if torch.is_tensor(t) and k != "_frames"}
    others = sum(t.numel() * t.element_size() for t in tensors.values())
    assert others < 0.02 * episodes.observations.nbytes
