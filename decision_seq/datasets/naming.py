"""Dataset ids and level names, defined once: every module that makes, parses or lists an id uses these.

Formats (Minari ids are `namespace/name/version`):
- built-in sets:            `decision-seq/<env>/mixed-v0` (BUILTIN_NAMESPACE)
- D4RL-style SAC rebuilds:  `decision-seq/<env>/<level>-v0`, level in LEVELS
- imported D4RL data:       `d4rl/<env>/<level>-v2`, env in D4RL_ENV_NAMES, level in LEVELS
- Minari's remote MuJoCo:   `mujoco/<env>/<level>-v0`, level in REMOTE_MUJOCO_LEVELS
- imported DQN-Replay data: `dqn-replay/<game>/1pct-v0` (the DT paper's 500k steps), else `<steps>steps-v0`
- local Atari builds:       `decision-seq/atari-<game>/<level>-v0` (`datasets build-atari`)
- Minari's remote Atari:    `atari/<game>/<name>-v<n>` (raw RGB frames), cached once converted as
                            `decision-seq/atari-<game>/minari-<name>-v<n>`
"""

from __future__ import annotations

import re

LEVELS: tuple[str, ...] = ("random", "medium", "medium-replay", "expert", "medium-expert")  # D4RL's levels
REMOTE_MUJOCO_LEVELS: tuple[str, ...] = ("simple", "medium", "expert")  # Minari's mujoco/* sets
D4RL_ENV_NAMES: tuple[str, ...] = ("hopper", "halfcheetah", "walker2d")

BUILTIN_NAMESPACE = "decision-seq"
D4RL_NAMESPACE = "d4rl"
DQN_REPLAY_NAMESPACE = "dqn-replay"
DQN_REPLAY_1PCT_STEPS = 500_000  # the DT paper's 1% of DQN-Replay's 50M steps per game
D4RL_VERSION = 2
REBUILD_VERSION = 0

_ENVS = "|".join(D4RL_ENV_NAMES)
D4RL_ID = re.compile(rf"^{D4RL_NAMESPACE}/(?P<env>{_ENVS})/(?P<level>[a-z-]+)-v{D4RL_VERSION}$")
MINARI_ATARI_ID = re.compile(r"^atari/(?P<game>[a-z0-9]+)/(?P<name>[a-z0-9-]+)-v(?P<version>\d+)$")
REBUILD_ID = re.compile(rf"^{BUILTIN_NAMESPACE}/(?P<env>{_ENVS})/(?P<level>[a-z-]+)-v\d+$")


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; valid levels: {', '.join(LEVELS)}")
    return level


def builtin_id(env_name: str) -> str:
    """Id of a built-in set: 'pendulum' -> 'decision-seq/pendulum/mixed-v0'."""
    return f"{BUILTIN_NAMESPACE}/{env_name}/mixed-v0"


def rebuild_id(env_name: str, level: str, namespace: str = BUILTIN_NAMESPACE) -> str:
    """Id of a D4RL-style rebuild: ('hopper', 'medium-replay') -> 'decision-seq/hopper/medium-replay-v0'."""
    return f"{namespace}/{env_name.lower()}/{check_level(level)}-v{REBUILD_VERSION}"


def d4rl_id(env_name: str, level: str, version: int = D4RL_VERSION) -> str:
    """Id of an imported D4RL set: ('hopper', 'medium') -> 'd4rl/hopper/medium-v2'."""
    return f"{D4RL_NAMESPACE}/{env_name}/{check_level(level)}-v{version}"


def dqn_replay_id(game: str, steps: int = DQN_REPLAY_1PCT_STEPS) -> str:
    """Id of imported DQN-Replay data: ('Breakout', 500000) -> 'dqn-replay/breakout/1pct-v0'."""
    level = "1pct" if steps == DQN_REPLAY_1PCT_STEPS else f"{steps}steps"
    return f"{DQN_REPLAY_NAMESPACE}/{game.lower()}/{level}-v0"


def atari_build_id(game: str, level: str) -> str:
    """Id of a local Atari build: ('Breakout', 'mixed') -> 'decision-seq/atari-breakout/mixed-v0'."""
    return f"{BUILTIN_NAMESPACE}/atari-{game.lower()}/{level}-v{REBUILD_VERSION}"


def minari_atari_id(game: str, name: str = "expert", version: int = 0) -> str:
    """Id of one of Minari's remote Atari sets: ('Breakout', 'expert') -> 'atari/breakout/expert-v0'."""
    return f"atari/{game.lower()}/{name}-v{version}"


def minari_atari_cache_id(source_id: str) -> str:
    """Id of the 84x84-grayscale copy of a Minari Atari set: 'atari/breakout/expert-v0' ->
    'decision-seq/atari-breakout/minari-expert-v0'."""
    m = MINARI_ATARI_ID.match(source_id)
    if m is None:
        raise ValueError(f"not a Minari Atari id (atari/<game>/<name>-v<n>): {source_id!r}")
    return f"{BUILTIN_NAMESPACE}/atari-{m['game']}/minari-{m['name']}-v{m['version']}"


def check_dataset_id(dataset_id: str, example: str) -> str:
    """A valid Minari id ((namespace/)name-v<version>), else one ValueError line showing `example`."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise ValueError(
            f"invalid dataset id {dataset_id!r}; Minari ids look like (namespace/)name-v<version>, e.g. {example}"
        ) from None
    return dataset_id


def remote_mujoco_id(env_name: str, level: str) -> str:
    """Id of one of Minari's remote MuJoCo sets: ('hopper', 'medium') -> 'mujoco/hopper/medium-v0'."""
    return f"mujoco/{env_name}/{level}-v0"


def d4rl_task(dataset_id: str) -> tuple[str, bool] | None:
    """('hopper-medium', exact) for an imported D4RL set (exact=True) or one of our rebuilds (False)."""
    m = D4RL_ID.match(dataset_id)
    exact = m is not None
    m = m or REBUILD_ID.match(dataset_id)
    return None if m is None else (f"{m['env']}-{m['level']}", exact)


def dataset_stem(dataset_id: str) -> str:
    """The id without its version: runs on two versions of one dataset share a leaderboard group."""
    return re.sub(r"-v\d+$", "", dataset_id)
