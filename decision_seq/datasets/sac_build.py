"""D4RL-style datasets from a SAC behaviour agent: `decision-seq datasets build ENV --levels ...`.

Follows the MuJoCo recipe of D4RL (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven
Reinforcement Learning", section 5 and appendix): one Soft Actor-Critic run (Haarnoja et al. 2018)
is trained online and its policy snapshots generate the data levels

- `random`: uniform random actions;
- `medium`: the first snapshot whose evaluation return reaches about 1/3 of the expert's
  (D4RL: "early-stopping the training" at about 1/3 of expert performance);
- `medium-replay`: every transition in SAC's replay buffer up to the medium snapshot, split into
  episodes at terminations and truncations;
- `expert`: the trained policy;
- `medium-expert`: the medium and expert episodes together.

The medium and expert data are generated with the policy's *sampled* (stochastic) actions, as D4RL
did; snapshots are evaluated, and `ref_max_score` is measured, with the deterministic (mean) action.

Why stable-baselines3's SAC: it is a well-kept, tested reference implementation, SAC is the
algorithm D4RL itself used for its MuJoCo datasets, and it is built for continuous (Box) actions.
Its defaults are the standard SAC hyperparameters of Haarnoja et al. (2018) that D4RL's rlkit agents
used (two 256-unit hidden layers, Adam lr 3e-4, batch 256, gamma 0.99, tau 0.005, one gradient step
per env step, learned entropy temperature); we pass them explicitly (`_SAC_SETTINGS`) so that an
SB3 default change cannot alter a build silently. Builds are bit-reproducible on the CPU for a
given seed (single torch thread by default); a resumed run differs from an uninterrupted one only
after the resume point (the env restarts there).

Every level is written as a real Minari dataset `<namespace>/<env name>/<level>-v0` (atomically,
through `create_dataset_atomically`) with the env id as `env` and `eval_env`, `ref_min_score` = mean
return of the uniform random policy and `ref_max_score` = mean return of the expert policy (both on
the same fixed-seed episodes, the same numbers for every level of one build), and a
`decision_seq_build` metadata entry with the build's settings, snapshot steps and returns.

Training state lives in a work dir and is committed atomically every `snapshot_every` steps, so a
rerun of the same command resumes where an interrupted one stopped, and a finished run is reused
(only the cheap data collection is redone):

    work_dir/
      state.json                   commit point: settings, step, snapshots + eval returns, replay
                                   chunks, RNG states, current agent file
      agent-<step>.pt              SAC networks, optimizers, entropy temperature, torch RNG
      snapshots/actor-<step>.pt    policy snapshots (actor state dict)
      replay/<start>-<end>.npz     the replay buffer in append-only chunks (SB3 layout: actions
                                   scaled to [-1, 1])

Files are written to a temporary name and renamed; `torch.load(weights_only=True)` and
`np.load(allow_pickle=False)` read them back, so nothing unpickles arbitrary objects.

Departures from D4RL (each is also commented where it happens):
- Gymnasium's v5 MuJoCo envs (`mujoco` bindings) instead of gym's v2/v3 (`mujoco-py`).
- Default SAC budget 300k env steps (D4RL trained its SAC agents to completion; 1M+ steps is typical
  for SAC on MuJoCo), so that a full Hopper-v5 build takes about 1.5 hours on a 2-core CPU (see
  `BuildConfig`).
- `random` uses uniform random actions (D4RL: a randomly initialized policy), the same policy that
  defines `ref_min_score`.
- The medium threshold is measured between the random and the expert return (normalized score
  1/3), not as a third of the raw expert return, so it is defined for negative-return tasks too.
- `expert` is the best-evaluated snapshot by default (D4RL: the final policy of a converged run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.storage import get_dataset_path
from tqdm.auto import tqdm

from decision_seq.datasets.builtin import (
    _AUTHOR,
    _AUTHOR_EMAIL,
    _REFERENCE_SEED,
    _mean_return,
    _rollout,
    create_dataset_atomically,
    dataset_exists_locally,
)
from decision_seq.utils.fileio import atomic_write

log = logging.getLogger(__name__)

LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
DEFAULT_NAMESPACE = "decision-seq"
EXPERT_CHOICES = ("best", "final")

_CODE_PERMALINK = "decision_seq/data/factory.py (decision-seq package)"
_STATE_FORMAT = "decision-seq-sac-build/1"

# Standard SAC hyperparameters (Haarnoja et al. 2018, as in D4RL's rlkit agents) = SB3's SAC defaults.
_SAC_SETTINGS = {
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


# --------------------------------------------------------------------------------------------------
# Configuration and validation
# --------------------------------------------------------------------------------------------------


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
    namespace: str = DEFAULT_NAMESPACE
    device: str = "cpu"  # torch device of the SAC updates
    num_threads: int = 1  # torch threads during the build: on 2 shared cores 1 is ~10x faster than 2

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        for name in ("train_steps", "steps_per_level", "snapshot_every", "eval_episodes", "reference_episodes",
                     "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.learning_starts, bool) or not isinstance(self.learning_starts, int) \
                or not 0 <= self.learning_starts < self.train_steps:
            raise ValueError(f"learning_starts must be an integer in [0, train_steps={self.train_steps}), "
                             f"got {self.learning_starts!r}")
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
        return {"env_id": env_id, "seed": self.seed, "train_steps": self.train_steps,
                "snapshot_every": self.snapshot_every, "eval_episodes": self.eval_episodes,
                "learning_starts": self.learning_starts, "sac": dict(_SAC_SETTINGS)}


def parse_levels(text: str | Sequence[str]) -> list[str]:
    """'random,medium' (or a list) -> ['random', 'medium']: stripped, de-duplicated, each a valid level."""
    items = text.split(",") if isinstance(text, str) else list(text)
    levels: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if item not in LEVELS:
            raise ValueError(f"unknown level {item!r}; valid levels: {', '.join(LEVELS)}")
        if item not in levels:
            levels.append(item)
    if not levels:
        raise ValueError(f"no level given; valid levels: {', '.join(LEVELS)}")
    return levels


def dataset_id_for(env_id: str, level: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Minari id of one level: ('Hopper-v5', 'medium-replay') -> 'decision-seq/hopper/medium-replay-v0'.

    The env name is lowercased and loses its version and namespace; the full env id is recorded in
    the dataset's env spec and metadata.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; valid levels: {', '.join(LEVELS)}")
    try:
        _, name, _ = gym.envs.registration.parse_env_id(env_id)
    except gym.error.Error as err:
        raise ValueError(f"malformed Gymnasium environment id {env_id!r}: {err}") from None
    return f"{namespace}/{name.lower()}/{level}-v0"


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
        raise ValueError(f"{env_id} has observation space {obs_space}; the dataset factory supports flat "
                         f"(1-D) Box observations only")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(f"{env_id} has action space {act_space}; the SAC behaviour agent needs a flat Box "
                         f"(continuous) action space")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise ValueError(f"{env_id} has unbounded actions {act_space}; SAC squashes its actions into finite bounds")
    return obs_space, act_space


def default_work_dir(env_id: str, seed: int) -> Path:
    """~/.cache/decision-seq/builds/<env>-seed<seed> (honours $XDG_CACHE_HOME)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "decision-seq" / "builds" / f"{env_id.replace('/', '_')}-seed{seed}"


