"""Import D4RL MuJoCo datasets (hopper, halfcheetah, walker2d) as local Minari datasets.

Two input layouts are read:
- the HDF5 files D4RL downloads (e.g. `hopper_medium_replay-v2.hdf5`): flat step arrays
  `observations (N, S)`, `actions (N, A)`, `rewards (N,)`, `terminals (N,)`, `timeouts (N,)` (missing in
  the oldest files), optionally `next_observations (N, S)`, `infos/*` and `metadata/*`;
- the per-trajectory pickles written by the Decision Transformer repo's download script
  (e.g. `hopper-medium-replay-v2.pkl`: a list of dicts of arrays), only when explicitly allowed,
  since unpickling a file runs whatever code it contains.

Episodes end at `terminals` or `timeouts`; a trailing partial episode is kept, marked truncated.
Minari stores T+1 observations per episode; how the final one is obtained is explained at
`split_episodes`. The datasets get D4RL's reference returns (so normalized scores follow the D4RL
convention) and the nearest Gymnasium evaluation env (`Hopper-v5`, ...): D4RL's data was collected
on the mujoco-py `-v3` envs, whose dynamics and observations are close to, but not exactly, v5's.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from tqdm.auto import tqdm

from decision_seq.datasets.builtin import (
    _AUTHOR,
    _AUTHOR_EMAIL,
    create_dataset_atomically,
    dataset_exists_locally,
)

log = logging.getLogger(__name__)

_CODE_PERMALINK = "decision_seq/data/d4rl.py (decision-seq package)"


@dataclass(frozen=True)
class D4RLEnv:
    """What the suite knows about one D4RL MuJoCo environment."""

    name: str  # D4RL's name: hopper, halfcheetah, walker2d
    eval_env_id: str  # nearest Gymnasium env
    collection_env_id: str  # the mujoco-py env D4RL's data came from
    ref_min_score: float  # D4RL's random-policy return
    ref_max_score: float  # D4RL's expert return
    dt_targets: tuple[float, float]  # Decision Transformer paper's evaluation targets


# D4RL reference returns (random / expert) and the DT paper's targets.
D4RL_ENVS: dict[str, D4RLEnv] = {
    "hopper": D4RLEnv("hopper", "Hopper-v5", "Hopper-v3", -20.272305, 3234.3, (3600.0, 1800.0)),
    "halfcheetah": D4RLEnv("halfcheetah", "HalfCheetah-v5", "HalfCheetah-v3", -280.178953, 12135.0, (12000.0, 6000.0)),
    "walker2d": D4RLEnv("walker2d", "Walker2d-v5", "Walker2d-v3", 1.629008, 4592.3, (5000.0, 2500.0)),
}
D4RL_LEVELS: tuple[str, ...] = ("random", "medium", "medium-replay", "expert", "medium-expert")

HDF5_REQUIRED = ("observations", "actions", "rewards", "terminals")
_EXPECTED_LAYOUT = (
    "expected a D4RL HDF5 file with datasets observations (N, obs_dim), actions (N, act_dim), rewards (N,), "
    "terminals (N,) and optionally timeouts (N,), next_observations (N, obs_dim)"
)

# hopper_medium_replay-v2, hopper-medium-replay-v2, halfcheetah_medium_expert (version optional)
_NAME_RE = re.compile(
    r"^(?P<env>[a-z0-9]+)[-_](?P<level>[a-z]+(?:[-_][a-z]+)?)(?:[-_]v(?P<version>\d+))?$"
)


def _valid_names() -> str:
    return f"envs: {', '.join(D4RL_ENVS)}; levels: {', '.join(D4RL_LEVELS)}"


def check_env_level(env: str, level: str) -> tuple[str, str]:
    """Normalize (`medium_replay` -> `medium-replay`) and validate an env and a level name."""
    env, level = env.lower(), level.lower().replace("_", "-")
    if env not in D4RL_ENVS:
        raise ValueError(f"unknown D4RL env {env!r}; valid {_valid_names()}")
    if level not in D4RL_LEVELS:
        raise ValueError(f"unknown D4RL level {level!r}; valid {_valid_names()}")
    return env, level


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


def d4rl_dataset_id(env: str, level: str, version: int = 2) -> str:
    """Default Minari id of an imported D4RL dataset: `d4rl/<env>/<level>-v<version>`."""
    env, level = check_env_level(env, level)
    return f"d4rl/{env}/{level}-v{version}"


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


@dataclass
class D4RLArrays:
    """The flat step arrays of a D4RL file (N steps)."""

    observations: np.ndarray  # (N, S)
    actions: np.ndarray  # (N, A)
    rewards: np.ndarray  # (N,)
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray | None  # (N,) bool; None in files that predate them
    next_observations: np.ndarray | None  # (N, S)
    metadata: dict[str, str]  # scalar entries of metadata/* and file attributes, as text


def _check_lengths(path: Path, arrays: Mapping[str, np.ndarray | None]) -> int:
    """Shapes: observations/actions 2-D, flags and rewards (N,) or (N, 1), every first dim equal N."""
    scalars = [k for k, v in arrays.items() if v is not None and v.ndim == 0]
    if scalars:
        raise ValueError(f"{path}: {', '.join(scalars)} is a scalar, expected one row per step")
    lengths = {k: v.shape[0] for k, v in arrays.items() if v is not None}
    n = lengths["observations"]
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: inconsistent lengths {lengths}; every array must have one row per step")
    for key in ("observations", "actions", "next_observations"):
        if arrays.get(key) is not None and arrays[key].ndim != 2:
            raise ValueError(f"{path}: {key} has shape {arrays[key].shape}, expected (N, dim)")
    nxt = arrays.get("next_observations")
    if nxt is not None and nxt.shape != arrays["observations"].shape:
        raise ValueError(f"{path}: next_observations has shape {nxt.shape} but observations "
                         f"{arrays['observations'].shape}; they must match")
    for key in ("rewards", "terminals", "timeouts"):
        a = arrays.get(key)
        if a is not None and not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
            raise ValueError(f"{path}: {key} has shape {a.shape}, expected (N,)")
    if n == 0:
        raise ValueError(f"{path}: the file holds no steps")
    return n


def _as_text(value, limit: int = 200) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, np.ndarray) and value.size == 1:
        return _as_text(value.reshape(()).item(), limit)
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_d4rl_hdf5(path: str | Path) -> D4RLArrays:
    """Read and validate a D4RL HDF5 file; ValueError naming the file and the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path}: not an HDF5 file; {_EXPECTED_LAYOUT}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in HDF5_REQUIRED if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                found = ", ".join(sorted(f.keys())) or "nothing"
                raise ValueError(f"{path}: missing {', '.join(missing)} (found: {found}); {_EXPECTED_LAYOUT}")

            def read(key: str) -> np.ndarray | None:
                return f[key][()] if isinstance(f.get(key), h5py.Dataset) else None

            arrays = {k: read(k) for k in ("observations", "actions", "rewards", "terminals", "timeouts",
                                           "next_observations")}
            # Only small scalar metadata (algorithm name, iteration, ...): D4RL also stores policy weights there.
            metadata = {f"attrs/{k}": _as_text(v) for k, v in f.attrs.items()}
            if isinstance(f.get("metadata"), h5py.Group):
                for key, item in f["metadata"].items():
                    if isinstance(item, h5py.Dataset) and item.size <= 1:
                        metadata[key] = _as_text(item[()])
    except OSError as err:  # h5py: truncated or damaged file
        raise ValueError(f"{path}: cannot read the HDF5 file ({err})") from err
    _check_lengths(path, arrays)
    return D4RLArrays(
        observations=arrays["observations"],
        actions=arrays["actions"],
        rewards=arrays["rewards"].reshape(-1),
        terminals=arrays["terminals"].reshape(-1).astype(bool),
        timeouts=None if arrays["timeouts"] is None else arrays["timeouts"].reshape(-1).astype(bool),
        next_observations=arrays["next_observations"],
        metadata=metadata,
    )


