"""Import D4RL MuJoCo datasets (hopper, halfcheetah, walker2d) as local Minari datasets.

What the suite knows about each D4RL env (`D4RL_ENVS`: reference returns, evaluation env), how D4RL's
files and the imported datasets are named, and the import: `plan_import` resolves and checks a file's
dataset id without reading it, `import_d4rl` reads the file (d4rl_files.py: HDF5, or the Decision
Transformer repo's pickles), cuts it into episodes and writes it atomically.

The datasets get D4RL's reference returns (so normalized scores follow the D4RL convention) and the
Gymnasium evaluation env whose model matches the data: D4RL was collected on the mujoco-py `-v3` envs,
and Gymnasium's `-v4` envs keep the v3 models and rewards on the maintained `mujoco` bindings (`-v5`
changes Walker2d's foot friction and the reward of the last, unhealthy step; docs/eval-envs.md).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.dataset.minari_dataset import parse_dataset_id
from tqdm.auto import tqdm

from decision_seq.datasets.d4rl_files import episodes_from_trajectories, read_d4rl_hdf5, read_dt_pickle, split_episodes
from decision_seq.datasets.minari_io import AUTHOR, AUTHOR_EMAIL, create_dataset_atomically, dataset_exists_locally
from decision_seq.datasets.naming import D4RL_VERSION, LEVELS, d4rl_id

log = logging.getLogger(__name__)

_CODE_PERMALINK = "decision_seq/datasets/d4rl.py (decision-seq package)"


@dataclass(frozen=True)
class D4RLEnv:
    """What the suite knows about one D4RL MuJoCo environment."""

    name: str  # D4RL's name: hopper, halfcheetah, walker2d
    eval_env_id: str  # the Gymnasium env with the collection env's model (docs/eval-envs.md)
    collection_env_id: str  # the mujoco-py env D4RL's data came from
    ref_min_score: float  # D4RL's random-policy return
    ref_max_score: float  # D4RL's expert return


# D4RL reference returns (random / expert) and the DT paper's targets. The names are naming.D4RL_ENV_NAMES
# (which the dataset-id patterns use); tests/datasets/test_d4rl.py checks that the two agree.
D4RL_ENVS: dict[str, D4RLEnv] = {
    "hopper": D4RLEnv("hopper", "Hopper-v4", "Hopper-v3", -20.272305, 3234.3),
    "halfcheetah": D4RLEnv("halfcheetah", "HalfCheetah-v4", "HalfCheetah-v3", -280.178953, 12135.0),
    "walker2d": D4RLEnv("walker2d", "Walker2d-v4", "Walker2d-v3", 1.629008, 4592.3),
}

# hopper_medium_replay-v2, hopper-medium-replay-v2, halfcheetah_medium_expert (version optional)
_NAME_RE = re.compile(r"^(?P<env>[a-z0-9]+)[-_](?P<level>[a-z]+(?:[-_][a-z]+)?)(?:[-_]v(?P<version>\d+))?$")


def _valid_names() -> str:
    return f"envs: {', '.join(D4RL_ENVS)}; levels: {', '.join(LEVELS)}"


def check_env_level(env: str, level: str) -> tuple[str, str]:
    """Normalize (`medium_replay` -> `medium-replay`) and validate an env and a level name."""
    env, level = env.lower(), level.lower().replace("_", "-")
    if env not in D4RL_ENVS:
        raise ValueError(f"unknown D4RL env {env!r}; valid {_valid_names()}")
    if level not in LEVELS:
        raise ValueError(f"unknown D4RL level {level!r}; valid {_valid_names()}")
    return env, level


def d4rl_file_name(env: str, level: str, version: int = D4RL_VERSION) -> str:
    """D4RL's HDF5 file name of a dataset: ('hopper', 'medium-replay') -> 'hopper_medium_replay-v2.hdf5'."""
    return f"{env}_{level.replace('-', '_')}-v{version}.hdf5"


