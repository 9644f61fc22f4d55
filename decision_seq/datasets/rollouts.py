"""Playing a policy in a Gymnasium env into Minari episodes, and reference returns on fixed seeds.

Shared by the built-in recipes (builtin.py) and the SAC builds (sac/). Reference returns follow
D4RL's normalization convention: ref_min_score and ref_max_score are mean undiscounted returns of a
random and an expert policy, here over episodes with fixed reset seeds (REFERENCE_SEED + i).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer

# Reference episodes use their own reset seeds, independent of the dataset seed, so every build of a
# dataset id normalizes scores against the same references.
REFERENCE_SEED = 1_000_000

Policy = Callable[[np.ndarray], np.ndarray | int]  # observation (S,) -> action (A,) or a discrete index


def rollout(env: gym.Env, policy: Policy, reset_seed: int, max_steps: int | None = None) -> EpisodeBuffer:
    """Play one episode to its end, or cut it after `max_steps` (then marked truncated), and return it
    as a Minari EpisodeBuffer (T+1 observations)."""
    obs, _ = env.reset(seed=int(reset_seed))
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    done = False
    while not done:
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
        if not done and max_steps is not None and len(rewards) >= max_steps:
            truncations[-1] = done = True  # cut by the step budget: the episode did not end, so it is truncated
    return EpisodeBuffer(
        seed=int(reset_seed),
        observations=np.stack(observations),  # (T+1, S)
        actions=np.stack(actions) if np.ndim(actions[0]) else np.asarray(actions, dtype=np.int64),  # (T, A) or (T,)
        rewards=np.asarray(rewards, dtype=np.float64),  # (T,) as the env returns them
        terminations=np.asarray(terminations, dtype=bool),
        truncations=np.asarray(truncations, dtype=bool),
        infos={},  # no step infos recorded (EpisodeBuffer.add_step_data would need jax)
    )


def episode_return(episode: EpisodeBuffer) -> float:
    """Undiscounted return of one episode."""
    return float(np.sum(episode.rewards, dtype=np.float64))


def mean_return(env_id: str, make_policy: Callable[[int], Policy], num_episodes: int) -> float:
    """Mean undiscounted return over `num_episodes` episodes with fixed reset seeds (REFERENCE_SEED + i).

    `make_policy(episode_index)` gives that episode's policy, so stochastic policies are seeded too.
    """
    env = gym.make(env_id)
    try:
        returns = [episode_return(rollout(env, make_policy(i), REFERENCE_SEED + i)) for i in range(num_episodes)]
    finally:
        env.close()
    return float(np.mean(returns))
