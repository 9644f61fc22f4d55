"""Reading D4RL's files and cutting their flat rows into Minari episodes (the import itself is d4rl.py).

Two input layouts are read:
- the HDF5 files D4RL downloads (e.g. `hopper_medium_replay-v2.hdf5`): flat step arrays
  `observations (N, S)`, `actions (N, A)`, `rewards (N,)`, `terminals (N,)`, `timeouts (N,)` (missing in
  the oldest files), optionally `next_observations (N, S)`, `infos/*` and `metadata/*`;
- the per-trajectory pickles written by the Decision Transformer repo's download script
  (e.g. `hopper-medium-replay-v2.pkl`: a list of dicts of arrays), only when explicitly allowed,
  since unpickling a file runs whatever code it contains.

Episodes end at `terminals` or `timeouts`; a trailing partial episode is kept, marked truncated.
Minari stores T+1 observations per episode; how the final one is obtained when the file does not say
is explained at `episode_from_steps` (D4RL's own `qlearning_dataset` convention for timeouts).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from minari.data_collector import EpisodeBuffer

log = logging.getLogger(__name__)

HDF5_REQUIRED = ("observations", "actions", "rewards", "terminals")
_EXPECTED_LAYOUT = (
    "expected a D4RL HDF5 file with datasets observations (N, obs_dim), actions (N, act_dim), rewards (N,), "
    "terminals (N,) and optionally timeouts (N,), next_observations (N, obs_dim)"
)


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
        raise ValueError(
            f"{path}: next_observations has shape {nxt.shape} but observations "
            f"{arrays['observations'].shape}; they must match"
        )
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

            arrays = {
                k: read(k) for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
            }
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
            trajectories = pickle.load(fh)  # explicitly allowed by the caller (allow_pickle)
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
    for s, e in zip(starts, ends, strict=True):
        terminal = bool(data.terminals[e])
        final = None if data.next_observations is None else data.next_observations[e]
        ep = episode_from_steps(
            data.observations[s : e + 1], data.actions[s : e + 1], data.rewards[s : e + 1], terminal, final
        )
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
        ep = episode_from_steps(
            traj["observations"], traj["actions"], np.asarray(traj["rewards"]).reshape(-1), bool(terminals[-1]), final
        )
        if ep is not None:
            # Keep any earlier flags as recorded (the DT script cuts trajectories at them, so normally none).
            ep.terminations[:-1] |= terminals[: len(ep.rewards) - 1]
            episodes.append(ep)
    return episodes
