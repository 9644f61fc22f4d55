"""The behaviour agent: one resumable stable-baselines3 SAC run (Haarnoja et al. 2018) and its policy snapshots.

`train_behaviour_agent` trains, resumes or reuses the run in a work dir (layout in workdir.py): every
`snapshot_every` env steps it saves a replay chunk and a policy snapshot, evaluates the snapshot over
fixed-seed deterministic episodes and commits the agent and state.json. SB3's SAC keeps every
transition (buffer_size = train_steps), since the medium-replay level needs them.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from decision_seq.datasets.rollouts import episode_return, rollout
from decision_seq.datasets.sac.config import SAC_SETTINGS, BuildConfig, derived_seed
from decision_seq.datasets.sac.workdir import (
    Snapshot,
    TrainingRun,
    load_replay,
    load_training_state,
    save_replay_chunk,
    save_training_state,
)
from decision_seq.utils.fileio import atomic_write

log = logging.getLogger(__name__)


def actor_act(actor, unscale: Callable[[np.ndarray], np.ndarray], deterministic: bool) -> Callable:
    """obs (S,) -> env action (A,) from an SB3 SAC actor (tanh-squashed to [-1, 1], then rescaled)."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32, device=actor.device).unsqueeze(0)  # (1, S)
            a = actor(x, deterministic=deterministic)  # (1, A) in [-1, 1]; sampled unless deterministic
        return unscale(a.cpu().numpy()[0])  # (A,) in [low, high], as SB3's predict() does

    return act


def _rng_state(model) -> dict:
    """Global numpy / Python RNG states and SB3's action-space RNG (warm-up actions), as JSON."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
        "action_space": model.action_space.np_random.bit_generator.state,
    }


def _set_rng_state(model, state: dict) -> None:
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    model.action_space.np_random.bit_generator.state = state["action_space"]


def _make_sac(env: gym.Env, config: BuildConfig):
    from stable_baselines3 import SAC

    sac = dict(SAC_SETTINGS)
    net_arch = sac.pop("net_arch")
    return SAC(
        "MlpPolicy",
        env,
        buffer_size=config.train_steps,  # keeps every transition: medium-replay needs them
        learning_starts=config.learning_starts,
        policy_kwargs={"net_arch": net_arch},
        seed=config.seed,
        device=config.device,
        verbose=0,
        **sac,
    )


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
    model.env.seed(derived_seed(config.seed, "resume") + n)


def _checkpoint(model, run: TrainingRun, prev_step: int, eval_env: gym.Env, eval_seeds: list[int]) -> Snapshot:
    """Save the new replay chunk and a policy snapshot, evaluate it, then commit agent + state.json."""
    import torch

    step = model.num_timesteps
    buf = model.replay_buffer
    new = slice(prev_step, step)
    chunk = {
        "obs": buf.observations[new, 0],
        "next_obs": buf.next_observations[new, 0],
        "actions": buf.actions[new, 0],
        "rewards": buf.rewards[new, 0],
        "dones": buf.dones[new, 0].astype(bool),
        "timeouts": buf.timeouts[new, 0].astype(bool),
    }
    save_replay_chunk(run, prev_step, step, chunk)
    atomic_write(run.snapshot_path(step), lambda tmp: torch.save(model.actor.state_dict(), tmp))

    act = actor_act(model.actor, model.policy.unscale_action, deterministic=True)
    returns = [episode_return(rollout(eval_env, act, s)) for s in eval_seeds]
    snapshot = Snapshot(step, returns)

    agent_file = f"agent-{step:09d}.pt"
    agent = {
        "params": model.get_parameters(),
        "log_ent_coef": model.log_ent_coef.detach().cpu(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic_write(run.work_dir / agent_file, lambda tmp: torch.save(agent, tmp))
    run.step, run.agent_file, run.n_updates = step, agent_file, int(model._n_updates)
    run.snapshots.append(snapshot)
    run.replay_chunks.append((prev_step, step))
    run.rng = _rng_state(model)
    save_training_state(run)  # the commit point
    for old in run.work_dir.glob("agent-*.pt"):
        if old.name != agent_file:
            old.unlink(missing_ok=True)
    return snapshot


@contextlib.contextmanager
def build_context(num_threads: int) -> Iterator[None]:
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


def train_behaviour_agent(
    env_id: str,
    config: BuildConfig,
    work_dir: Path | str,
    *,
    progress: bool = True,
    step_callback: Callable[[int], None] | None = None,
) -> TrainingRun:
    """Train (or resume, or reuse) the SAC run of `config` in `work_dir`; returns its committed state.

    Snapshots are taken every `snapshot_every` env steps and at `train_steps`; each is evaluated over
    `eval_episodes` deterministic episodes and committed with the full training state, so an
    interrupted call resumes from the last snapshot when called again. `step_callback(num_timesteps)`
    runs after every env step (tests use it to interrupt training). Uses `config.num_threads` torch
    threads and leaves the caller's global RNG states as they were.
    """
    with build_context(config.num_threads):
        return _train(env_id, config, Path(work_dir), progress=progress, step_callback=step_callback)


def _train(
    env_id: str, config: BuildConfig, work_dir: Path, *, progress: bool, step_callback: Callable[[int], None] | None
) -> TrainingRun:
    from stable_baselines3.common.callbacks import BaseCallback

    settings = config.training_settings(env_id)
    run = load_training_state(work_dir)
    if run is not None and run.settings != settings:
        diff = ", ".join(
            f"{k}: saved {run.settings.get(k)!r} != {settings[k]!r}"
            for k in settings
            if run.settings.get(k) != settings[k]
        )
        raise ValueError(
            f"work dir {work_dir} holds a SAC run with other settings ({diff}); pass another "
            f"--work-dir or delete that one"
        )
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
        eval_base = derived_seed(config.seed, "eval")
        eval_seeds = [eval_base + i for i in range(config.eval_episodes)]  # the same for every snapshot

        class _StepHook(BaseCallback):
            def _on_step(self) -> bool:
                bar.update(1)
                if step_callback is not None:
                    step_callback(self.num_timesteps)
                return True

        with tqdm(
            total=config.train_steps, initial=run.step, desc=f"SAC {env_id}", unit="step", disable=not progress
        ) as bar:
            hook = _StepHook()
            while model.num_timesteps < config.train_steps:
                prev = model.num_timesteps
                target = min(config.train_steps, (prev // config.snapshot_every + 1) * config.snapshot_every)
                # Successive learn() calls continue the same episode and schedule (reset_num_timesteps=False).
                model.learn(total_timesteps=target - prev, callback=hook, reset_num_timesteps=False, log_interval=None)
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

    policy = SACPolicy(obs_space, act_space, lr_schedule=lambda _: 0.0, net_arch=list(SAC_SETTINGS["net_arch"]))
    policy.actor.load_state_dict(torch.load(run.snapshot_path(step), map_location="cpu", weights_only=True))
    policy.set_training_mode(False)
    return policy
