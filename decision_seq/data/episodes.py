"""Episodes of a Minari dataset as flat numpy arrays, ready for sequence sampling.

`EpisodeSet` holds every episode concatenated (observations, actions, rewards, undiscounted
returns-to-go, in-episode timesteps, termination/truncation flags) plus what the rest of the suite
needs around them: observation normalization statistics (as in the Decision Transformer code),
action-space description, D4RL-style reference scores and the evaluation environment spec.

Observations are vectors (flattened to (S,), float32) or single 84x84 grayscale uint8 frames (Atari),
which stay uint8 and are stored once per step: the sampler stacks the last 4 on the fly, so a
500k-step Atari set holds 3.3 GiB of frames, not 4x that, and holds them in a read-only map of the
dataset's frame cache (data/frames.py), outside the process's anonymous memory.

`episodes_from_minari` converts a `minari.MinariDataset` (Box observations, Box or Discrete
actions); `load_minari_dataset` loads one by id, building the built-in datasets on first use and
otherwise failing with a `DatasetNotFoundError` that says where it looked and how to get the data.
"""

from __future__ import annotations

import errno
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from minari.storage import get_dataset_path

from decision_seq.data.frames import (
    FRAME_SHAPE,
    frame_cache_path,
    gather_frames,
    open_frame_cache,
    write_frame_cache,
)

# Errors of writing the frame cache after which frames are held in memory instead.
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

_SUPPORTED = "decision-seq supports Box observations and Box or Discrete actions"


class DatasetNotFoundError(FileNotFoundError):
    """A Minari dataset id that is neither local nor built in."""


class DatasetCorruptError(ValueError):
    """A local dataset whose files cannot be read."""


