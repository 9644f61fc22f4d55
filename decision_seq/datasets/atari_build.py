"""Build an Atari dataset locally, offline: a stable-baselines3 PPO agent, mixed with random actions.

`build_atari("Breakout", agent_steps=..., steps=...)` trains (or reuses, or resumes) a PPO agent on the
game, then plays whole episodes with it on the evaluation protocol of the DQN-Replay data
(`dqn_replay.eval_env_spec`: ALE v5, sticky actions 0.25, frame skip 4, 30 no-op starts, 84x84 grayscale,
108k-frame cap), taking a uniformly random action instead of the agent's with probability `random_prob`
at each step (epsilon-greedy mixing, as DQN behaves). The episodes are written in the format of
`import-dqn-replay` (one 84x84 uint8 frame per step, Discrete actions, rewards clipped to [-1, 1], the
same eval env spec and the game's random / gamer reference scores), under `naming.atari_build_id`.

Why PPO: with SB3's rl-zoo Atari settings (8 envs x 128 steps, Nature CNN) it moves off random play within
about 1e5 frames on a CPU, and keeps no replay buffer; SB3's DQN needs a large replay buffer and (rl-zoo)
1e5 learning-starts steps before its first update. The ALE ROMs ship inside ale-py, so nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from decision_seq.data.frames import FRAME_SHAPE, FRAME_STACK
from decision_seq.datasets import naming
from decision_seq.datasets.dqn_replay import AtariGame, check_game, check_int_arg, eval_env_spec, write_frames_dataset
from decision_seq.datasets.minari_io import dataset_exists_locally

log = logging.getLogger(__name__)

_CODE_PERMALINK = "decision_seq/datasets/atari_build.py (decision-seq package)"

DEFAULT_AGENT_STEPS = 200_000  # env steps (x4 frames) of PPO training
DEFAULT_STEPS = 50_000  # dataset steps
DEFAULT_RANDOM_PROB = 0.1
DEFAULT_LEVEL = "mixed"
DEFAULT_WORK_DIR = Path("~/.cache/decision-seq/atari-builds")
_LEVEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

# PPO settings of rl-baselines3-zoo's hyperparams/ppo.yml `atari` entry (CnnPolicy, frame_stack 4): 8 envs,
# n_steps 128, n_epochs 4, batch 256, lr 2.5e-4 and clip 0.1 both decayed linearly, ent 0.01, vf 0.5.
PPO_N_ENVS = 8
PPO_N_STEPS = 128
PPO_KWARGS = {"n_epochs": 4, "vf_coef": 0.5, "ent_coef": 0.01}
PPO_LR, PPO_CLIP = 2.5e-4, 0.1
_SAVE_EVERY_ROLLOUTS = 10


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def check_build_args(
    game: str, *, agent_steps: int, steps: int, random_prob: float, seed: int, level: str, dataset_id: str | None
) -> tuple[AtariGame, str]:
    """Every argument checked before anything runs; returns the game and the dataset id."""
    spec = check_game(game)
    check_int_arg("--steps", steps, 1)
    check_int_arg("--seed", seed, 0)
    if isinstance(random_prob, bool) or not isinstance(random_prob, (int, float)) or not 0 <= random_prob <= 1:
        raise ValueError(f"--random-prob must be a probability in [0, 1], got {random_prob}")
    # An agent is trained only when some actions are its own; random_prob 1 needs none.
    check_int_arg("--agent-steps", agent_steps, 0 if random_prob == 1 else 1)
    if not _LEVEL_RE.match(level):
        raise ValueError(f"--level must be lowercase letters, digits and '-' (e.g. {DEFAULT_LEVEL}), got {level!r}")
    dataset_id = dataset_id or naming.atari_build_id(spec.name, level)
    naming.check_dataset_id(dataset_id, example=naming.atari_build_id(spec.name, DEFAULT_LEVEL))
    return spec, dataset_id


# --------------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------------


def collection_env(spec: AtariGame) -> gym.Env:
    """The env the data is collected on: the dataset's own eval env (DQN-Replay's protocol)."""
    import ale_py  # noqa: F401  (registers the ALE envs; the eval spec's entry point also imports it)

    return gym.make(eval_env_spec(spec))


def _training_wrappers(env: gym.Env) -> gym.Env:
    """On top of the collection env: a life loss ends a training episode and rewards are clipped (SB3's
    AtariWrapper habits), and a channel axis for SB3's CnnPolicy. No FireResetEnv: the agent must learn to
    press FIRE itself, since the collection env does not press it for it. Departure from SB3's
    AtariWrapper, whose frames are cv2-grayscaled RGB: here they are ALE's grayscale via AtariPreprocessing,
    exactly the frames the agent sees while collecting."""
    from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv

    env = ClipRewardEnv(EpisodicLifeEnv(env))
    return gym.wrappers.ReshapeObservation(env, (*FRAME_SHAPE, 1))


def _agent_dir(work_dir: Path, spec: AtariGame, agent_steps: int, seed: int) -> Path:
    return Path(work_dir).expanduser() / f"{spec.name.lower()}-ppo-{agent_steps}steps-seed{seed}"


def train_agent(spec: AtariGame, agent_steps: int, seed: int, work_dir: Path, progress: bool = True):
    """A PPO agent trained for `agent_steps` env steps, reusing or resuming `<work_dir>/.../agent.zip`.

    The agent is saved every few rollouts (atomically), so an interrupted build resumes where it stopped."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    folder = _agent_dir(work_dir, spec, agent_steps, seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.zip"
    # Tiny budgets (tests) take shorter rollouts: PPO always collects at least one whole rollout.
    n_steps = max(8, min(PPO_N_STEPS, agent_steps // PPO_N_ENVS))
    env = VecFrameStack(
        make_vec_env(
            lambda: collection_env(spec),
            n_envs=PPO_N_ENVS,
            seed=seed,
            vec_env_cls=DummyVecEnv,  # subprocesses would not pay off on a 2-core machine
            wrapper_class=_training_wrappers,
        ),
        n_stack=FRAME_STACK,
    )
    if path.exists():
        model = PPO.load(path, env=env, device="auto")
        log.info("PPO agent %s: %d of %d steps done", path, model.num_timesteps, agent_steps)
    else:
        linear = lambda start: lambda progress_remaining: start * progress_remaining  # noqa: E731
        model = PPO(
            "CnnPolicy",
            env,
            n_steps=n_steps,
            batch_size=min(256, n_steps * PPO_N_ENVS),
            learning_rate=linear(PPO_LR),
            clip_range=linear(PPO_CLIP),
            seed=seed,
            device="auto",
            verbose=0,
            **PPO_KWARGS,
        )

    class _Save(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            rollouts = self.model.num_timesteps // (self.model.n_steps * self.model.n_envs)
            if rollouts % _SAVE_EVERY_ROLLOUTS == 0:
                _save_atomically(self.model, path)

    remaining = agent_steps - model.num_timesteps
    if remaining > 0:
        t0 = time.perf_counter()
        model.learn(remaining, callback=_Save(), reset_num_timesteps=False, progress_bar=progress)
        _save_atomically(model, path)
        returns = [ep["r"] for ep in model.ep_info_buffer]  # raw game returns (Monitor sits below the clipping)
        log.info(
            "PPO agent trained to %d steps in %.0f s; last %d training games: mean raw return %.2f",
            model.num_timesteps,
            time.perf_counter() - t0,
            len(returns),
            float(np.mean(returns)) if returns else float("nan"),
        )
    env.close()
    return model


def _save_atomically(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)


def agent_policy(model) -> Callable[[np.ndarray], int]:
    """stacked frames (FRAME_STACK, 84, 84) -> action, sampled from the agent's policy (PPO's argmax can
    freeze in a state, e.g. never pressing FIRE; sampling is how it was trained)."""

    def act(stack: np.ndarray) -> int:
        action, _ = model.predict(stack[None], deterministic=False)  # (1, 4, 84, 84): the model's own layout
        return int(np.asarray(action).reshape(-1)[0])

    return act


# --------------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------------


@dataclass
class Collected:
    """What `collect_episodes` played, for the dataset's metadata."""

    episodes: int = 0
    steps: int = 0
    random_actions: int = 0
    raw_returns: list[float] | None = None


def collect_episodes(
    env: gym.Env,
    policy: Callable[[np.ndarray], int] | None,
    *,
    steps: int,
    random_prob: float,
    seed: int,
    stats: Collected | None = None,
    progress: bool = True,
) -> Iterator[EpisodeBuffer]:
    """Whole episodes until at least `steps` steps are played (the last episode is finished, not cut).

    At each step the action is uniformly random with probability `random_prob`, else `policy(stack)`, where
    stack holds the last FRAME_STACK frames, zeros before the episode's first (as SB3's VecFrameStack
    fills it). Rewards are clipped to [-1, 1] (sign), as DQN-Replay stores them; raw returns go to `stats`.
    Seeded: the env's first reset and the random actions come from `seed` (the agent's sampling from torch's
    global generator, seeded by the caller)."""
    stats = stats if stats is not None else Collected()
    stats.raw_returns = []
    rng = np.random.default_rng(seed)
    n_actions = int(env.action_space.n)
    bar = tqdm(total=steps, desc="collecting", unit="step", disable=not progress)
    first = True
    while stats.steps < steps:
        frame, _ = env.reset(seed=seed if first else None)
        first = False
        frames, actions, rewards = [frame], [], []
        stack = np.zeros((FRAME_STACK, *FRAME_SHAPE), np.uint8)  # (4, 84, 84)
        stack[-1] = frame
        done = truncated = False
        while not (done or truncated):
            if policy is None or rng.random() < random_prob:
                action = int(rng.integers(n_actions))
                stats.random_actions += 1
            else:
                action = policy(stack)
            frame, reward, done, truncated, _ = env.step(action)
            stack = np.concatenate([stack[1:], frame[None]])
            frames.append(frame)
            actions.append(action)
            rewards.append(float(reward))
            bar.update(1)
        T = len(actions)
        stats.episodes += 1
        stats.steps += T
        stats.raw_returns.append(float(np.sum(rewards)))
        yield EpisodeBuffer(
            observations=np.stack(frames),  # (T+1, 84, 84) uint8: the frame after the last step is real here
            actions=np.asarray(actions, np.int64),
            rewards=np.sign(np.asarray(rewards, np.float64)),  # clipped as DQN-Replay stores rewards
            terminations=np.arange(T) == T - 1 if done else np.zeros(T, bool),
            truncations=np.arange(T) == T - 1 if (truncated and not done) else np.zeros(T, bool),
            infos={},
        )
    bar.close()


def build_atari(
    game: str,
    *,
    agent_steps: int = DEFAULT_AGENT_STEPS,
    steps: int = DEFAULT_STEPS,
    random_prob: float = DEFAULT_RANDOM_PROB,
    seed: int = 0,
    level: str = DEFAULT_LEVEL,
    dataset_id: str | None = None,
    work_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> minari.MinariDataset:
    """Train (or reuse) the agent, collect `steps` steps of whole episodes, write them atomically."""
    spec, dataset_id = check_build_args(
        game,
        agent_steps=agent_steps,
        steps=steps,
        random_prob=random_prob,
        seed=seed,
        level=level,
        dataset_id=dataset_id,
    )
    if dataset_exists_locally(dataset_id) and not overwrite:
        raise FileExistsError(f"dataset {dataset_id} already exists locally; pass --overwrite to replace it")
    work_dir = Path(work_dir or DEFAULT_WORK_DIR).expanduser()
    t0 = time.perf_counter()
    policy, agent_info = None, {"agent": "none (uniformly random actions)"}
    if random_prob < 1:
        import torch  # only with an agent: random play needs neither torch nor stable-baselines3
        from stable_baselines3 import __version__ as sb3_version

        model = train_agent(spec, agent_steps, seed, work_dir, progress=progress)
        policy = agent_policy(model)
        agent_info = {
            "agent": f"PPO CnnPolicy (stable-baselines3 {sb3_version}, rl-zoo Atari hyperparameters)",
            "agent_steps": agent_steps,
            "agent_path": str(_agent_dir(work_dir, spec, agent_steps, seed) / "agent.zip"),
        }
        torch.manual_seed(seed)  # the agent's action sampling
    train_seconds = time.perf_counter() - t0
    env = collection_env(spec)
    stats = Collected()
    try:
        buffers = list(
            collect_episodes(
                env, policy, steps=steps, random_prob=random_prob, seed=seed, stats=stats, progress=progress
            )
        )  # held in memory (84*84 bytes a step: 50k steps are 350 MB) so the description can give the totals
    finally:
        env.close()
    description = (
        f"{spec.name} played by {agent_info['agent']}"
        + (f" trained for {agent_steps} env steps" if policy else "")
        + f", each action uniformly random with probability {random_prob}; {stats.episodes} whole episodes "
        f"({stats.steps} steps, budget {steps}), seed {seed}. Collected on the evaluation env: {spec.env_id} with "
        "sticky actions 0.25, frame skip 4, 30 no-op starts, 108k-frame cap, 84x84 grayscale "
        f"(AtariPreprocessing). One frame per step (stack the last {FRAME_STACK}); rewards clipped to [-1, 1] "
        f"as DQN-Replay stores them. Reference scores: random {spec.random_score}, gamer {spec.gamer_score} "
        "(normalized = gamer-normalized)."
    )
    metadata = {
        "atari_build": {
            "game": spec.name,
            **agent_info,
            "random_prob": random_prob,
            "seed": seed,
            "steps_budget": steps,
            "steps": stats.steps,
            "episodes": stats.episodes,
            "random_actions": stats.random_actions,
            "raw_returns": stats.raw_returns,  # unclipped game scores, per episode
            "rewards": "clipped to [-1, 1] (sign), as DQN-Replay stores them",
            "agent_train_seconds": round(train_seconds, 1),
        }
    }
    dataset = write_frames_dataset(
        dataset_id,
        buffers,
        spec=spec,
        eval_env=eval_env_spec(spec),
        extra_metadata=metadata,
        algorithm_name="PPO (stable-baselines3) + random actions" if policy else "uniformly random actions",
        description=description,
        code_permalink=_CODE_PERMALINK,
        overwrite=overwrite,
    )
    log.info(
        "built %s: %d episodes, %d steps, raw returns mean %.2f (min %.0f, max %.0f)",
        dataset_id,
        stats.episodes,
        stats.steps,
        float(np.mean(stats.raw_returns)),
        min(stats.raw_returns),
        max(stats.raw_returns),
    )
    return dataset
