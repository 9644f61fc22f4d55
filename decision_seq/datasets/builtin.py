"""Built-in datasets: local recipes that write real Minari datasets, so nothing needs a download.

`decision-seq/pendulum/mixed-v0` (DEFAULT_DATASET_ID) is the suite's default dataset: Gymnasium
Pendulum-v1 (continuous control, 200-step episodes) played by a behaviour policy whose skill is drawn
per episode, from uniformly random to a hand-coded swing-up expert. Returns therefore spread from the
random policy's (about -1200) to the expert's (about -160), which is the setting where return
conditioning matters, as in the D4RL medium-replay / medium-expert sets. Its reference scores
(random and expert mean returns, measured at build time on fixed seeds) give D4RL-style 0..100
normalized scores.

`decision-seq/cartpole/mixed-v0` is a small discrete-action counterpart (CartPole-v1, heuristic
controller mixed with random actions), mainly for tests of the Discrete code paths.

Datasets are written atomically (minari_io.create_dataset_atomically), so an interrupted build never
leaves a half-written dataset behind; an id that already exists locally is loaded, never rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gymnasium as gym
import minari
import numpy as np
from minari.storage import get_dataset_path
from tqdm.auto import tqdm

from decision_seq.datasets.minari_io import AUTHOR, AUTHOR_EMAIL, create_dataset_atomically, dataset_exists_locally
from decision_seq.datasets.naming import builtin_id
from decision_seq.datasets.rollouts import REFERENCE_SEED, Policy, mean_return, rollout

log = logging.getLogger(__name__)

DEFAULT_DATASET_ID = builtin_id("pendulum")
CARTPOLE_DATASET_ID = builtin_id("cartpole")
PENDULUM_ENV_ID = "Pendulum-v1"
CARTPOLE_ENV_ID = "CartPole-v1"

_CODE_PERMALINK = "decision_seq/datasets/builtin.py (decision-seq package)"


# --------------------------------------------------------------------------------------------------
# Controllers
# --------------------------------------------------------------------------------------------------

# Pendulum-v1 dynamics (gymnasium classic_control/pendulum.py), theta = 0 upright:
#   thdot' = thdot + (3g/(2l) sin(theta) + 3/(m l^2) u) dt,   theta' = theta + thdot' dt
# with g = 10, m = l = 1, dt = 0.05, |u| <= 2, |thdot| <= 8; per-step cost
#   theta^2 + 0.1 thdot^2 + 0.001 u^2.
_PENDULUM_DT = 0.05
_PENDULUM_A = 15.0  # 3g / (2l)
_PENDULUM_B = 3.0  # 3 / (m l^2)
_PENDULUM_MAX_TORQUE = 2.0
_PENDULUM_LQR_ANGLE = 0.5  # rad: below this the linear stabilizer takes over from energy pumping
_PENDULUM_PUMP_GAIN = 1.0


def _pendulum_lqr_gain(iterations: int = 2000) -> np.ndarray:
    """Discrete-time LQR gain for the env's semi-implicit Euler step linearized at the top.

    The env's cost is exactly quadratic (Q = diag(1, 0.1), R = 0.001), so this is the optimal linear
    stabilizer for the env's own objective. Solved by iterating the Riccati recursion (no scipy).
    """
    dt, a, b = _PENDULUM_DT, _PENDULUM_A, _PENDULUM_B
    # state x = (theta, thdot); x' = A x + B u
    A = np.array([[1.0 + a * dt * dt, dt], [a * dt, 1.0]])
    B = np.array([[b * dt * dt], [b * dt]])
    Q = np.diag([1.0, 0.1])
    R = np.array([[0.001]])
    P = Q.copy()
    for _ in range(iterations):
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ (A - B @ K)
    return K[0]  # (2,)


PENDULUM_LQR_GAIN = _pendulum_lqr_gain()  # about (19.7, 5.3)


def pendulum_expert_action(obs: np.ndarray) -> np.ndarray:
    """Hand-coded Pendulum-v1 expert: energy-pumping swing-up, then an LQR stabilizer at the top.

    obs = (cos theta, sin theta, thdot). Returns a (1,) float32 torque in [-2, 2].
    """
    cos_th, sin_th, thdot = float(obs[0]), float(obs[1]), float(obs[2])
    theta = np.arctan2(sin_th, cos_th)  # in (-pi, pi], 0 upright
    if abs(theta) < _PENDULUM_LQR_ANGLE:
        u = -(PENDULUM_LQR_GAIN[0] * theta + PENDULUM_LQR_GAIN[1] * thdot)
    else:
        # E = thdot^2 / 2 + a cos(theta) is conserved without torque and dE/dt = b u thdot, so pushing
        # along thdot in proportion to the energy deficit pumps the pendulum up to E_top = a.
        energy = 0.5 * thdot * thdot + _PENDULUM_A * cos_th
        u = _PENDULUM_PUMP_GAIN * (_PENDULUM_A - energy) * thdot
    u = np.clip(u, -_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE)
    return np.array([u], dtype=np.float32)


def cartpole_expert_action(obs: np.ndarray) -> int:
    """Linear-feedback CartPole-v1 heuristic (push towards the side the pole falls to); scores 500."""
    x, x_dot, theta, theta_dot = (float(v) for v in obs)
    return int(0.1 * x + 0.5 * x_dot + 3.0 * theta + theta_dot > 0.0)


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _build_mixed_quality(
    dataset_id: str,
    env_id: str,
    *,
    expert: Policy,
    random_action: Callable[[np.random.Generator], np.ndarray | int],
    finish_action: Callable[[np.ndarray | int, np.random.Generator], np.ndarray | int],
    num_episodes: int,
    seed: int,
    num_reference_episodes: int,
    progress: bool,
    algorithm_name: str,
    describe: Callable[[float, float], str],
) -> minari.MinariDataset:
    """The recipe shared by the built-in datasets: per episode a skill p ~ U(0, 1); each step acts with
    `expert` with probability p, else `random_action`, then `finish_action` (noise, clipping).
    ref_min_score = mean return of `random_action`, ref_max_score = mean return of the noiseless
    expert, each over `num_reference_episodes` fixed-seed episodes. Reproducible: reset seeds
    seed * 100_003 + i and a behaviour RNG seeded with `seed`. Loads instead if the id exists locally.
    """
    if dataset_exists_locally(dataset_id):
        log.info("dataset %s exists locally; not rebuilding", dataset_id)
        return minari.load_dataset(dataset_id)
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")

    def random_policy(episode: int) -> Policy:
        ref_rng = np.random.default_rng([REFERENCE_SEED, episode])
        return lambda obs: random_action(ref_rng)

    ref_min = mean_return(env_id, random_policy, num_reference_episodes)
    ref_max = mean_return(env_id, lambda _: expert, num_reference_episodes)

    rng = np.random.default_rng(seed)
    env = gym.make(env_id)
    buffers = []
    try:
        for i in tqdm(range(num_episodes), desc=f"building {dataset_id}", unit="ep", disable=not progress):
            skill = rng.uniform()

            def behaviour(obs: np.ndarray, skill: float = skill) -> np.ndarray | int:
                action = expert(obs) if rng.uniform() < skill else random_action(rng)
                return finish_action(action, rng)

            buffers.append(rollout(env, behaviour, seed * 100_003 + i))
    finally:
        env.close()

    return create_dataset_atomically(
        dataset_id,
        buffers,
        env=env_id,
        eval_env=env_id,  # recover_environment(eval_env=True) -> the env with its own TimeLimit
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        num_episodes_average_score=num_reference_episodes,  # minari records 100 unless told
        algorithm_name=algorithm_name,
        author=AUTHOR,
        author_email=AUTHOR_EMAIL,
        code_permalink=_CODE_PERMALINK,
        description=describe(ref_min, ref_max),
    )


def build_pendulum_mixed(
    dataset_id: str = DEFAULT_DATASET_ID,
    num_episodes: int = 300,
    seed: int = 0,
    *,
    num_reference_episodes: int = 50,
    action_noise: float = 0.1,
    progress: bool = True,
) -> minari.MinariDataset:
    """Build (or load, if it already exists locally) the mixed-quality Pendulum-v1 dataset.

    Behaviour: per episode a skill p ~ U(0, 1); each step acts with the expert with probability p,
    else uniformly at random in [-2, 2], then adds N(0, action_noise^2) and clips to [-2, 2].
    ref_min_score = uniform random policy, ref_max_score = noiseless expert (see _build_mixed_quality).
    """
    low, high = -_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE

    def finish(action, rng):
        return np.clip(action + rng.normal(0.0, action_noise, size=1), low, high).astype(np.float32)  # (1,)

    return _build_mixed_quality(
        dataset_id,
        PENDULUM_ENV_ID,
        expert=pendulum_expert_action,
        random_action=lambda rng: rng.uniform(low, high, size=1).astype(np.float32),
        finish_action=finish,
        num_episodes=num_episodes,
        seed=seed,
        num_reference_episodes=num_reference_episodes,
        progress=progress,
        algorithm_name="mixed: per-episode skill p~U(0,1) blends swing-up/LQR expert with uniform random actions",
        describe=lambda ref_min, ref_max: (
            f"{PENDULUM_ENV_ID}, {num_episodes} episodes (seed {seed}). Each episode draws a skill p ~ U(0, 1); each "
            f"step acts with a hand-coded expert (energy-pumping swing-up + LQR stabilizer) with probability p, "
            f"else uniformly at random, plus N(0, {action_noise}^2) action noise, clipped to [-2, 2]. "
            f"ref_min_score: uniform random policy ({ref_min:.1f}); ref_max_score: noiseless expert "
            f"({ref_max:.1f}); each the mean over {num_reference_episodes} fixed-seed episodes."
        ),
    )


def build_cartpole_mixed(
    dataset_id: str = CARTPOLE_DATASET_ID,
    num_episodes: int = 50,
    seed: int = 0,
    *,
    num_reference_episodes: int = 20,
    progress: bool = True,
) -> minari.MinariDataset:
    """Build (or load) a small discrete-action CartPole-v1 dataset of mixed quality.

    Per episode a skill p ~ U(0, 1); each step takes the heuristic controller's action with
    probability p, else a uniformly random one. Episodes end by termination (pole falls) or by the
    500-step truncation, so both flags occur. Reference scores: random policy and heuristic.
    """
    return _build_mixed_quality(
        dataset_id,
        CARTPOLE_ENV_ID,
        expert=cartpole_expert_action,
        random_action=lambda rng: int(rng.integers(2)),
        finish_action=lambda action, rng: action,
        num_episodes=num_episodes,
        seed=seed,
        num_reference_episodes=num_reference_episodes,
        progress=progress,
        algorithm_name="mixed: per-episode skill p~U(0,1) blends a linear-feedback heuristic with random actions",
        describe=lambda ref_min, ref_max: (
            f"{CARTPOLE_ENV_ID}, {num_episodes} episodes (seed {seed}); per-episode skill p ~ U(0, 1) mixes a "
            f"linear-feedback heuristic (probability p) with uniformly random actions. ref_min_score: random "
            f"policy ({ref_min:.1f}); ref_max_score: heuristic ({ref_max:.1f}); {num_reference_episodes} episodes each."
        ),
    )


# Built-in ids -> builders called with their defaults when the id is not found locally.
BUILTIN: dict[str, Callable[..., minari.MinariDataset]] = {
    DEFAULT_DATASET_ID: build_pendulum_mixed,
    CARTPOLE_DATASET_ID: build_cartpole_mixed,
}
# Built-in ids -> the env they are collected and evaluated on (known before the data is built).
BUILTIN_ENV_IDS: dict[str, str] = {DEFAULT_DATASET_ID: PENDULUM_ENV_ID, CARTPOLE_DATASET_ID: CARTPOLE_ENV_ID}


def ensure_builtin_dataset(dataset_id: str) -> minari.MinariDataset:
    """Load a built-in dataset, building it first (default size) if it is not local yet."""
    try:
        builder = BUILTIN[dataset_id]
    except KeyError:
        raise ValueError(f"{dataset_id!r} is not a built-in dataset; built-in ids: {sorted(BUILTIN)}") from None
    if dataset_exists_locally(dataset_id):
        return minari.load_dataset(dataset_id)
    log.info("building built-in dataset %s under %s", dataset_id, get_dataset_path())
    return builder(dataset_id)
