"""Shared test fixtures: an isolated Minari root, small built-in datasets, hand-made datasets.

Every test session points `MINARI_DATASETS_PATH` at its own temporary directory, so tests never
read or write the user's datasets and never download anything.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def share_cores_between_workers() -> None:
    """Under pytest-xdist (`make test`), each worker process takes its share of the cores for torch, so N
    workers do not run N x cores threads. Tests that need a thread count set it themselves."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-session Minari datasets root (autouse: set before any test touches Minari)."""
    root = tmp_path_factory.mktemp("minari_datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        yield root


@pytest.fixture(scope="session")
def pendulum_dataset_id(minari_root: Path) -> str:
    """A small (30-episode) build of the default Pendulum dataset, under the default id.

    Code paths that auto-build the default dataset find this one and do not rebuild it.
    """
    from decision_seq.datasets.builtin import DEFAULT_DATASET_ID, build_pendulum_mixed

    build_pendulum_mixed(DEFAULT_DATASET_ID, num_episodes=30, seed=0, num_reference_episodes=10, progress=False)
    return DEFAULT_DATASET_ID


@pytest.fixture(scope="session")
def cartpole_dataset_id(minari_root: Path) -> str:
    """A small (20-episode) build of the discrete-action CartPole dataset."""
    from decision_seq.datasets.builtin import CARTPOLE_DATASET_ID, build_cartpole_mixed

    build_cartpole_mixed(CARTPOLE_DATASET_ID, num_episodes=20, seed=0, num_reference_episodes=5, progress=False)
    return CARTPOLE_DATASET_ID


@pytest.fixture(scope="session")
def make_minari_dataset(minari_root: Path) -> Callable:
    """Factory writing a tiny real Minari dataset from given per-episode arrays.

    make_minari_dataset(dataset_id, rewards=[r0, r1, ...], observations=None, actions=None,
                        terminations=None, truncations=None, observation_space=None,
                        action_space=None, ref_min_score=None, ref_max_score=None) -> MinariDataset

    Defaults: observations (T+1, 2) with obs[t] = (episode, t), so every step is identifiable;
    actions (T, 1) = t / 10; the last step of each episode is a termination. Spaces default to
    unbounded Boxes of the right shape.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    def make(
        dataset_id: str,
        rewards: Sequence[Sequence[float]],
        observations: Sequence | None = None,
        actions: Sequence | None = None,
        terminations: Sequence | None = None,
        truncations: Sequence | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
    ):
        buffers = []
        for e, rew in enumerate(rewards):
            T = len(rew)
            obs = (
                np.stack([np.full(T + 1, e), np.arange(T + 1)], axis=1).astype(np.float32)
                if observations is None
                else observations[e]
            )
            act = (np.arange(T, dtype=np.float32) / 10)[:, None] if actions is None else actions[e]
            term = np.arange(T) == T - 1 if terminations is None else np.asarray(terminations[e], bool)
            trunc = np.zeros(T, bool) if truncations is None else np.asarray(truncations[e], bool)
            buffers.append(
                EpisodeBuffer(
                    observations=obs,
                    actions=act,
                    rewards=np.asarray(rew, np.float64),
                    terminations=term,
                    truncations=trunc,
                    infos={},
                )
            )
        if observation_space is None:
            shape = np.asarray(buffers[0].observations).shape[1:] if buffers else (2,)
            observation_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
        if action_space is None:
            shape = np.asarray(buffers[0].actions).shape[1:] if buffers else (1,)
            action_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no env / eval_env given": intended here
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffer=buffers,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name="hand-made",
                author="tests",
                author_email="tests@example.com",
                code_permalink="tests/conftest.py",
                description="hand-made test dataset",
            )
        if ref_min_score is not None or ref_max_score is not None:
            # Without an env, create_dataset_from_buffers silently drops the reference scores.
            dataset.storage.update_metadata({"ref_min_score": ref_min_score, "ref_max_score": ref_max_score})
        return dataset

    return make


@pytest.fixture
def fresh_minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Minari root for one test (for build / not-found tests)."""
    root = tmp_path / "minari_datasets"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def restore_logging():
    """Hydra, run in process, configures the root logger onto this test's captured stdout: undo it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