_PICKLE_KEYS = ("observations", "actions", "rewards", "terminals")


def read_dt_pickle(path: str | Path, *, allow_pickle: bool = False) -> list[dict[str, np.ndarray]]:
    """Read the Decision Transformer repo's per-trajectory pickle (a list of dicts of arrays).

    Unpickling can run arbitrary code, so this refuses unless `allow_pickle` is set.
    """
    path = Path(path)
    if not allow_pickle:
        raise ValueError(
            f"{path}: is a pickle file; loading a pickle runs any code it contains, so it is refused unless you "
            f"trust the file and pass --allow-pickle (or convert it to D4RL's HDF5 layout)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    log.warning("unpickling %s: this runs any code the file contains; only do this with files you trust", path)
    try:
        with open(path, "rb") as fh:
            trajectories = pickle.load(fh)  # noqa: S301 - explicitly allowed by the caller
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise ValueError(f"{path}: cannot unpickle the file ({type(err).__name__}: {err})") from err
    expected = "expected a list of dicts with observations, next_observations, actions, rewards, terminals arrays"
    if not isinstance(trajectories, list) or not trajectories:
        raise ValueError(f"{path}: holds a {type(trajectories).__name__}; {expected}")
    out = []
    for i, traj in enumerate(trajectories):
        if not isinstance(traj, Mapping):
            raise ValueError(f"{path}: trajectory {i} is a {type(traj).__name__}; {expected}")
        missing = [k for k in _PICKLE_KEYS if k not in traj]
        if missing:
            raise ValueError(f"{path}: trajectory {i} lacks {', '.join(missing)}; {expected}")
        arrays = {k: np.asarray(traj[k]) for k in (*_PICKLE_KEYS, "next_observations") if k in traj}
        _check_lengths(Path(f"{path} (trajectory {i})"), arrays)
        dims = (arrays["observations"].shape[1], arrays["actions"].shape[1])
        first = (out[0]["observations"].shape[1], out[0]["actions"].shape[1]) if out else dims
        if dims != first:
            raise ValueError(f"{path}: trajectory {i} has (obs, action) sizes {dims}, trajectory 0 has {first}")
        out.append(arrays)
    return out


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------


def _episode(obs: np.ndarray, act: np.ndarray, rew: np.ndarray, term: np.ndarray, trunc: np.ndarray) -> EpisodeBuffer:
    return EpisodeBuffer(
        observations=obs.astype(np.float32),  # (T+1, S)
        actions=act.astype(np.float32),  # (T, A)
        rewards=rew.astype(np.float64).reshape(-1),  # (T,)
        terminations=term.astype(bool).reshape(-1),
        truncations=trunc.astype(bool).reshape(-1),
        infos={},  # D4RL's infos/* (qpos, qvel, ...) are not carried over
    )


def episode_from_steps(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminal: bool,
    final_observation: np.ndarray | None,
) -> EpisodeBuffer | None:
    """One episode of T steps -> a Minari EpisodeBuffer (T+1 observations), or None if nothing remains.

    `terminal`: whether the last step is a termination (else the episode is truncated: a time limit or
    the end of the data). `final_observation`: the observation after the last step, if known.
    When it is not known:
    - terminal: the last observation is repeated as a placeholder. Nothing uses the observation after
      a termination (no bootstrapping past it; the DT pipeline drops every final observation), and
      dropping the step instead would lose its reward and the termination itself.
    - truncated: the last transition is dropped, so observations[T-1] becomes the (true) final
      observation of the shortened episode. This is D4RL's own `qlearning_dataset` convention for
      timeouts: the next row is already the next episode's reset observation.
    """
    T = len(rewards)
    term = np.zeros(T, bool)
    trunc = np.zeros(T, bool)
    if final_observation is not None:
        obs = np.concatenate([observations, final_observation[None]])  # (T+1, S)
    elif terminal:
        obs = np.concatenate([observations, observations[-1:]])  # placeholder, see above
    else:
        T -= 1
        if T == 0:
            return None
        obs, actions, rewards = observations[: T + 1], actions[:T], rewards[:T]
        term, trunc = term[:T], trunc[:T]
    if terminal:
        term[-1] = True
    else:
        trunc[-1] = True
    return _episode(obs, actions, rewards, term, trunc)


def split_episodes(data: D4RLArrays) -> tuple[list[EpisodeBuffer], dict[str, int]]:
    """Cut D4RL's flat step arrays into episodes at terminals or timeouts.

    A step flagged both terminal and timeout counts as a termination (and keeps its truncation
    flag). A trailing partial episode (no flag on the file's last step) is kept as truncated.
    Returns the episodes and counts (terminated, timeouts, partial, dropped_transitions, empty).
    """
    n = len(data.rewards)
    timeouts = np.zeros(n, bool) if data.timeouts is None else data.timeouts
    ends = np.flatnonzero(data.terminals | timeouts)  # (E,) last row of each episode
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)  # trailing partial episode
    starts = np.concatenate([[0], ends[:-1] + 1])
    stats = {"terminated": 0, "timeouts": 0, "partial": 0, "dropped_transitions": 0, "empty": 0}
    episodes = []
    for s, e in zip(starts, ends):
        terminal = bool(data.terminals[e])
        final = None if data.next_observations is None else data.next_observations[e]
        ep = episode_from_steps(data.observations[s:e + 1], data.actions[s:e + 1], data.rewards[s:e + 1],
                                terminal, final)
        stats["terminated" if terminal else "timeouts" if timeouts[e] else "partial"] += 1
        if final is None and not terminal:
            stats["dropped_transitions"] += 1
        if ep is None:
            stats["empty"] += 1
            continue
        if terminal and timeouts[e]:
            ep.truncations[-1] = True  # both flags, as the file says
        episodes.append(ep)
    return episodes, stats