@dataclass(eq=False)  # field-wise == is meaningless for numpy arrays
class EpisodeSet:
    """All episodes of a dataset, concatenated along a flat step axis of length N (E episodes)."""

    observations: np.ndarray  # (N, S) float32, or (N, 84, 84) uint8 frames; each episode's final (T+1-th) dropped
    actions: np.ndarray  # (N, A) float32 for Box actions; (N,) int64 for Discrete
    rewards: np.ndarray  # (N,) float32
    returns_to_go: np.ndarray  # (N,) float32, undiscounted sum of rewards from this step to the episode end
    timesteps: np.ndarray  # (N,) int64, step index inside its episode
    terminations: np.ndarray  # (N,) bool
    truncations: np.ndarray  # (N,) bool
    episode_starts: np.ndarray  # (E,) int64 offsets into the flat arrays
    episode_lengths: np.ndarray  # (E,) int64
    obs_mean: np.ndarray  # (S,) float32; (1,) zeros for frames
    obs_std: np.ndarray  # (S,) float32, std + 1e-6 as in the DT code; (1,) ones for frames
    discrete: bool
    action_dim: int  # A for Box; number of actions n for Discrete
    dataset_id: str = ""
    action_low: np.ndarray | None = None  # (A,) float32 Box bounds
    action_high: np.ndarray | None = None  # (A,) float32
    ref_min_score: float | None = None  # mean return of a random policy (D4RL convention)
    ref_max_score: float | None = None  # mean return of an expert policy
    eval_env_spec: EnvSpec | None = None  # evaluation env (falls back to the collection env), if known

    @property
    def state_dim(self) -> int:
        """Size of one step's observation: S, or 84 * 84 for frames."""
        return int(np.prod(self.observations.shape[1:]))

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """One step's observation shape: (S,), or (84, 84) for frames."""
        return tuple(int(n) for n in self.observations.shape[1:])

    @property
    def is_image(self) -> bool:
        """Observations are single 84x84 uint8 frames (stacked by the sampler)."""
        return _is_frames(self.observations)

    @property
    def num_steps(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_starts.shape[0])

    @property
    def max_episode_length(self) -> int:
        return int(self.episode_lengths.max())

    @property
    def episode_returns(self) -> np.ndarray:
        """(E,) float64 undiscounted return of each episode."""
        # Episodes are never empty (dropped at construction), so reduceat segments are well defined.
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    @property
    def dones(self) -> np.ndarray:
        """(N,) bool, terminations | truncations."""
        return self.terminations | self.truncations

    @property
    def has_reference_scores(self) -> bool:
        return self.ref_min_score is not None and self.ref_max_score is not None

    def normalized_score(self, returns: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """D4RL normalized score, 100 * (R - ref_min) / (ref_max - ref_min): 0 = random, 100 = expert.

        Unlike `minari.get_normalized_score`, which returns the 0..1 fraction.
        """
        if not self.has_reference_scores:
            raise ValueError(
                f"dataset {self.dataset_id!r} has no reference scores (ref_min_score/ref_max_score in its "
                f"Minari metadata), so normalized scores are undefined; report raw returns instead"
            )
        span = self.ref_max_score - self.ref_min_score
        if span == 0:
            raise ValueError(f"dataset {self.dataset_id!r} has ref_min_score == ref_max_score ({self.ref_min_score})")
        return 100.0 * (np.asarray(returns, dtype=np.float64) - self.ref_min_score) / span

    def make_eval_env(self, **kwargs) -> gym.Env:
        """gym.make the evaluation environment (what `dataset.recover_environment(eval_env=True)` gives)."""
        if self.eval_env_spec is None:
            raise ValueError(f"dataset {self.dataset_id!r} records no environment spec; cannot build an eval env")
        with warnings.catch_warnings():
            # Imported D4RL data evaluates on the v4 MuJoCo envs on purpose (their model is D4RL's): no "out of
            # date, upgrade to v5" warning at every make.
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            return gym.make(self.eval_env_spec, **kwargs)

    def top_fraction(self, fraction: float) -> EpisodeSet:
        """Filtered %BC (DT paper, Table 3): the highest-return episodes holding at most `fraction` of the
        steps (always at least the best episode), as the official DT code selects them. The observation
        mean and std stay the full dataset's, as there (computed before filtering); episodes keep their order."""
        if not 0 < fraction <= 1:
            raise ValueError(f"top fraction must be in (0, 1], got {fraction}")
        budget = max(int(fraction * self.num_steps), 1)
        order = np.argsort(self.episode_returns, kind="stable")[::-1]  # best first
        kept, steps = [int(order[0])], int(self.episode_lengths[order[0]])
        for e in order[1:]:
            if steps + int(self.episode_lengths[e]) > budget:
                break
            kept.append(int(e))
            steps += int(self.episode_lengths[e])
        kept.sort()
        rows = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(self.episode_starts[kept], self.episode_lengths[kept], strict=True)]
        )
        lengths = self.episode_lengths[kept]
        return replace(
            self,
            # Frames: read from the cache map without keeping its pages resident.
            observations=gather_frames(self.observations, rows) if self.is_image else self.observations[rows],
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            returns_to_go=self.returns_to_go[rows],
            timesteps=self.timesteps[rows],
            terminations=self.terminations[rows],
            truncations=self.truncations[rows],
            episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            episode_lengths=lengths,
        )

    def summary(self) -> dict:
        """Plain-Python description for logs and results.json."""
        returns = self.episode_returns
        return {
            "dataset_id": self.dataset_id,
            "episodes": self.num_episodes,
            "steps": self.num_steps,
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "discrete": self.discrete,
            "max_episode_length": self.max_episode_length,
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "return_min": float(returns.min()),
            "return_max": float(returns.max()),
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "normalized_score_mean": (
                float(self.normalized_score(returns).mean()) if self.has_reference_scores else None
            ),
        }


def _is_frames(obs: np.ndarray) -> bool:
    """(T, 84, 84) uint8: single grayscale frames, kept as they are (not flattened, not cast)."""
    return obs.dtype == np.uint8 and obs.ndim == 3 and obs.shape[1:] == FRAME_SHAPE


def _returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """(T,) undiscounted suffix sums, accumulated in float64."""
    return np.cumsum(rewards[::-1], dtype=np.float64)[::-1]