def _derived_seed(seed: int, tag: str) -> int:
    """An independent 31-bit seed for one purpose (training eval, a level's episodes, ...)."""
    return int(np.random.SeedSequence([seed, _SEED_TAGS[tag]]).generate_state(1)[0] >> 1)


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------


def _episode_return(episode: EpisodeBuffer) -> float:
    return float(np.sum(episode.rewards, dtype=np.float64))


def _collect(env_id: str, act: Callable[[np.ndarray], np.ndarray], num_steps: int, seed_base: int, *,
             desc: str, progress: bool) -> list[EpisodeBuffer]:
    """Whole episodes (reset seeds seed_base + i) until `num_steps` env steps; the last may be cut."""
    env = gym.make(env_id)
    episodes: list[EpisodeBuffer] = []
    steps = 0
    try:
        with tqdm(total=num_steps, desc=desc, unit="step", disable=not progress) as bar:
            while steps < num_steps:
                episode = _rollout(env, act, seed_base + len(episodes), max_steps=num_steps - steps)
                episodes.append(episode)
                steps += len(episode.rewards)
                bar.update(len(episode.rewards))
    finally:
        env.close()
    return episodes


def _uniform_act(act_space: gym.spaces.Box, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    low, high = act_space.low, act_space.high
    return lambda obs: rng.uniform(low, high).astype(act_space.dtype)  # (A,)


def _actor_act(actor, unscale: Callable[[np.ndarray], np.ndarray], deterministic: bool) -> Callable:
    """obs (S,) -> env action (A,) from an SB3 SAC actor (tanh-squashed to [-1, 1], then rescaled)."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32, device=actor.device).unsqueeze(0)  # (1, S)
            a = actor(x, deterministic=deterministic)  # (1, A) in [-1, 1]; sampled unless deterministic
        return unscale(a.cpu().numpy()[0])  # (A,) in [low, high], as SB3's predict() does

    return act


# --------------------------------------------------------------------------------------------------
# The SAC run: training, snapshots, resumable state
# --------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    step: int  # env steps of training behind this policy
    eval_returns: list[float]  # deterministic evaluation episodes (fixed reset seeds)

    @property
    def eval_return(self) -> float:
        return float(np.mean(self.eval_returns))


@dataclass
class TrainingRun:
    """The committed state of a SAC run in `work_dir` (what state.json says)."""

    work_dir: Path
    settings: dict
    step: int = 0
    snapshots: list[Snapshot] = field(default_factory=list)
    replay_chunks: list[tuple[int, int]] = field(default_factory=list)  # [start, end) env steps
    agent_file: str | None = None
    rng: dict | None = None
    n_updates: int = 0

    @property
    def complete(self) -> bool:
        return self.step >= self.settings["train_steps"]

    def snapshot_path(self, step: int) -> Path:
        return self.work_dir / "snapshots" / f"actor-{step:09d}.pt"

    def chunk_path(self, start: int, end: int) -> Path:
        return self.work_dir / "replay" / f"{start:09d}-{end:09d}.npz"


def load_training_state(work_dir: Path | str) -> TrainingRun | None:
    """The run committed in `work_dir`, or None if there is none."""
    work_dir = Path(work_dir)
    path = work_dir / "state.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"format {state.get('format')!r}")
        return TrainingRun(
            work_dir=work_dir, settings=state["settings"], step=int(state["step"]),
            snapshots=[Snapshot(int(s["step"]), [float(r) for r in s["eval_returns"]]) for s in state["snapshots"]],
            replay_chunks=[(int(a), int(b)) for a, b in state["replay_chunks"]],
            agent_file=state["agent_file"], rng=state["rng"], n_updates=int(state["n_updates"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a decision-seq SAC build state ({err}); delete {work_dir} or pass "
                         f"another --work-dir") from None


def _save_state(run: TrainingRun) -> None:
    state = {
        "format": _STATE_FORMAT, "settings": run.settings, "step": run.step,
        "snapshots": [asdict(s) for s in run.snapshots], "replay_chunks": [list(c) for c in run.replay_chunks],
        "agent_file": run.agent_file, "rng": run.rng, "n_updates": run.n_updates,
    }
    atomic_write(run.work_dir / "state.json", lambda tmp: tmp.write_text(json.dumps(state)))


@dataclass
class ReplayData:
    """Replay buffer transitions in env order, flat over steps (N transitions)."""

    observations: np.ndarray  # (N, S)
    next_observations: np.ndarray  # (N, S), the terminal observation where an episode ended
    actions: np.ndarray  # (N, A) in [-1, 1], as SB3 stores them (scaled from [low, high])
    rewards: np.ndarray  # (N,) float32, as SB3 stores them
    terminations: np.ndarray  # (N,) bool
    truncations: np.ndarray  # (N,) bool (time limits)


def load_replay(work_dir: Path | str, upto: int | None = None) -> ReplayData:
    """The committed replay transitions [0, upto) of the run in `work_dir` (all if upto is None)."""
    run = load_training_state(work_dir)
    if run is None:
        raise ValueError(f"no SAC build state in {work_dir}")
    upto = run.step if upto is None else upto
    if upto > run.step:
        raise ValueError(f"replay of {work_dir} holds {run.step} steps, not {upto}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next_obs", "actions", "rewards", "dones", "timeouts")}
    for start, end in run.replay_chunks:
        if start >= upto:
            break
        with np.load(run.chunk_path(start, end), allow_pickle=False) as chunk:
            for key in parts:
                parts[key].append(chunk[key][: upto - start])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return ReplayData(observations=cat["obs"], next_observations=cat["next_obs"], actions=cat["actions"],
                      rewards=cat["rewards"], terminations=cat["dones"] & ~cat["timeouts"],
                      truncations=cat["timeouts"])


def _rng_state(model) -> dict:
    """Global numpy / Python RNG states and SB3's action-space RNG (warm-up actions), as JSON."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss],
            "action_space": model.action_space.np_random.bit_generator.state}


