"""What one SAC build is: its budgets and seeds (BuildConfig), the SAC hyperparameters, the levels and their
dataset ids, and the checks made before any training (values, env spaces).

The SAC hyperparameters are the standard ones of Haarnoja et al. (2018) that D4RL's rlkit agents used:
two 256-unit hidden layers, Adam lr 3e-4, batch 256, gamma 0.99, tau 0.005, one gradient step per env
step, learned entropy temperature. They equal SB3's SAC defaults and are passed explicitly, so an SB3
default change cannot alter a build silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from decision_seq.datasets.naming import BUILTIN_NAMESPACE, LEVELS, check_level, rebuild_id

EXPERT_CHOICES = ("best", "final")

# Standard SAC hyperparameters (Haarnoja et al. 2018, as in D4RL's rlkit agents) = SB3's SAC defaults.
SAC_SETTINGS = {
    "learning_rate": 3e-4,
    "batch_size": 256,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": "auto",
    "net_arch": [256, 256],
}

# Tags that derive independent seed streams from the build seed (np.random.SeedSequence([seed, tag])).
_SEED_TAGS = {"random": 1, "medium": 2, "expert": 3, "eval": 4, "resume": 5}


@dataclass
class BuildConfig:
    """Budgets and seeds of one build. Defaults: a full Hopper-v5 build in about 1.5 h on 2 CPU cores.

    Measured here (one torch thread): SAC trains at about 70 env steps/s; stochastic snapshot
    collection runs at about 2500-3000 steps/s and uniform random actions at about 7000, and Minari
    writes 20k-50k steps/s. Estimate for Hopper-v5 with these defaults: training 290k / 70 = 69 min,
    snapshot evaluations (60 x 5 episodes) about 2 min, collection of 3 x 1M steps (medium-expert
    reuses the medium and expert episodes) about 15 min, writing 5M steps about 3 min: about 1.5 h.
    `snapshot_every` 5k (60 snapshots) keeps the medium snapshot close to the 1/3 threshold.
    """

    train_steps: int = 300_000  # SAC env steps. Departure: D4RL trained SAC to completion (1M+ steps is typical)
    steps_per_level: int = 1_000_000  # env steps collected per level, as in D4RL (medium-expert gets 2x)
    snapshot_every: int = 5_000  # env steps between policy snapshots (and resumable checkpoints)
    eval_episodes: int = 5  # deterministic evaluation episodes per snapshot
    reference_episodes: int = 10  # fixed-seed episodes for ref_min_score / ref_max_score
    learning_starts: int = 10_000  # uniform random warm-up steps before SAC updates (rl-zoo's MuJoCo value)
    medium_fraction: float = 1 / 3  # medium = first snapshot at this fraction of the way from random to expert
    expert: str = "best"  # which snapshot is the expert: "best" (evaluation return) or "final"
    seed: int = 0
    namespace: str = BUILTIN_NAMESPACE
    device: str = "cpu"  # torch device of the SAC updates
    num_threads: int = 1  # torch threads during the build: on 2 shared cores 1 is ~10x faster than 2

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        for name in (
            "train_steps",
            "steps_per_level",
            "snapshot_every",
            "eval_episodes",
            "reference_episodes",
            "num_threads",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.learning_starts, bool)
            or not isinstance(self.learning_starts, int)
            or not 0 <= self.learning_starts < self.train_steps
        ):
            raise ValueError(
                f"learning_starts must be an integer in [0, train_steps={self.train_steps}), "
                f"got {self.learning_starts!r}"
            )
        if not 0.0 < self.medium_fraction < 1.0:
            raise ValueError(f"medium_fraction must be in (0, 1), got {self.medium_fraction!r}")
        if self.expert not in EXPERT_CHOICES:
            raise ValueError(f"expert must be one of {', '.join(EXPERT_CHOICES)}, got {self.expert!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", self.namespace or ""):
            raise ValueError(f"namespace must be a Minari namespace such as 'decision-seq', got {self.namespace!r}")

    def training_settings(self, env_id: str) -> dict:
        """What determines the SAC run: a work dir resumes only a run with exactly these settings."""
        return {
            "env_id": env_id,
            "seed": self.seed,
            "train_steps": self.train_steps,
            "snapshot_every": self.snapshot_every,
            "eval_episodes": self.eval_episodes,
            "learning_starts": self.learning_starts,
            "sac": dict(SAC_SETTINGS),
        }


def parse_levels(text: str | Sequence[str]) -> list[str]:
    """'random,medium' (or a list) -> ['random', 'medium']: stripped, de-duplicated, each a valid level."""
    items = text.split(",") if isinstance(text, str) else list(text)
    levels: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if check_level(item) not in levels:
            levels.append(item)
    if not levels:
        raise ValueError(f"no level given; valid levels: {', '.join(LEVELS)}")
    return levels


def dataset_id_for(env_id: str, level: str, namespace: str = BUILTIN_NAMESPACE) -> str:
    """Minari id of one level: ('Hopper-v5', 'medium-replay') -> 'decision-seq/hopper/medium-replay-v0'.

    The env name is lowercased and loses its version and namespace; the full env id is recorded in
    the dataset's env spec and metadata.
    """
    check_level(level)  # before the env id: a bad level is reported first
    try:
        _, name, _ = gym.envs.registration.parse_env_id(env_id)
    except gym.error.Error as err:
        raise ValueError(f"malformed Gymnasium environment id {env_id!r}: {err}") from None
    return rebuild_id(name, level, namespace)


def check_env(env_id: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """(observation space, action space) of `env_id`; ValueError if unknown or not flat Box / Box."""
    try:
        env = gym.make(env_id)
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, DependencyNotInstalled, ...
        raise ValueError(f"cannot use Gymnasium environment {env_id!r}: {err}") from None
    try:
        obs_space, act_space = env.observation_space, env.action_space
        time_limit = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()
    if time_limit is None:  # evaluation and reference episodes must end
        raise ValueError(f"{env_id} has no time limit (max_episode_steps); register it with one")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(
            f"{env_id} has observation space {obs_space}; the SAC build supports flat (1-D) Box observations only"
        )
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(
            f"{env_id} has action space {act_space}; the SAC behaviour agent needs a flat Box (continuous) action space"
        )
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise ValueError(f"{env_id} has unbounded actions {act_space}; SAC squashes its actions into finite bounds")
    return obs_space, act_space


def default_work_dir(env_id: str, seed: int) -> Path:
    """~/.cache/decision-seq/builds/<env>-seed<seed> (honours $XDG_CACHE_HOME)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "decision-seq" / "builds" / f"{env_id.replace('/', '_')}-seed{seed}"


def derived_seed(seed: int, tag: str) -> int:
    """An independent 31-bit seed for one purpose (training eval, a level's episodes, ...)."""
    return int(np.random.SeedSequence([seed, _SEED_TAGS[tag]]).generate_state(1)[0] >> 1)