def episodes_from_arrays(
    observations: Sequence[np.ndarray],
    actions: Sequence[np.ndarray],
    rewards: Sequence[np.ndarray],
    terminations: Sequence[np.ndarray] | None = None,
    truncations: Sequence[np.ndarray] | None = None,
    *,
    discrete: bool = False,
    action_dim: int | None = None,
    dataset_id: str = "",
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    eval_env_spec: EnvSpec | None = None,
    frames: np.ndarray | None = None,
) -> EpisodeSet:
    """Build an EpisodeSet from per-episode arrays.

    Per episode: observations (T+1, ...) as Minari stores them, or (T, ...); actions (T, ...) or
    (T,) integers when `discrete`; rewards (T,). Missing termination flags default to False; missing
    truncation flags default to True on each episode's last step. Empty episodes are dropped.
    Observations (T, 84, 84) uint8 are frames and kept as they are; any other shape is flattened to float32.

    `frames`: instead of per-episode observations (then `observations` is None), the flat (N, 84, 84) uint8
    frames of all episodes in order, final observations already dropped; used as they are, without a copy.
    """
    n_ep = len(rewards)
    if frames is not None:
        if observations is not None or not _is_frames(frames):
            raise ValueError("frames must be (N, 84, 84) uint8, given instead of per-episode observations")
        observations = [None] * n_ep
    if not (len(observations) == len(actions) == n_ep):
        raise ValueError("observations, actions and rewards must hold the same number of episodes")
    obs_l, act_l, rew_l, rtg_l, ts_l, term_l, trunc_l, lengths = [], [], [], [], [], [], [], []
    for e in range(n_ep):
        rew = np.asarray(rewards[e], dtype=np.float64).reshape(-1)  # (T,)
        T = rew.shape[0]
        if T == 0:
            continue  # an empty episode has no step to sample or condition on
        if frames is None:
            obs = np.asarray(observations[e])
            if not _is_frames(obs):
                obs = obs.reshape(obs.shape[0], -1).astype(np.float32)  # flatten multi-dim Box observations: (T+1, S)
            if obs.shape[0] == T + 1:
                obs = obs[:T]  # drop the final observation: no action or return-to-go follows it
            elif obs.shape[0] != T:
                raise ValueError(f"episode {e}: {obs.shape[0]} observations for {T} rewards (expected {T + 1})")
            obs_l.append(obs)
        act = np.asarray(actions[e])
        if act.shape[0] != T:
            raise ValueError(f"episode {e}: {act.shape[0]} actions for {T} rewards")
        act = act.reshape(T).astype(np.int64) if discrete else act.reshape(T, -1).astype(np.float32)
        term = np.zeros(T, bool) if terminations is None else np.asarray(terminations[e], bool).reshape(T)
        if truncations is None:
            trunc = np.zeros(T, bool)
            trunc[-1] = not term[-1]
        else:
            trunc = np.asarray(truncations[e], bool).reshape(T)
        act_l.append(act)
        rew_l.append(rew)
        rtg_l.append(_returns_to_go(rew))
        ts_l.append(np.arange(T, dtype=np.int64))
        term_l.append(term)
        trunc_l.append(trunc)
        lengths.append(T)
    if not lengths:
        raise ValueError(f"dataset {dataset_id!r} has no steps (no episodes, or only empty ones)")

    if frames is None:
        if len({(o.shape[1:], o.dtype) for o in obs_l}) != 1:
            raise ValueError(f"dataset {dataset_id!r}: episodes have different observation shapes")
        obs_all = np.concatenate(obs_l)  # (N, S) or (N, 84, 84)
    elif frames.shape[0] != sum(lengths):
        raise ValueError(f"dataset {dataset_id!r}: {frames.shape[0]} frames for {sum(lengths)} steps")
    else:
        obs_all = frames
    actions_all = np.concatenate(act_l)  # (N, A) or (N,)
    if action_dim is None:
        action_dim = int(actions_all.max()) + 1 if discrete else int(actions_all.shape[1])
    lengths_arr = np.asarray(lengths, dtype=np.int64)  # (E,)
    starts = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]).astype(np.int64)  # (E,)
    if _is_frames(obs_all):
        # Frames are not normalized (the image encoder scales them to [0, 1], as the DT Atari code does):
        # mean 0 and std 1 make the evaluation's (obs - mean) / std the identity. Also spares a float64 copy.
        obs_mean, obs_std = np.zeros(1, np.float32), np.ones(1, np.float32)
    else:
        # Statistics over all observations of all episodes, in float64, as the DT code's state_mean/std.
        obs64 = obs_all.astype(np.float64)
        obs_mean, obs_std = obs64.mean(axis=0).astype(np.float32), (obs64.std(axis=0) + 1e-6).astype(np.float32)
    return EpisodeSet(
        observations=obs_all,
        actions=actions_all,
        rewards=np.concatenate(rew_l).astype(np.float32),
        returns_to_go=np.concatenate(rtg_l).astype(np.float32),
        timesteps=np.concatenate(ts_l),
        terminations=np.concatenate(term_l),
        truncations=np.concatenate(trunc_l),
        episode_starts=starts,
        episode_lengths=lengths_arr,
        obs_mean=obs_mean,
        obs_std=obs_std,
        discrete=discrete,
        action_dim=int(action_dim),
        dataset_id=dataset_id,
        action_low=None if action_low is None else np.asarray(action_low, np.float32).reshape(-1),
        action_high=None if action_high is None else np.asarray(action_high, np.float32).reshape(-1),
        ref_min_score=None if ref_min_score is None else float(ref_min_score),
        ref_max_score=None if ref_max_score is None else float(ref_max_score),
        eval_env_spec=eval_env_spec,
    )


