"""Minari's Atari sets: a tiny local atari/breakout/expert-v0 of random RGB screens -> 84x84 gray cache."""

from __future__ import annotations

import json

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from decision_seq.data.episodes import DatasetNotFoundError, load_episodes
from decision_seq.datasets import minari_atari
from decision_seq.datasets.minari_atari import RAW_SHAPE, resolve_atari_id
from decision_seq.datasets.minari_io import dataset_exists_locally

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:minari.utils")  # the hand-made source's gaps
cv2 = pytest.importorskip("cv2", reason="the conversion needs opencv (the atari extra)")

SOURCE = "atari/breakout/expert-v0"
CACHE = "decision-seq/atari-breakout/minari-expert-v0"


def _make_source(lengths=(5, 3), n_actions=4, seed=0) -> list[dict]:
    """A local dataset in Minari's Atari layout (raw RGB screens); returns its episodes' arrays."""
    rng = np.random.default_rng(seed)
    episodes = []
    for T in lengths:
        episodes.append(
            {
                "obs": rng.integers(0, 256, (T + 1, *RAW_SHAPE), dtype=np.uint8),
                "act": rng.integers(0, n_actions, T),
                "rew": rng.choice([0.0, 1.0, 4.0, 7.0], T),  # Breakout's raw brick rewards
            }
        )
    buffers = [
        EpisodeBuffer(
            observations=e["obs"],
            actions=e["act"],
            rewards=e["rew"],
            terminations=np.arange(len(e["act"])) == len(e["act"]) - 1,
            truncations=np.zeros(len(e["act"]), bool),
            infos={},
        )
        for e in episodes
    ]
    minari.create_dataset_from_buffers(
        SOURCE,
        buffer=buffers,
        env=None,
        observation_space=gym.spaces.Box(0, 255, RAW_SHAPE, np.uint8),
        action_space=gym.spaces.Discrete(n_actions),
        algorithm_name="test",
        jpeg_encoding=False,
    )
    return episodes


def test_converted_once_exactly_and_cached(fresh_minari_root, monkeypatch):
    episodes = _make_source()
    assert resolve_atari_id(SOURCE, progress=False) == CACHE
    ds = minari.load_dataset(CACHE)
    for ep, stored in zip(episodes, ds.iterate_episodes(), strict=True):
        expected = np.stack(
            [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA) for f in ep["obs"]]
        )
        assert stored.observations.dtype == np.uint8 and stored.observations.shape == (len(ep["obs"]), 84, 84)
        np.testing.assert_array_equal(stored.observations, expected)
        np.testing.assert_array_equal(stored.actions, ep["act"])
        np.testing.assert_array_equal(stored.rewards, np.sign(ep["rew"]))
        assert stored.terminations[-1] and not stored.terminations[:-1].any()
    meta = ds.storage.metadata
    assert meta["minari_atari"]["source_id"] == SOURCE
    assert meta["minari_atari"]["raw_returns"] == [float(e["rew"].sum()) for e in episodes]
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (2.0, 30.0)  # Breakout random / gamer
    env = json.loads(meta["eval_env_spec"])
    assert env["id"] == "ALE/Breakout-v5" and env["kwargs"]["repeat_action_probability"] == 0.0
    assert env["additional_wrappers"][0]["kwargs"]["frame_skip"] == 4

    # The second load reads the cache: converting again would fail.
    def boom(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(minari_atari, "convert_minari_atari", boom)
    assert resolve_atari_id(SOURCE) == CACHE
    ep_set = load_episodes(SOURCE)  # the loader resolves Minari's id to the cached copy itself
    assert ep_set.is_image and ep_set.discrete and ep_set.action_dim == 4
    assert ep_set.dataset_id == CACHE and ep_set.episode_lengths.tolist() == [5, 3]


def test_other_ids_pass_through_and_errors(fresh_minari_root):
    assert resolve_atari_id("mujoco/hopper/medium-v0") == "mujoco/hopper/medium-v0"
    with pytest.raises(ValueError, match="unknown or unsupported game 'pitfall'"):
        resolve_atari_id("atari/pitfall/expert-v0")
    with pytest.raises(DatasetNotFoundError, match="atari/breakout/expert-v0"):
        resolve_atari_id(SOURCE)  # not local, no download
    assert not dataset_exists_locally(CACHE)


def test_wrong_action_space_refused_nothing_written(fresh_minari_root):
    _make_source(n_actions=18)
    with pytest.raises(ValueError, match=r"Discrete\(4\) for Breakout"):
        resolve_atari_id(SOURCE, progress=False)
    assert not dataset_exists_locally(CACHE)
    assert [p.name for p in fresh_minari_root.iterdir() if p.name.startswith(".")] == []  # no temp dir left


def test_catalog_and_hydra_entries_for_every_game(fresh_minari_root, capsys):
    from decision_seq.cli.datasets import main as datasets_main
    from decision_seq.datasets.catalog import catalog_entry, hydra_dataset_names
    from decision_seq.datasets.dqn_replay import GAMES

    names = hydra_dataset_names()
    for key, game in GAMES.items():
        remote = f"atari/{key}/expert-v0"
        assert names[remote] == [f"minari-atari-{key}-expert"]
        for dataset_id in (remote, f"decision-seq/atari-{key}/minari-expert-v0", f"decision-seq/atari-{key}/mixed-v0"):
            entry = catalog_entry(dataset_id)
            assert entry.eval_env == game.env_id and entry.ref_scores == (game.random_score, game.gamer_score)
    assert names["decision-seq/atari-breakout/demo-v0"] == ["atari-breakout-demo"]
    # made locally, never downloaded: one line saying how to get it, no network
    assert datasets_main(["download", CACHE]) == 2
    assert f"converts {SOURCE} on its first load" in capsys.readouterr().err