def _set_rng_state(model, state: dict) -> None:
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    model.action_space.np_random.bit_generator.state = state["action_space"]


def _make_sac(env: gym.Env, config: BuildConfig):
    from stable_baselines3 import SAC

    sac = dict(_SAC_SETTINGS)
    net_arch = sac.pop("net_arch")
    return SAC("MlpPolicy", env, buffer_size=config.train_steps,  # keeps every transition: medium-replay needs them
               learning_starts=config.learning_starts, policy_kwargs={"net_arch": net_arch}, seed=config.seed,
               device=config.device, verbose=0, **sac)


def _restore(model, run: TrainingRun, config: BuildConfig) -> None:
    """Load the committed agent, replay buffer and RNG states of `run` into a freshly built SAC model."""
    import torch

    agent = torch.load(run.work_dir / run.agent_file, map_location=model.device, weights_only=True)
    model.set_parameters(agent["params"], exact_match=True, device=model.device)
    with torch.no_grad():
        model.log_ent_coef.copy_(agent["log_ent_coef"])  # in place: ent_coef_optimizer holds this tensor
    data = load_replay(run.work_dir, run.step)
    buffer = model.replay_buffer
    n = run.step
    buffer.observations[:n, 0] = data.observations
    buffer.next_observations[:n, 0] = data.next_observations
    buffer.actions[:n, 0] = data.actions
    buffer.rewards[:n, 0] = data.rewards
    buffer.dones[:n, 0] = data.terminations | data.truncations
    buffer.timeouts[:n, 0] = data.truncations
    buffer.pos, buffer.full = n, False
    model.num_timesteps = n
    model._n_updates = run.n_updates
    torch.set_rng_state(agent["torch_rng"].cpu())  # CPU RNG only: builds are bit-reproducible on the CPU
    _set_rng_state(model, run.rng)
    # The env's state is not saved: the episode in progress at the checkpoint ends there (medium-replay
    # marks it truncated) and training goes on from a new episode with a seed derived from the step.
    model.env.seed(_derived_seed(config.seed, "resume") + n)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: given a path, np.savez would append ".npz" to the temp name
        np.savez(f, **arrays)