def _parse_env_spec(spec_json: str | None) -> EnvSpec | None:
    """EnvSpec from Minari's metadata JSON, with Minari's own gymnasium<1.0 compatibility edits."""
    if spec_json is None:
        return None
    spec_json = (
        spec_json.replace('"order_enforce": true,', "")
        .replace('"apply_api_compatibility": false,', "")
        .replace('"autoreset": false, ', "")
    )
    try:
        return EnvSpec.from_json(spec_json)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as err:
        warnings.warn(f"could not parse the dataset's env spec ({err}); no eval env recorded", stacklevel=3)
        return None


def episodes_from_minari(dataset: minari.MinariDataset) -> EpisodeSet:
    """Read every episode of a Minari dataset into an EpisodeSet."""
    dataset_id = dataset.id
    obs_space, act_space = dataset.observation_space, dataset.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise ValueError(f"dataset {dataset_id} has observation space {obs_space}; {_SUPPORTED}")
    if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ValueError(f"dataset {dataset_id} has action space {act_space}; {_SUPPORTED}")
    discrete = isinstance(act_space, gym.spaces.Discrete)
    if discrete and int(act_space.start) != 0:
        raise ValueError(
            f"dataset {dataset_id} has action space {act_space} with start={act_space.start}; "
            f"decision-seq supports Discrete actions numbered from 0"
        )
    if dataset.total_episodes == 0:
        raise ValueError(f"dataset {dataset_id} has no episodes")

    is_frames = obs_space.dtype == np.uint8 and obs_space.shape == FRAME_SHAPE
    steps: list[tuple] = []  # per episode: actions, rewards, terminations, truncations
    observations: list[np.ndarray] = []
    try:
        if is_frames:
            frames = _load_frames(dataset, steps)
        else:
            frames = None
            for ep in dataset.iterate_episodes():
                observations.append(ep.observations)  # (T+1, ...)
                steps.append((ep.actions, ep.rewards, ep.terminations, ep.truncations))
    except (OSError, KeyError) as err:  # a file damaged after the dataset was opened
        raise corrupt_dataset_error(dataset_id, err) from err
    actions, rewards, terminations, truncations = (list(field) for field in zip(*steps, strict=True))

    # storage.metadata re-reads metadata.json; ref scores are only there when the creator gave them.
    metadata = dataset.storage.metadata
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    # Same fallback as MinariDataset.recover_environment(eval_env=True).
    eval_spec = _parse_env_spec(metadata.get("eval_env_spec") or metadata.get("env_spec"))
    return episodes_from_arrays(
        None if frames is not None else observations,
        actions,
        rewards,
        terminations,
        truncations,
        discrete=discrete,
        action_dim=int(act_space.n) if discrete else int(np.prod(act_space.shape)),
        dataset_id=dataset_id,
        action_low=None if discrete else act_space.low,
        action_high=None if discrete else act_space.high,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        eval_env_spec=eval_spec,
        frames=frames,
    )