def episodes_from_trajectories(trajectories: Iterable[Mapping[str, np.ndarray]]) -> list[EpisodeBuffer]:
    """The DT repo's per-trajectory dicts -> episodes. A trajectory is one episode; it ends terminated
    when its last `terminals` flag is set, else truncated (time limit). `next_observations[-1]` gives
    the final observation when present (otherwise as in `episode_from_steps`)."""
    episodes = []
    for traj in trajectories:
        terminals = np.asarray(traj["terminals"]).reshape(-1).astype(bool)
        final = traj["next_observations"][-1] if "next_observations" in traj else None
        ep = episode_from_steps(traj["observations"], traj["actions"], np.asarray(traj["rewards"]).reshape(-1),
                                bool(terminals[-1]), final)
        if ep is not None:
            # Keep any earlier flags as recorded (the DT script cuts trajectories at them, so normally none).
            ep.terminations[:-1] |= terminals[: len(ep.rewards) - 1]
            episodes.append(ep)
    return episodes


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
        dataset_id = d4rl_dataset_id(env, level, 2 if version is None else version)
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise ValueError(
            f"invalid dataset id {dataset_id!r}; Minari ids look like (namespace/)name-v<version>, "
            f"e.g. d4rl/{env}/{level}-v2"
        ) from None
    return env, level, dataset_id