def _checkpoint(model, run: TrainingRun, prev_step: int, eval_env: gym.Env, eval_seeds: list[int]) -> Snapshot:
    """Save the new replay chunk and a policy snapshot, evaluate it, then commit agent + state.json."""
    import torch

    step = model.num_timesteps
    buf = model.replay_buffer
    chunk = {"obs": buf.observations[prev_step:step, 0], "next_obs": buf.next_observations[prev_step:step, 0],
             "actions": buf.actions[prev_step:step, 0], "rewards": buf.rewards[prev_step:step, 0],
             "dones": buf.dones[prev_step:step, 0].astype(bool), "timeouts": buf.timeouts[prev_step:step, 0].astype(bool)}
    atomic_write(run.chunk_path(prev_step, step), lambda tmp: _savez(tmp, chunk))
    atomic_write(run.snapshot_path(step), lambda tmp: torch.save(model.actor.state_dict(), tmp))

    act = _actor_act(model.actor, model.policy.unscale_action, deterministic=True)
    returns = [_episode_return(_rollout(eval_env, act, s)) for s in eval_seeds]
    snapshot = Snapshot(step, returns)

    agent_file = f"agent-{step:09d}.pt"
    agent = {"params": model.get_parameters(), "log_ent_coef": model.log_ent_coef.detach().cpu(),
             "torch_rng": torch.get_rng_state()}
    atomic_write(run.work_dir / agent_file, lambda tmp: torch.save(agent, tmp))
    run.step, run.agent_file, run.n_updates = step, agent_file, int(model._n_updates)
    run.snapshots.append(snapshot)
    run.replay_chunks.append((prev_step, step))
    run.rng = _rng_state(model)
    _save_state(run)  # the commit point
    for old in run.work_dir.glob("agent-*.pt"):
        if old.name != agent_file:
            old.unlink(missing_ok=True)
    return snapshot


