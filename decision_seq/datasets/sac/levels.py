"""The data levels of a SAC build, following D4RL's MuJoCo recipe (Fu et al. 2020, section 5 and appendix).

`build_report` checks every input, trains (or reuses) the SAC run (agent.py), measures the reference
returns, picks the medium and expert snapshots (`select_snapshots`), then collects each requested level
and writes it as a Minari dataset (minari_io.create_dataset_atomically):

- `random`: uniform random actions (departure: D4RL used a randomly initialized policy);
- `medium` / `expert`: the chosen snapshot with sampled (stochastic) actions, as D4RL;
- `medium-replay`: the replay buffer up to the medium snapshot (`replay_episodes`);
- `medium-expert`: the medium and expert episodes together (collected once, reused).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.storage import get_dataset_path
from tqdm.auto import tqdm

from decision_seq.datasets.minari_io import AUTHOR, AUTHOR_EMAIL, create_dataset_atomically, dataset_exists_locally
from decision_seq.datasets.rollouts import REFERENCE_SEED, episode_return, mean_return, rollout
from decision_seq.datasets.sac.agent import actor_act, build_context, load_snapshot_actor, train_behaviour_agent
from decision_seq.datasets.sac.config import (
    EXPERT_CHOICES,
    SAC_SETTINGS,
    BuildConfig,
    check_env,
    dataset_id_for,
    default_work_dir,
    derived_seed,
    parse_levels,
)
from decision_seq.datasets.sac.workdir import ReplayData, Snapshot, load_replay

log = logging.getLogger(__name__)

_CODE_PERMALINK = "decision_seq/datasets/sac/ (decision-seq package)"


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------


def _collect(
    env_id: str, act: Callable[[np.ndarray], np.ndarray], num_steps: int, seed_base: int, *, desc: str, progress: bool
) -> list[EpisodeBuffer]:
    """Whole episodes (reset seeds seed_base + i) until `num_steps` env steps; the last may be cut."""
    env = gym.make(env_id)
    episodes: list[EpisodeBuffer] = []
    steps = 0
    try:
        with tqdm(total=num_steps, desc=desc, unit="step", disable=not progress) as bar:
            while steps < num_steps:
                episode = rollout(env, act, seed_base + len(episodes), max_steps=num_steps - steps)
                episodes.append(episode)
                steps += len(episode.rewards)
                bar.update(len(episode.rewards))
    finally:
        env.close()
    return episodes


def _uniform_act(act_space: gym.spaces.Box, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    low, high = act_space.low, act_space.high
    return lambda obs: rng.uniform(low, high).astype(act_space.dtype)  # (A,)


def select_snapshots(
    snapshots: Sequence[Snapshot], random_return: float, *, expert: str = "best", medium_fraction: float = 1 / 3
) -> tuple[Snapshot, Snapshot]:
    """(medium, expert) snapshots.

    expert: "best" = highest evaluation return (first of ties), "final" = the last snapshot.
    Departure from D4RL, which used the final policy of a run trained to convergence: with a shorter
    budget SAC's return still swings between snapshots, and the best one is the better expert
    (ref_max_score is re-measured on separate episodes, so picking the maximum does not inflate it).
    medium: the first snapshot (not after the expert) whose evaluation return reaches
    random + medium_fraction * (expert - random). D4RL stopped at "about 1/3 of the expert", in raw
    return where random is about 0; measuring from the random return keeps the rule meaningful for
    tasks with negative returns.
    """
    if not snapshots:
        raise ValueError("the SAC run has no snapshots")
    if expert == "best":
        chosen = max(snapshots, key=lambda s: s.eval_return)
    elif expert == "final":
        chosen = snapshots[-1]
    else:
        raise ValueError(f"expert must be one of {', '.join(EXPERT_CHOICES)}, got {expert!r}")
    if chosen.eval_return <= random_return:
        log.warning(
            "the expert snapshot (step %d, return %.1f) does not beat the random policy (%.1f); "
            "train longer (--train-steps)",
            chosen.step,
            chosen.eval_return,
            random_return,
        )
    threshold = random_return + medium_fraction * (chosen.eval_return - random_return)
    medium = next((s for s in snapshots if s.step <= chosen.step and s.eval_return >= threshold), chosen)
    return medium, chosen


def replay_episodes(data: ReplayData, act_space: gym.spaces.Box) -> list[EpisodeBuffer]:
    """Split replay transitions into Minari episodes.

    Episodes end at terminations and truncations, where the stored next observation does not continue
    into the following transition (a resumed run restarted the env), and at the end of the data; the
    last two are marked truncated. Actions are rescaled from SB3's [-1, 1] to the env's bounds exactly
    as SB3 did before stepping the env.
    """
    n = data.rewards.shape[0]
    low, high = act_space.low, act_space.high
    actions = low + 0.5 * (data.actions + 1.0) * (high - low)  # SB3 BasePolicy.unscale_action
    ends = data.terminations | data.truncations  # (N,)
    ends[:-1] |= np.any(data.next_observations[:-1] != data.observations[1:], axis=1)
    ends[-1] = True
    episodes, start = [], 0
    for end in np.flatnonzero(ends):
        sl = slice(start, end + 1)
        truncations = data.truncations[sl].copy()
        truncations[-1] |= not data.terminations[end]  # cut episodes count as truncated
        episodes.append(
            EpisodeBuffer(
                observations=np.concatenate([data.observations[sl], data.next_observations[end : end + 1]]),  # (T+1, S)
                actions=actions[sl].astype(act_space.dtype),  # (T, A)
                rewards=data.rewards[sl].astype(np.float64),  # float32 in the SB3 buffer
                terminations=data.terminations[sl].copy(),
                truncations=truncations,
                infos={},
            )
        )
        start = end + 1
    assert start == n
    return episodes


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------


@dataclass
class LevelSummary:
    level: str
    dataset_id: str
    episodes: int
    steps: int
    mean_return: float
    normalized_mean: float  # 100 * (mean - ref_min) / (ref_max - ref_min)
    seconds: float
    snapshot_steps: list[int]  # SAC snapshots behind the data (medium-replay: the replay prefix's end)


@dataclass
class BuildReport:
    env_id: str
    work_dir: Path
    ref_min_score: float
    ref_max_score: float
    medium_step: int
    expert_step: int
    snapshots: list[Snapshot]
    levels: list[LevelSummary]
    train_seconds: float  # spent training in this call (0 when a finished run was reused)


def _level_sources(config: BuildConfig, medium: Snapshot, expert: Snapshot) -> dict[str, tuple[str, list[int]]]:
    """Level -> (where its data comes from, for the description; the SAC snapshot steps behind it)."""
    return {
        "random": ("uniform random actions", []),
        "medium": (
            f"the SAC snapshot at step {medium.step}, the first to reach {config.medium_fraction:.2f} of "
            f"the way from the random to the expert evaluation return, with sampled (stochastic) "
            f"actions",
            [medium.step],
        ),
        "medium-replay": (
            f"every transition in the SAC replay buffer before step {medium.step} (the medium "
            f"snapshot), split into episodes",
            [medium.step],
        ),
        "expert": (
            f"the SAC snapshot at step {expert.step} ({config.expert} evaluation return), with sampled "
            f"(stochastic) actions",
            [expert.step],
        ),
        "medium-expert": (
            f"the medium (snapshot {medium.step}) and expert (snapshot {expert.step}) episodes together",
            [medium.step, expert.step],
        ),
    }


def build_report(
    env_id: str,
    levels: Sequence[str],
    config: BuildConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    work_dir: Path | str | None = None,
) -> BuildReport:
    """Build the D4RL-style `levels` of `env_id` as local Minari datasets; returns each level's size, returns
    and timing.

    Raises ValueError for an unknown env, unsupported spaces, an unknown level, a bad budget or a work
    dir holding another run, and FileExistsError naming any requested id that exists locally (unless
    `overwrite`), all before any training. `work_dir` (default `default_work_dir(env_id, seed)`) holds
    the resumable SAC run; every level needs it, `random` included, since ref_max_score is the
    expert's return.
    """
    import stable_baselines3
    import torch

    # Check everything before any training.
    levels = parse_levels(levels)
    config.validate()
    obs_space, act_space = check_env(env_id)
    ids = {level: dataset_id_for(env_id, level, config.namespace) for level in levels}
    existing = [i for i in ids.values() if dataset_exists_locally(i)]
    if existing and not overwrite:
        raise FileExistsError(
            f"dataset{'s' if len(existing) > 1 else ''} {', '.join(existing)} already "
            f"exist{'' if len(existing) > 1 else 's'} under {get_dataset_path()}; pass "
            f"--overwrite to replace {'them' if len(existing) > 1 else 'it'}"
        )
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(env_id, config.seed)
    sb3 = f"SAC (stable-baselines3 {stable_baselines3.__version__})"

    with build_context(config.num_threads):
        t_train = time.perf_counter()
        run = train_behaviour_agent(env_id, config, work_dir, progress=progress)
        train_seconds = time.perf_counter() - t_train

        # Reference scores, on the same fixed-seed episodes for every level of the build.
        ref_min = mean_return(
            env_id,
            lambda i: _uniform_act(act_space, np.random.default_rng([REFERENCE_SEED, i])),
            config.reference_episodes,
        )
        medium, expert = select_snapshots(
            run.snapshots, ref_min, expert=config.expert, medium_fraction=config.medium_fraction
        )
        expert_policy = load_snapshot_actor(run, expert.step, obs_space, act_space)
        medium_policy = load_snapshot_actor(run, medium.step, obs_space, act_space)
        ref_max = mean_return(
            env_id,
            lambda i: actor_act(expert_policy.actor, expert_policy.unscale_action, True),
            config.reference_episodes,
        )
        log.info(
            "%s: ref_min_score (uniform random) %.1f, ref_max_score (expert snapshot %d) %.1f; medium "
            "snapshot %d (evaluation return %.1f)",
            env_id,
            ref_min,
            expert.step,
            ref_max,
            medium.step,
            medium.eval_return,
        )

        def collect(level: str) -> list[EpisodeBuffer]:
            base = derived_seed(config.seed, level)
            desc = f"{level} {env_id}"
            if level == "random":
                # Departure: D4RL's random data came from a randomly initialized policy; ours from uniform
                # random actions, the policy that defines ref_min_score.
                act = _uniform_act(act_space, np.random.default_rng(base))
                return _collect(env_id, act, config.steps_per_level, base, desc=desc, progress=progress)
            policy = medium_policy if level == "medium" else expert_policy
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(base)  # SAC's sampled actions draw from torch's global RNG
                act = actor_act(policy.actor, policy.unscale_action, deterministic=False)  # stochastic, as D4RL
                return _collect(env_id, act, config.steps_per_level, base, desc=desc, progress=progress)

        snapshot_evals = [{"step": s.step, "eval_return": s.eval_return} for s in run.snapshots]
        sources = _level_sources(config, medium, expert)
        cache: dict[str, list[EpisodeBuffer]] = {}
        summaries = []
        for level in levels:
            t0 = time.perf_counter()
            if level == "medium-replay":
                episodes = replay_episodes(load_replay(work_dir, medium.step), act_space)
            elif level == "medium-expert":
                for part in ("medium", "expert"):
                    if part not in cache:
                        cache[part] = collect(part)
                episodes = cache["medium"] + cache["expert"]
            else:
                episodes = cache.pop(level, None) or collect(level)
                if level in ("medium", "expert") and "medium-expert" in levels[levels.index(level) :]:
                    cache[level] = episodes  # reused by medium-expert later in this build
            returns = np.array([episode_return(e) for e in episodes])
            steps = int(sum(len(e.rewards) for e in episodes))
            description, snapshot_steps = sources[level]
            span = ref_max - ref_min
            normalized = float(100.0 * (returns.mean() - ref_min) / span) if span != 0 else math.nan
            build_meta = {
                "env_id": env_id,
                "level": level,
                "seed": config.seed,
                "train_steps": config.train_steps,
                "learning_starts": config.learning_starts,
                "snapshot_every": config.snapshot_every,
                "eval_episodes": config.eval_episodes,
                "steps_per_level": config.steps_per_level,
                "reference_episodes": config.reference_episodes,
                "expert_choice": config.expert,
                "medium_fraction": config.medium_fraction,
                "medium_snapshot": medium.step,
                "expert_snapshot": expert.step,
                "snapshot_steps": snapshot_steps,
                "ref_min_score": ref_min,
                "ref_max_score": ref_max,
                "return_mean": float(returns.mean()),
                "return_std": float(returns.std()),
                "normalized_mean": normalized,
                "sac": dict(SAC_SETTINGS),
                "stable_baselines3": stable_baselines3.__version__,
                "snapshots": snapshot_evals,
            }
            create_dataset_atomically(
                ids[level],
                episodes,
                overwrite=overwrite,
                extra_metadata={"decision_seq_build": build_meta},
                env=env_id,
                eval_env=env_id,
                ref_min_score=ref_min,
                ref_max_score=ref_max,
                num_episodes_average_score=config.reference_episodes,
                algorithm_name=f"{sb3} {level}" if level != "random" else "uniform random actions (random)",
                author=AUTHOR,
                author_email=AUTHOR_EMAIL,
                code_permalink=_CODE_PERMALINK,
                description=(
                    f"D4RL-style '{level}' data on {env_id} (seed {config.seed}): {description}. Behaviour "
                    f"agent: {sb3} trained for {config.train_steps} env steps ({config.learning_starts} "
                    f"random warm-up steps), a snapshot every {config.snapshot_every} steps evaluated over "
                    f"{config.eval_episodes} deterministic episodes; medium snapshot {medium.step}, expert "
                    f"snapshot {expert.step}. {config.steps_per_level} env steps per collected level (whole "
                    f"episodes; the one cut by the budget is marked truncated). ref_min_score: uniform "
                    f"random policy ({ref_min:.1f}); ref_max_score: the expert snapshot with deterministic "
                    f"actions ({ref_max:.1f}); each the mean over {config.reference_episodes} fixed-seed "
                    f"episodes. Built by `decision-seq datasets build`."
                ),
            )
            seconds = time.perf_counter() - t0
            log.info(
                "%s: %d episodes, %d steps, mean return %.1f (normalized %.1f) in %.1f s",
                ids[level],
                len(episodes),
                steps,
                returns.mean(),
                normalized,
                seconds,
            )
            summaries.append(
                LevelSummary(
                    level, ids[level], len(episodes), steps, float(returns.mean()), normalized, seconds, snapshot_steps
                )
            )
            del episodes

    return BuildReport(
        env_id=env_id,
        work_dir=work_dir,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        medium_step=medium.step,
        expert_step=expert.step,
        snapshots=list(run.snapshots),
        levels=summaries,
        train_seconds=train_seconds,
    )