def plan_import(path: str | Path, *, env: str | None = None, level: str | None = None,
                dataset_id: str | None = None, overwrite: bool = False) -> tuple[str, str, str]:
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

    env/level default to those in the file name; dataset_id to `d4rl/<env>/<level>-v<version>`
    (version from the file name, else 2). Written atomically (temp dir, then rename); an existing id
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
            log.warning("%s has no timeouts: episodes end only at terminals, so episodes cut by the time limit "
                        "are merged with the next one", path)
        episodes, stats = split_episodes(data)
        log.info("%s: %d episodes (%d terminated, %d time limits, %d partial)%s", path, len(episodes),
                 stats["terminated"], stats["timeouts"], stats["partial"],
                 f"; {stats['dropped_transitions']} final transitions dropped (no next_observations)"
                 if stats["dropped_transitions"] else "")
        source = "D4RL's HDF5 file"
        extra = "".join(f" {k}: {v}." for k, v in data.metadata.items())
    if not episodes:
        raise ValueError(f"{path}: no episode with at least one step")
    outside = max(float(np.max(np.abs(ep.actions))) for ep in episodes)
    if outside > float(np.max(action_space.high)) + 1e-6:
        log.warning("%s: actions reach %.4g, outside %s's bounds [-1, 1]", path, outside, spec.eval_env_id)

    log.warning(
        "D4RL data was collected on the mujoco-py %s env; %s is evaluated on Gymnasium's %s, whose dynamics and "
        "observations are nearly but not exactly the same, so scores are not strictly comparable with D4RL's",
        spec.collection_env_id, dataset_id, spec.eval_env_id,
    )
    description = (
        f"D4RL {env}-{level} imported from {path.name} ({source}); {len(episodes)} episodes. Episodes end at "
        f"terminals or timeouts; without next_observations a time-limited or partial episode loses its last "
        f"transition and a terminated one repeats its last observation. Collected on mujoco-py "
        f"{spec.collection_env_id}; evaluated on Gymnasium {spec.eval_env_id} (dynamics and observations nearly but "
        f"not exactly the same). Reference returns: D4RL's random ({spec.ref_min_score}) and expert "
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
            author=_AUTHOR,
            author_email=_AUTHOR_EMAIL,
            code_permalink=_CODE_PERMALINK,
            description=description,
        )
    log.info("imported %s as %s (%d episodes, %d steps)", path, dataset_id, dataset.total_episodes,
             dataset.total_steps)
    return dataset