def _load_frames(dataset: minari.MinariDataset, steps: list[tuple]) -> np.ndarray:
    """A frame dataset's (N, 84, 84) uint8 frames, each episode's final one dropped; appends each episode's
    (actions, rewards, terminations, truncations) to `steps`.

    The frames come from the dataset's frame cache (data/frames.py), a memory map, written on the first load.
    Where it cannot be written (a read-only dataset directory, a full disk) they are copied into one
    preallocated array instead, episode by episode: never per-episode arrays plus a concatenation, which
    would need twice the memory (6.6 GiB at 500k steps)."""
    n = dataset.total_steps
    data_dir = Path(dataset.storage.data_path)
    cache = frame_cache_path(data_dir)
    # The cache holds every episode of the dataset's files: a filtered MinariDataset (a subset) does not use it.
    whole = len(dataset.episode_indices) == dataset.storage.total_episodes
    frames = open_frame_cache(cache, n, newer_than=data_dir / "main_data.hdf5") if whole else None

    def episodes():
        for ep in dataset.iterate_episodes():
            T = len(ep.rewards)
            if ep.observations.shape != (T + 1, *FRAME_SHAPE):
                raise ValueError(
                    f"dataset {dataset.id}: an episode has observations {ep.observations.shape} for {T} steps, "
                    f"expected ({T + 1}, 84, 84)"
                )
            steps.append((ep.actions, ep.rewards, ep.terminations, ep.truncations))
            yield ep.observations[:T]

    if frames is not None:  # actions and rewards still come from the HDF5 file
        for _ in episodes():
            pass
        return frames
    if whole:
        try:
            return write_frame_cache(cache, n, episodes())
        except OSError as err:
            if err.errno not in _CANNOT_WRITE:
                raise  # h5py's read errors are OSErrors too: a damaged dataset
            warnings.warn(f"cannot write the frame cache {cache} ({err}); frames are held in memory", stacklevel=3)
        steps.clear()
    frames = np.empty((n, *FRAME_SHAPE), np.uint8)
    filled = 0
    for ep_frames in episodes():
        if filled + len(ep_frames) > n:
            raise ValueError(f"dataset {dataset.id}: the episodes hold more steps than total_steps={n}")
        frames[filled : filled + len(ep_frames)] = ep_frames
        filled += len(ep_frames)
    return frames[:filled]


def load_minari_dataset(dataset_id: str, download: bool = False) -> minari.MinariDataset:
    """`minari.load_dataset`, building built-in ids locally and explaining what to do when one is missing."""
    from decision_seq.datasets.builtin import BUILTIN, ensure_builtin_dataset  # builders never import this module
    from decision_seq.datasets.minari_io import remote_call

    try:
        if dataset_id in BUILTIN:
            # Built-in ids are never on the remote hub: build them (once) instead of downloading.
            return ensure_builtin_dataset(dataset_id)
        if download:  # no network: RemoteUnavailableError, one line
            return remote_call(minari.load_dataset, dataset_id, download=True)
        return minari.load_dataset(dataset_id)
    except FileNotFoundError as err:
        if dataset_id in BUILTIN:
            raise
        path = get_dataset_path(dataset_id)
        local_only = _local_only_hint(dataset_id)
        if local_only:  # made here (a build or an import), never on Minari's remote: say how to make it
            raise DatasetNotFoundError(
                f"dataset {dataset_id!r} was not found locally: looked in {path} (the Minari root is "
                f"$MINARI_DATASETS_PATH, default ~/.minari/datasets); make it with {local_only}"
            ) from err
        raise DatasetNotFoundError(
            f"Minari dataset {dataset_id!r} was not found locally: looked in {path} (the Minari root is "
            f"$MINARI_DATASETS_PATH, default ~/.minari/datasets). Get it with "
            f"`decision-seq train dataset.id={dataset_id} dataset.download=true` or `minari download {dataset_id}` "
            f"(both need network access), or use a built-in dataset that is built locally: "
            f"{', '.join(sorted(BUILTIN))}. ({err})"
        ) from err
    except (OSError, KeyError) as err:  # h5py: truncated file, bad signature, missing groups
        raise corrupt_dataset_error(dataset_id, err) from err


def _local_only_hint(dataset_id: str) -> str | None:
    """How to make a dataset that exists only locally (our builds and imports, as the catalog lists them), or
    None for the rest."""
    from decision_seq.datasets.catalog import REMOTE_KIND, catalog_entry  # the catalog imports this module

    entry = catalog_entry(dataset_id)
    return entry.how_to_get() if entry is not None and entry.kind != REMOTE_KIND else None


def corrupt_dataset_error(dataset_id: str, err: BaseException) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"Minari dataset {dataset_id!r} at {get_dataset_path(dataset_id)} cannot be read ({type(err).__name__}: "
        f"{err}); its files are corrupt or incomplete: delete that directory and build or download it again"
    )


def load_episodes(dataset_id: str, download: bool = False) -> EpisodeSet:
    """Load (or build) a dataset by id and convert it to an EpisodeSet. Minari's RGB Atari sets
    (atari/<game>/<name>-vN) load as their cached 84x84 grayscale copy, made on first use."""
    from decision_seq.datasets.minari_atari import resolve_atari_id  # here: that module imports this one

    resolved = resolve_atari_id(dataset_id, download=download)
    return episodes_from_minari(load_minari_dataset(resolved, download=download and resolved == dataset_id))
