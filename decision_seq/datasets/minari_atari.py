"""Minari's own Atari sets (`atari/<game>/<name>-v0`) in the suite's frame format, converted once and cached.

Minari's Atari datasets (CleanRL PPO-Impala experts, 10 episodes each) store raw 210x160x3 RGB frames of
`ALE/<Game>-v5` with frameskip 4 inside the ALE (no max-pooling), no sticky actions and no reference
scores. Training reads single 84x84 grayscale frames (decision_seq/data/frames.py), so the first load of
such an id converts every frame once (cv2 RGB->gray, then an INTER_AREA resize to 84x84, the calls of
SB3's WarpFrame and of Gymnasium's AtariPreprocessing resize) and writes the result as a local dataset
`decision-seq/atari-<game>/minari-<name>-v0` (naming.minari_atari_cache_id) in the format of
`import-dqn-replay`; later loads read that copy. The loader calls `resolve_atari_id` first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from decision_seq.data.frames import FRAME_SHAPE, FRAME_STACK
from decision_seq.datasets import naming
from decision_seq.datasets.dqn_replay import AtariGame, check_game, eval_env_spec, write_frames_dataset
from decision_seq.datasets.minari_io import dataset_exists_locally

log = logging.getLogger(__name__)

_CODE_PERMALINK = "decision_seq/datasets/minari_atari.py (decision-seq package)"

RAW_SHAPE = (210, 160, 3)  # the ALE's RGB screen


def to_frame(rgb: np.ndarray) -> np.ndarray:
    """(210, 160, 3) uint8 RGB screen -> (84, 84) uint8 grayscale frame.

    Departure from the evaluation env's frames: AtariPreprocessing takes ALE's own grayscale screen (its
    palette's luminance) and max-pools the last two skipped frames; Minari kept neither, only RGB screens,
    so cv2's RGB->gray (ITU-R 601 weights, as SB3's WarpFrame) stands in, close but not bit-identical."""
    import cv2  # the atari extra

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, FRAME_SHAPE[::-1], interpolation=cv2.INTER_AREA)  # cv2 takes (width, height)


def minari_eval_env_spec(game: AtariGame) -> EnvSpec:
    """Our evaluation protocol with sticky actions off, as Minari's Atari data was collected (its env:
    repeat_action_probability 0). Departure from DQN-Replay's protocol (Machado et al. 2018: 0.25), kept so
    the policy is evaluated where its data came from; frame skip 4, no-op starts and 84x84 gray are ours."""
    spec = eval_env_spec(game)
    return dataclasses.replace(spec, kwargs={**spec.kwargs, "repeat_action_probability": 0.0})


def _converted(source: minari.MinariDataset, spec: AtariGame, raw_returns: list[float]) -> Iterator[EpisodeBuffer]:
    for episode in source.iterate_episodes():
        obs = np.asarray(episode.observations)  # (T+1, 210, 160, 3)
        actions = np.asarray(episode.actions, np.int64).reshape(-1)
        bad = (actions < 0) | (actions >= spec.num_actions)
        if bad.any():
            raise ValueError(
                f"{source.spec.dataset_id}: episode {episode.id} has action {int(actions[bad][0])}, outside "
                f"{spec.name}'s {spec.num_actions} actions"
            )
        rewards = np.asarray(episode.rewards, np.float64)
        raw_returns.append(float(rewards.sum()))
        yield EpisodeBuffer(
            observations=np.stack([to_frame(f) for f in obs]),  # (T+1, 84, 84)
            actions=actions,
            rewards=np.sign(rewards),  # clipped to [-1, 1] as DQN-Replay and `build-atari` store rewards
            terminations=np.asarray(episode.terminations, bool),
            truncations=np.asarray(episode.truncations, bool),
            infos={},
        )


def convert_minari_atari(
    source_id: str, cache_id: str, spec: AtariGame, *, progress: bool = True
) -> minari.MinariDataset:
    """Convert the local Minari Atari set `source_id` into `cache_id` (84x84 gray frames), atomically."""
    from decision_seq.data.episodes import load_minari_dataset  # lazily: data.episodes calls resolve_atari_id

    source = load_minari_dataset(source_id)
    obs_space, act_space = source.observation_space, source.action_space
    if getattr(obs_space, "shape", None) != RAW_SHAPE or getattr(act_space, "n", None) != spec.num_actions:
        raise ValueError(
            f"{source_id}: observations {obs_space} and actions {act_space}; expected Minari's Atari format, "
            f"Box(0, 255, {RAW_SHAPE}, uint8) screens and Discrete({spec.num_actions}) for {spec.name}"
        )
    meta = source.storage.metadata
    raw_returns: list[float] = []
    buffers = tqdm(
        _converted(source, spec, raw_returns),
        total=source.total_episodes,
        desc=f"converting {source_id} to 84x84 gray",
        unit="ep",
        disable=not progress,
    )
    description = (
        f"{source_id} (Minari) with each 210x160 RGB screen converted once to an 84x84 grayscale frame (cv2 "
        f"RGB2GRAY, INTER_AREA resize); one frame per step (stack the last {FRAME_STACK}); rewards clipped to "
        f"[-1, 1]. Evaluation: {spec.env_id} without sticky actions (as the data was collected), frame skip 4, "
        f"30 no-op starts. Reference scores: random {spec.random_score}, gamer {spec.gamer_score} (the source "
        "has none; normalized = gamer-normalized)."
    )
    dataset = write_frames_dataset(
        cache_id,
        buffers,
        spec=spec,
        eval_env=minari_eval_env_spec(spec),
        extra_metadata={
            "minari_atari": {
                "source_id": source_id,
                "source_minari_version": meta.get("minari_version"),
                "source_algorithm": meta.get("algorithm_name"),
                "source_env": (source.spec.env_spec.id if source.spec.env_spec else None),
                "source_total_steps": int(source.total_steps),
                "conversion": "cv2.cvtColor(RGB2GRAY) then cv2.resize(84x84, INTER_AREA)",
                "rewards": "clipped to [-1, 1] (sign); raw_returns are the source's episode returns",
                "raw_returns": raw_returns,
            }
        },
        algorithm_name=f"{meta.get('algorithm_name') or 'unknown'} (Minari {source_id})",
        description=description,
        code_permalink=_CODE_PERMALINK,
    )
    log.info("converted %s to %s (%d episodes, cached)", source_id, cache_id, dataset.total_episodes)
    return dataset


def resolve_atari_id(dataset_id: str, download: bool = False, progress: bool = True) -> str:
    """The id to load: `dataset_id` itself unless it is a Minari Atari id, then its converted copy, made on
    first use (from the local source, downloaded first when `download`). Other ids pass through untouched."""
    m = naming.MINARI_ATARI_ID.match(dataset_id)
    if m is None:
        return dataset_id
    spec = check_game(m["game"])  # before any download: an unknown game has no reference scores
    cache_id = naming.minari_atari_cache_id(dataset_id)
    if dataset_exists_locally(cache_id):
        return cache_id
    if download and not dataset_exists_locally(dataset_id):
        from decision_seq.data.episodes import load_minari_dataset

        load_minari_dataset(dataset_id, download=True)  # no network: one-line RemoteUnavailableError
    convert_minari_atari(dataset_id, cache_id, spec, progress=progress)
    return cache_id
