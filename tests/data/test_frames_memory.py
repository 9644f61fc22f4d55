"""Atari frames at scale: stored once (a mapped frame cache, or one shared array), never copied by the sampler,
their pages released after each batch; stacks equal explicit stacking; the first convolution saves uint8."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from decision_seq.data import frames as frames_mod
from decision_seq.data.episodes import episodes_from_minari, load_episodes
from decision_seq.data.frames import FRAME_CACHE_NAME, gather_frames, is_mapped
from decision_seq.data.sampler import SequenceSampler, _to_device
from decision_seq.models import encoders
from decision_seq.models.encoders import FrameEncoder

LENGTHS = (5, 2, 9)


@pytest.fixture
def frame_dataset(make_minari_dataset, fresh_minari_root):
    """Three episodes; frame t of episode e is filled with 10 * e + t + 1 (T + 1 frames each, as Minari keeps)."""
    obs = [np.repeat((10 * e + np.arange(T + 1) + 1).astype(np.uint8), 84 * 84).reshape(T + 1, 84, 84)
           for e, T in enumerate(LENGTHS)]  # fmt: skip
    ds = make_minari_dataset(
        "tests/frames-v0",
        rewards=[np.ones(T) for T in LENGTHS],
        observations=obs,
        actions=[np.zeros(T, np.int64) for T in LENGTHS],
        observation_space=gym.spaces.Box(0, 255, (84, 84), np.uint8),
        action_space=gym.spaces.Discrete(3),
    )
    expected = np.concatenate([o[:-1] for o in obs])  # final frames dropped
    return ds, expected, Path(ds.storage.data_path) / FRAME_CACHE_NAME


def test_frames_load_as_a_map_of_the_cache_written_once(frame_dataset):
    ds, expected, cache = frame_dataset
    assert not cache.exists()
    eps = load_episodes(ds.id)
    assert is_mapped(eps.observations) and Path(eps.observations.filename) == cache.resolve()
    np.testing.assert_array_equal(eps.observations, expected)
    np.testing.assert_array_equal(np.load(cache), expected)
    stat = cache.stat()
    again = load_episodes(ds.id)  # the cache is reused, not rewritten
    assert cache.stat().st_ino == stat.st_ino and cache.stat().st_mtime_ns == stat.st_mtime_ns
    np.testing.assert_array_equal(again.observations, expected)
    np.testing.assert_array_equal(again.episode_lengths, LENGTHS)
    best = again.top_fraction(0.6)  # equal returns (1 a step): the longest episode, 9 of 16 steps
    assert not is_mapped(best.observations)
    np.testing.assert_array_equal(best.observations, expected[7:16])


def test_a_filtered_subset_reads_its_own_frames(frame_dataset):
    ds, expected, cache = frame_dataset
    load_episodes(ds.id)  # writes the cache of all episodes
    subset = episodes_from_minari(ds.filter_episodes(lambda ep: len(ep.rewards) != 2))
    assert not is_mapped(subset.observations)
    np.testing.assert_array_equal(subset.observations, np.concatenate([expected[:5], expected[7:]]))


def test_stale_or_foreign_cache_is_rebuilt(frame_dataset):
    ds, expected, cache = frame_dataset
    np.save(cache, np.zeros((3, 84, 84), np.uint8))  # another shape
    np.testing.assert_array_equal(load_episodes(ds.id).observations, expected)
    np.save(cache, np.zeros_like(expected))  # right shape, but older than the dataset's HDF5 file
    hdf5 = cache.parent / "main_data.hdf5"
    os.utime(cache, (hdf5.stat().st_mtime - 10, hdf5.stat().st_mtime - 10))
    np.testing.assert_array_equal(load_episodes(ds.id).observations, expected)


def test_unwritable_cache_falls_back_to_one_array(frame_dataset, monkeypatch):
    ds, expected, cache = frame_dataset

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(cache.parent))

    monkeypatch.setattr(frames_mod.tempfile, "mkstemp", refuse)
    with pytest.warns(UserWarning, match="cannot write the frame cache"):
        eps = load_episodes(ds.id)
    assert not is_mapped(eps.observations) and not cache.exists()
    np.testing.assert_array_equal(eps.observations, expected)
    np.testing.assert_array_equal(eps.episode_lengths, LENGTHS)


def test_sampler_reads_the_map_without_copy_and_stacks_exactly(frame_dataset):
    ds, expected, _ = frame_dataset
    eps = load_episodes(ds.id)
    mapped = SequenceSampler(eps, context_len=4, batch_size=64, max_ep_len=20, seed=3)
    assert mapped._frames is eps.observations  # the map itself: no copy, no tensor of all frames
    in_memory = replace(eps, observations=np.array(eps.observations))
    shared = SequenceSampler(in_memory, context_len=4, batch_size=64, max_ep_len=20, seed=3)
    assert shared._frames.data_ptr() == in_memory.observations.ctypes.data  # shares the array
    # Another device gets a copy, made in slices (here on the CPU, in slices of 5 rows).
    np.testing.assert_array_equal(_to_device(eps.observations, torch.device("cpu"), rows=5).numpy(), expected)
    starts = np.repeat(eps.episode_starts, eps.episode_lengths)
    ends = np.repeat(eps.episode_starts + eps.episode_lengths, eps.episode_lengths)
    for _ in range(3):
        batch, batch2 = mapped.sample(), shared.sample()
        stacks = batch["states"].numpy()
        assert stacks.shape == (64, 4, 4, 84, 84) and stacks.dtype == np.uint8
        np.testing.assert_array_equal(stacks, batch2["states"].numpy())
        # Explicit stacking: the window's last step is its first step + its length - 1; the first step is
        # recovered from the window's timesteps and the episode of the frame it shows.
        for b in range(64):
            real = np.flatnonzero(batch["mask"][b].numpy())
            value = int(stacks[b, real[0], -1, 0, 0])  # 10 * e + t + 1 of the first real step
            e, t0 = divmod(value - 1, 10)
            first = int(eps.episode_starts[e]) + t0
            assert ends[first] - first >= len(real) and batch["timesteps"][b, real[0]] == t0
            for j, k in enumerate(real):
                i = first + j
                want = [expected[max(i - 3 + s, starts[i])] for s in range(4)]
                np.testing.assert_array_equal(stacks[b, k], np.stack(want))
            assert not stacks[b, : real[0]].any()  # left padding is zero


def _mapped_rss_kib(path: Path) -> int:
    """This process's resident KiB of its maps of `path` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split()[0] and len(line.split()) >= 5:
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps (Linux)")
def test_batches_release_the_maps_pages(tmp_path):
    path = tmp_path / "frames.npy"
    data = np.arange(400 * 84 * 84, dtype=np.uint64).astype(np.uint8).reshape(400, 84, 84)
    np.save(path, data)
    frames = np.load(path, mmap_mode="r")
    touched = np.asarray(frames[::2]).sum()  # reads half the frames through the map: their pages are resident
    assert touched > 0 and _mapped_rss_kib(path) > 400 * 84 * 84 // 2 // 1024 // 2
    index = np.array([5, 399, 5, 0])
    np.testing.assert_array_equal(gather_frames(frames, index), data[index])
    assert _mapped_rss_kib(path) == 0  # gathered and released: nothing of the map counts in RSS any more


def test_first_conv_saves_uint8_frames_and_matches_the_float_path(monkeypatch):
    torch.manual_seed(0)
    enc = FrameEncoder(16)
    x = torch.randint(0, 256, (2, 3, 4, 84, 84), dtype=torch.uint8)
    monkeypatch.setattr(encoders, "FLOAT_CHUNK", 4)  # 6 images in chunks of 4 and 2
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((t.dtype, tuple(t.shape))) or t, lambda t: t):
        y = enc(x)
    assert (torch.uint8, (6, 4, 84, 84)) in saved
    assert not [s for s in saved if s[1] == (6, 4, 84, 84) and s[0] != torch.uint8]  # no float copy kept
    y.square().sum().backward()
    grads = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    y_float = enc(x.float())  # the plain nn.Conv2d path
    y_float.square().sum().backward()
    torch.testing.assert_close(y, y_float, rtol=0, atol=0)
    for g, g_float in zip(grads, [p.grad for p in enc.parameters()], strict=True):
        torch.testing.assert_close(g, g_float, rtol=1e-5, atol=1e-6)