def parse_d4rl_filename(path: str | Path) -> tuple[str, str, int | None]:
    """(env, level, version or None) from a file name like `hopper_medium_replay-v2.hdf5`.

    Raises ValueError, listing the valid names, when the name does not follow D4RL's pattern.
    """
    stem = Path(path).name
    for suffix in (".hdf5", ".h5", ".pkl", ".pickle"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    match = _NAME_RE.match(stem.lower())
    if match is None or match["env"] not in D4RL_ENVS:
        raise ValueError(
            f"{path}: cannot tell the D4RL env and level from the file name (expected e.g. "
            f"hopper_medium_replay-v2.hdf5 or hopper-medium-replay-v2.pkl); pass --env and --level; "
            f"valid {_valid_names()}"
        )
    try:
        env, level = check_env_level(match["env"], match["level"])
    except ValueError as err:
        raise ValueError(f"{path}: {err} (or pass --env and --level)") from None
    return env, level, None if match["version"] is None else int(match["version"])


def d4rl_dataset_id(env: str, level: str, version: int = D4RL_VERSION) -> str:
    """Default Minari id of an imported D4RL dataset: `d4rl/<env>/<level>-v<version>` (naming.d4rl_id)."""
    env, level = check_env_level(env, level)
    return d4rl_id(env, level, version)


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------


def _eval_spaces(spec: D4RLEnv) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    env = gym.make(spec.eval_env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _check_dims(path: Path, spec: D4RLEnv, obs_dim: int, act_dim: int) -> gym.spaces.Box:
    """The data's sizes must match the eval env's spaces. Returns the eval env's action space."""
    obs_space, act_space = _eval_spaces(spec)
    if (obs_dim,) != obs_space.shape or (act_dim,) != act_space.shape:
        raise ValueError(
            f"{path}: observations have {obs_dim} features and actions {act_dim}, but {spec.eval_env_id} (the "
            f"evaluation env of D4RL {spec.name}) has {obs_space.shape[0]} and {act_space.shape[0]}; is this "
            f"really a {spec.name} file? (set --env; valid {_valid_names()})"
        )
    return act_space


def _resolve_id(path: Path, env: str | None, level: str | None, dataset_id: str | None) -> tuple[str, str, str]:
    """(env, level, dataset_id) from the arguments, falling back to the file name."""
    version = None
    if env is None or level is None:
        name_env, name_level, version = parse_d4rl_filename(path)
        env, level = env or name_env, level or name_level
    env, level = check_env_level(env, level)
    if dataset_id is None:
        dataset_id = d4rl_dataset_id(env, level, D4RL_VERSION if version is None else version)
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise ValueError(
            f"invalid dataset id {dataset_id!r}; Minari ids look like (namespace/)name-v<version>, "
            f"e.g. {d4rl_id(env, level)}"
        ) from None
    return env, level, dataset_id


def plan_import(
    path: str | Path,
    *,
    env: str | None = None,
    level: str | None = None,
    dataset_id: str | None = None,
    overwrite: bool = False,
) -> tuple[str, str, str]:
    """Resolve (env, level, dataset_id) for a file and refuse an existing id unless `overwrite`.

    Cheap (reads nothing but the name), so a multi-file import can check every file first.
    """
    path = Path(path)
    env, level, dataset_id = _resolve_id(path, env, level, dataset_id)
    if dataset_exists_locally(dataset_id) and not overwrite:
        raise FileExistsError(f"dataset {dataset_id} already exists locally; pass --overwrite to replace it")
    return env, level, dataset_id


def import_d4rl(
    path: str | Path,
    *,
    env: str | None = None,
    level: str | None = None,
    dataset_id: str | None = None,
    overwrite: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
) -> minari.MinariDataset:
    """Convert one D4RL file (HDF5, or the DT repo's pickle with `allow_pickle`) to a local Minari dataset.

    env/level default to those in the file name; dataset_id to `d4rl/<env>/<level>-v<version>` (version
    from the file name, else D4RL_VERSION = 2). Written atomically (temp dir, then rename); an existing id
    is refused unless `overwrite`, before anything is read.
    """
    path = Path(path)
    env, level, dataset_id = plan_import(path, env=env, level=level, dataset_id=dataset_id, overwrite=overwrite)
    spec = D4RL_ENVS[env]
    is_pickle = path.suffix.lower() in (".pkl", ".pickle")

    log.info("reading %s", path)
    if is_pickle:
        trajectories = read_dt_pickle(path, allow_pickle=allow_pickle)
        obs_dim, act_dim = trajectories[0]["observations"].shape[1], trajectories[0]["actions"].shape[1]
        action_space = _check_dims(path, spec, obs_dim, act_dim)
        episodes = episodes_from_trajectories(trajectories)
        source = "the Decision Transformer repo's per-trajectory pickle"
        extra = ""
    else:
        data = read_d4rl_hdf5(path)
        obs_dim, act_dim = data.observations.shape[1], data.actions.shape[1]
        action_space = _check_dims(path, spec, obs_dim, act_dim)
        if data.timeouts is None:
            log.warning(
                "%s has no timeouts: episodes end only at terminals, so episodes cut by the time limit "
                "are merged with the next one",
                path,
            )
        episodes, stats = split_episodes(data)
        log.info(
            "%s: %d episodes (%d terminated, %d time limits, %d partial)%s",
            path,
            len(episodes),
            stats["terminated"],
            stats["timeouts"],
            stats["partial"],
            f"; {stats['dropped_transitions']} final transitions dropped (no next_observations)"
            if stats["dropped_transitions"]
            else "",
        )
        source = "D4RL's HDF5 file"
        extra = "".join(f" {k}: {v}." for k, v in data.metadata.items())
    if not episodes:
        raise ValueError(f"{path}: no episode with at least one step")
    outside = max(float(np.max(np.abs(ep.actions))) for ep in episodes)
    if outside > float(np.max(action_space.high)) + 1e-6:
        log.warning("%s: actions reach %.4g, outside %s's bounds [-1, 1]", path, outside, spec.eval_env_id)

    # D4RL's v3 envs need the unmaintained mujoco-py; Gymnasium's v4 keeps their model on the new bindings.
    log.info(
        "D4RL data was collected on the mujoco-py %s env; %s is evaluated on Gymnasium's %s, the same model and "
        "reward on the maintained mujoco bindings (docs/eval-envs.md)",
        spec.collection_env_id,
        dataset_id,
        spec.eval_env_id,
    )
    description = (
        f"D4RL {env}-{level} imported from {path.name} ({source}); {len(episodes)} episodes. Episodes end at "
        f"terminals or timeouts; without next_observations a time-limited or partial episode loses its last "
        f"transition and a terminated one repeats its last observation. Collected on mujoco-py "
        f"{spec.collection_env_id}; evaluated on Gymnasium {spec.eval_env_id} (the same model and reward on the "
        f"maintained mujoco bindings). Reference returns: D4RL's random ({spec.ref_min_score}) and expert "
        f"({spec.ref_max_score}).{extra}"
    )
    behaviour = data.metadata.get("algorithm") if not is_pickle else None
    writing = tqdm(episodes, desc=f"writing {dataset_id}", unit="ep", disable=not progress)
    with warnings.catch_warnings():
        # The collection env (mujoco-py) cannot be made here, so no env spec is recorded: intended.
        warnings.filterwarnings("ignore", message=".*env_spec is None.*")
        dataset = create_dataset_atomically(
            dataset_id,
            writing,  # Minari iterates the buffers once while writing: the bar tracks the write
            overwrite=overwrite,
            env=None,
            eval_env=spec.eval_env_id,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            action_space=gym.spaces.Box(action_space.low, action_space.high, (act_dim,), np.float32),
            ref_min_score=spec.ref_min_score,
            ref_max_score=spec.ref_max_score,
            algorithm_name=f"D4RL {level}" + (f" ({behaviour})" if behaviour else ""),
            author=AUTHOR,
            author_email=AUTHOR_EMAIL,
            code_permalink=_CODE_PERMALINK,
            description=description,
        )
    log.info("imported %s as %s (%d episodes, %d steps)", path, dataset_id, dataset.total_episodes, dataset.total_steps)
    return dataset