@contextlib.contextmanager
def _build_context(num_threads: int) -> Iterator[None]:
    """Set torch's thread count and keep the caller's global RNG states (SB3 seeds them globally)."""
    import torch

    threads = torch.get_num_threads()
    np_state, py_state = np.random.get_state(), random.getstate()
    torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        np.random.set_state(np_state)
        random.setstate(py_state)


def train_behaviour_agent(env_id: str, config: BuildConfig, work_dir: Path | str, *, progress: bool = True,
                          step_callback: Callable[[int], None] | None = None) -> TrainingRun:
    """Train (or resume, or reuse) the SAC run of `config` in `work_dir`; returns its committed state.

    Snapshots are taken every `snapshot_every` env steps and at `train_steps`; each is evaluated over
    `eval_episodes` deterministic episodes and committed with the full training state, so an
    interrupted call resumes from the last snapshot when called again. `step_callback(num_timesteps)`
    runs after every env step (tests use it to interrupt training). Uses `config.num_threads` torch
    threads and leaves the caller's global RNG states as they were.
    """
    with _build_context(config.num_threads):
        return _train(env_id, config, Path(work_dir), progress=progress, step_callback=step_callback)


def _train(env_id: str, config: BuildConfig, work_dir: Path, *, progress: bool,
           step_callback: Callable[[int], None] | None) -> TrainingRun:
    from stable_baselines3.common.callbacks import BaseCallback

    settings = config.training_settings(env_id)
    run = load_training_state(work_dir)
    if run is not None and run.settings != settings:
        diff = ", ".join(f"{k}: saved {run.settings.get(k)!r} != {settings[k]!r}"
                         for k in settings if run.settings.get(k) != settings[k])
        raise ValueError(f"work dir {work_dir} holds a SAC run with other settings ({diff}); pass another "
                         f"--work-dir or delete that one")
    if run is not None and run.complete:
        log.info("SAC run in %s is complete (%d steps); reusing it", work_dir, run.step)
        return run

    env, eval_env = gym.make(env_id), gym.make(env_id)
    try:
        model = _make_sac(env, config)
        if run is None:
            for sub in ("replay", "snapshots"):
                (work_dir / sub).mkdir(parents=True, exist_ok=True)
            run = TrainingRun(work_dir=work_dir, settings=settings)
        else:
            _restore(model, run, config)
            log.info("resuming the SAC run in %s from step %d", work_dir, run.step)
        eval_base = _derived_seed(config.seed, "eval")
        eval_seeds = [eval_base + i for i in range(config.eval_episodes)]  # the same for every snapshot

        class _StepHook(BaseCallback):
            def _on_step(self) -> bool:
                bar.update(1)
                if step_callback is not None:
                    step_callback(self.num_timesteps)
                return True

        with tqdm(total=config.train_steps, initial=run.step, desc=f"SAC {env_id}", unit="step",
                  disable=not progress) as bar:
            hook = _StepHook()
            while model.num_timesteps < config.train_steps:
                prev = model.num_timesteps
                target = min(config.train_steps, (prev // config.snapshot_every + 1) * config.snapshot_every)
                # Successive learn() calls continue the same episode and schedule (reset_num_timesteps=False).
                model.learn(total_timesteps=target - prev, callback=hook, reset_num_timesteps=False,
                            log_interval=None)
                snapshot = _checkpoint(model, run, prev, eval_env, eval_seeds)
                bar.set_postfix(eval_return=f"{snapshot.eval_return:.1f}")
                log.info("SAC %s step %d: evaluation return %.1f", env_id, snapshot.step, snapshot.eval_return)
    finally:
        env.close()
        eval_env.close()
    return run


def load_snapshot_actor(run: TrainingRun, step: int, obs_space: gym.spaces.Box, act_space: gym.spaces.Box):
    """A CPU SAC policy (SB3 SACPolicy) holding the actor of snapshot `step`."""
    import torch
    from stable_baselines3.sac.policies import SACPolicy

    policy = SACPolicy(obs_space, act_space, lr_schedule=lambda _: 0.0, net_arch=list(_SAC_SETTINGS["net_arch"]))
    policy.actor.load_state_dict(torch.load(run.snapshot_path(step), map_location="cpu", weights_only=True))
    policy.set_training_mode(False)
    return policy


def select_snapshots(snapshots: Sequence[Snapshot], random_return: float, *, expert: str = "best",
                     medium_fraction: float = 1 / 3) -> tuple[Snapshot, Snapshot]:
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
        log.warning("the expert snapshot (step %d, return %.1f) does not beat the random policy (%.1f); "
                    "train longer (--train-steps)", chosen.step, chosen.eval_return, random_return)
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
        episodes.append(EpisodeBuffer(
            observations=np.concatenate([data.observations[sl], data.next_observations[end:end + 1]]),  # (T+1, S)
            actions=actions[sl].astype(act_space.dtype),  # (T, A)
            rewards=data.rewards[sl].astype(np.float64),  # float32 in the SB3 buffer
            terminations=data.terminations[sl].copy(), truncations=truncations, infos={}))
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


def build_report(env_id: str, levels: Sequence[str], config: BuildConfig, *, overwrite: bool = False,
                 progress: bool = True, work_dir: Path | str | None = None) -> BuildReport:
    """`build_datasets`, returning a report with each level's size, returns and timing."""
    import stable_baselines3
    import torch

    # Check everything before any training.
    levels = parse_levels(levels)
    config.validate()
    obs_space, act_space = check_env(env_id)
    ids = {level: dataset_id_for(env_id, level, config.namespace) for level in levels}
    existing = [i for i in ids.values() if dataset_exists_locally(i)]
    if existing and not overwrite:
        raise FileExistsError(f"dataset{'s' if len(existing) > 1 else ''} {', '.join(existing)} already "
                              f"exist{'' if len(existing) > 1 else 's'} under {get_dataset_path()}; pass "
                              f"--overwrite to replace {'them' if len(existing) > 1 else 'it'}")
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(env_id, config.seed)
    sb3 = f"SAC (stable-baselines3 {stable_baselines3.__version__})"

    with _build_context(config.num_threads):
        t_train = time.perf_counter()
        run = train_behaviour_agent(env_id, config, work_dir, progress=progress)
        train_seconds = time.perf_counter() - t_train

        # Reference scores, on the same fixed-seed episodes for every level of the build.
        ref_min = _mean_return(env_id, lambda i: _uniform_act(act_space, np.random.default_rng([_REFERENCE_SEED, i])),
                               config.reference_episodes)
        medium, expert = select_snapshots(run.snapshots, ref_min, expert=config.expert,
                                          medium_fraction=config.medium_fraction)
        expert_policy = load_snapshot_actor(run, expert.step, obs_space, act_space)
        medium_policy = load_snapshot_actor(run, medium.step, obs_space, act_space)
        ref_max = _mean_return(env_id, lambda i: _actor_act(expert_policy.actor, expert_policy.unscale_action, True),
                               config.reference_episodes)
        log.info("%s: ref_min_score (uniform random) %.1f, ref_max_score (expert snapshot %d) %.1f; medium "
                 "snapshot %d (evaluation return %.1f)", env_id, ref_min, expert.step, ref_max, medium.step,
                 medium.eval_return)

        def collect(level: str) -> list[EpisodeBuffer]:
            base = _derived_seed(config.seed, level)
            desc = f"{level} {env_id}"
            if level == "random":
                # Departure: D4RL's random data came from a randomly initialized policy; ours from uniform
                # random actions, the policy that defines ref_min_score.
                act = _uniform_act(act_space, np.random.default_rng(base))
                return _collect(env_id, act, config.steps_per_level, base, desc=desc, progress=progress)
            policy = medium_policy if level == "medium" else expert_policy
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(base)  # SAC's sampled actions draw from torch's global RNG
                act = _actor_act(policy.actor, policy.unscale_action, deterministic=False)  # stochastic, as D4RL
                return _collect(env_id, act, config.steps_per_level, base, desc=desc, progress=progress)

        snapshot_evals = [{"step": s.step, "eval_return": s.eval_return} for s in run.snapshots]
        what = {
            "random": ("uniform random actions", []),
            "medium": (f"the SAC snapshot at step {medium.step}, the first to reach {config.medium_fraction:.2f} of "
                       f"the way from the random to the expert evaluation return, with sampled (stochastic) "
                       f"actions", [medium.step]),
            "medium-replay": (f"every transition in the SAC replay buffer before step {medium.step} (the medium "
                              f"snapshot), split into episodes", [medium.step]),
            "expert": (f"the SAC snapshot at step {expert.step} ({config.expert} evaluation return), with sampled "
                       f"(stochastic) actions", [expert.step]),
            "medium-expert": (f"the medium (snapshot {medium.step}) and expert (snapshot {expert.step}) episodes "
                              f"together", [medium.step, expert.step]),
        }
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
                if level in ("medium", "expert") and "medium-expert" in levels[levels.index(level):]:
                    cache[level] = episodes  # reused by medium-expert later in this build
            returns = np.array([_episode_return(e) for e in episodes])
            steps = int(sum(len(e.rewards) for e in episodes))
            description, snapshot_steps = what[level]
            span = ref_max - ref_min
            normalized = float(100.0 * (returns.mean() - ref_min) / span) if span != 0 else math.nan
            build_meta = {
                "env_id": env_id, "level": level, "seed": config.seed, "train_steps": config.train_steps,
                "learning_starts": config.learning_starts, "snapshot_every": config.snapshot_every,
                "eval_episodes": config.eval_episodes, "steps_per_level": config.steps_per_level,
                "reference_episodes": config.reference_episodes, "expert_choice": config.expert,
                "medium_fraction": config.medium_fraction, "medium_snapshot": medium.step,
                "expert_snapshot": expert.step, "snapshot_steps": snapshot_steps,
                "ref_min_score": ref_min, "ref_max_score": ref_max, "return_mean": float(returns.mean()),
                "return_std": float(returns.std()), "normalized_mean": normalized,
                "sac": dict(_SAC_SETTINGS), "stable_baselines3": stable_baselines3.__version__,
                "snapshots": snapshot_evals,
            }
            create_dataset_atomically(
                ids[level], episodes, overwrite=overwrite,
                extra_metadata={"decision_seq_build": build_meta},
                env=env_id, eval_env=env_id, ref_min_score=ref_min, ref_max_score=ref_max,
                num_episodes_average_score=config.reference_episodes,
                algorithm_name=f"{sb3} {level}" if level != "random" else "uniform random actions (random)",
                author=_AUTHOR, author_email=_AUTHOR_EMAIL, code_permalink=_CODE_PERMALINK,
                description=(
                    f"D4RL-style '{level}' data on {env_id} (seed {config.seed}): {description}. Behaviour "
                    f"agent: {sb3} trained for {config.train_steps} env steps ({config.learning_starts} "
                    f"random warm-up steps), a snapshot every {config.snapshot_every} steps evaluated over "
                    f"{config.eval_episodes} deterministic episodes; medium snapshot {medium.step}, expert "
                    f"snapshot {expert.step}. {config.steps_per_level} env steps per collected level (whole "
                    f"episodes; the one cut by the budget is marked truncated). ref_min_score: uniform "
                    f"random policy ({ref_min:.1f}); ref_max_score: the expert snapshot with deterministic "
                    f"actions ({ref_max:.1f}); each the mean over {config.reference_episodes} fixed-seed "
                    f"episodes. Built by `decision-seq datasets build`."),
            )
            seconds = time.perf_counter() - t0
            log.info("%s: %d episodes, %d steps, mean return %.1f (normalized %.1f) in %.1f s", ids[level],
                     len(episodes), steps, returns.mean(), normalized, seconds)
            summaries.append(LevelSummary(level, ids[level], len(episodes), steps, float(returns.mean()),
                                          normalized, seconds, snapshot_steps))
            del episodes

    return BuildReport(env_id=env_id, work_dir=work_dir, ref_min_score=ref_min, ref_max_score=ref_max,
                       medium_step=medium.step, expert_step=expert.step, snapshots=list(run.snapshots),
                       levels=summaries, train_seconds=train_seconds)


def build_datasets(env_id: str, levels: Sequence[str], config: BuildConfig, *, overwrite: bool = False,
                   progress: bool = True, work_dir: Path | str | None = None) -> dict[str, str]:
    """Build the D4RL-style `levels` of `env_id` as local Minari datasets; returns level -> dataset id.

    Raises ValueError for an unknown env, unsupported spaces, an unknown level, a bad budget or a work
    dir holding another run, and FileExistsError naming any requested id that exists locally (unless
    `overwrite`), all before any training. `work_dir` (default `default_work_dir(env_id, seed)`) holds
    the resumable SAC run; every level needs it, `random` included, since ref_max_score is the
    expert's return.
    """
    report = build_report(env_id, levels, config, overwrite=overwrite, progress=progress, work_dir=work_dir)
    return {s.level: s.dataset_id for s in report.levels}


# --------------------------------------------------------------------------------------------------
# Command line (`decision-seq datasets build`, parser owned by decision_seq/datasets_cli.py)
# --------------------------------------------------------------------------------------------------

_DEFAULTS = {f.name: f.default for f in fields(BuildConfig)}


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `decision-seq datasets build`."""
    d = _DEFAULTS
    parser.add_argument("env", help="Gymnasium environment id with flat Box observations and Box actions, "
                                    "e.g. Hopper-v5, HalfCheetah-v5, Walker2d-v5")
    parser.add_argument("--levels", default=",".join(LEVELS),
                        help=f"comma-separated levels to build, of: {', '.join(LEVELS)} (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace datasets that already exist locally; without it an existing id is refused")
    parser.add_argument("--seed", type=int, default=d["seed"], help="seed of SAC and of every episode (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=d["train_steps"],
                        help="SAC training budget in env steps (default: %(default)s; D4RL trained to completion)")
    parser.add_argument("--steps-per-level", type=int, default=d["steps_per_level"],
                        help="env steps collected per level, whole episodes (default: %(default)s, as D4RL)")
    parser.add_argument("--snapshot-every", type=int, default=d["snapshot_every"],
                        help="env steps between policy snapshots and resumable checkpoints (default: %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=d["eval_episodes"],
                        help="deterministic evaluation episodes per snapshot (default: %(default)s)")
    parser.add_argument("--reference-episodes", type=int, default=d["reference_episodes"],
                        help="fixed-seed episodes for ref_min_score / ref_max_score (default: %(default)s)")
    parser.add_argument("--learning-starts", type=int, default=d["learning_starts"],
                        help="uniform random warm-up steps before SAC updates (default: %(default)s)")
    parser.add_argument("--expert", choices=EXPERT_CHOICES, default=d["expert"],
                        help="expert snapshot: best evaluation return or the final one (default: %(default)s)")
    parser.add_argument("--device", default=d["device"], help="torch device for SAC updates (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=d["num_threads"],
                        help="torch threads during the build (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the SAC run's resumable state lives; rerunning the same command resumes or "
                             "reuses it; if not given, ~/.cache/decision-seq/builds/<env>-seed<seed>")
    parser.add_argument("--namespace", default=d["namespace"],
                        help="Minari namespace of the dataset ids <namespace>/<env>/<level>-v0 (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_build(args: argparse.Namespace) -> int:
    """Run `decision-seq datasets build` from parsed arguments; prints a summary table, returns 0."""
    from rich.console import Console
    from rich.table import Table

    config = BuildConfig(
        train_steps=args.train_steps, steps_per_level=args.steps_per_level, snapshot_every=args.snapshot_every,
        eval_episodes=args.eval_episodes, reference_episodes=args.reference_episodes,
        learning_starts=args.learning_starts, expert=args.expert, seed=args.seed, namespace=args.namespace,
        device=args.device, num_threads=args.threads,
    )
    t0 = time.perf_counter()
    report = build_report(args.env, parse_levels(args.levels), config, overwrite=args.overwrite,
                          progress=not args.no_progress, work_dir=args.work_dir)
    table = Table(title=f"{report.env_id} (seed {config.seed})")
    for name, justify in [("level", "left"), ("dataset id", "left"), ("episodes", "right"), ("steps", "right"),
                          ("mean return", "right"), ("normalized", "right"), ("time", "right")]:
        table.add_column(name, justify=justify, no_wrap=True)
    for s in report.levels:
        table.add_row(s.level, s.dataset_id, str(s.episodes), str(s.steps), f"{s.mean_return:.1f}",
                      f"{s.normalized_mean:.1f}", f"{s.seconds:.1f} s")
    console = Console()
    if not console.is_terminal:  # piped or logged: rich would assume 80 columns and squash the table
        console = Console(width=160)
    console.print(table)
    console.print(f"ref_min_score {report.ref_min_score:.1f} (uniform random), ref_max_score "
                  f"{report.ref_max_score:.1f} (expert snapshot at step {report.expert_step}); medium snapshot at "
                  f"step {report.medium_step}. SAC run: {report.work_dir} (trained {report.train_seconds:.0f} s "
                  f"in this call); total {time.perf_counter() - t0:.0f} s")
    return 0
