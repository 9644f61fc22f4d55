"""The SAC run's resumable state in its work dir, and reading it back.

Training state is committed atomically every `snapshot_every` steps, so a rerun of the same command
resumes where an interrupted one stopped, and a finished run is reused:

    work_dir/
      state.json                   commit point: settings, step, snapshots + eval returns, replay
                                   chunks, RNG states, current agent file
      agent-<step>.pt              SAC networks, optimizers, entropy temperature, torch RNG
      snapshots/actor-<step>.pt    policy snapshots (actor state dict)
      replay/<start>-<end>.npz     the replay buffer in append-only chunks (SB3 layout: actions
                                   scaled to [-1, 1])

Files are written to a temporary name and renamed; `torch.load(weights_only=True)` and
`np.load(allow_pickle=False)` read them back, so nothing unpickles arbitrary objects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from decision_seq.utils.fileio import atomic_write

_STATE_FORMAT = "decision-seq-sac-build/1"
# Arrays of a replay chunk file, each (n, ...) for the chunk's n env steps, in SB3's buffer layout.
REPLAY_KEYS = ("obs", "next_obs", "actions", "rewards", "dones", "timeouts")


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
            work_dir=work_dir,
            settings=state["settings"],
            step=int(state["step"]),
            snapshots=[Snapshot(int(s["step"]), [float(r) for r in s["eval_returns"]]) for s in state["snapshots"]],
            replay_chunks=[(int(a), int(b)) for a, b in state["replay_chunks"]],
            agent_file=state["agent_file"],
            rng=state["rng"],
            n_updates=int(state["n_updates"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is not a decision-seq SAC build state ({err}); delete {work_dir} or pass another --work-dir"
        ) from None


def save_training_state(run: TrainingRun) -> None:
    """Write state.json atomically: the commit point of everything written before it."""
    state = {
        "format": _STATE_FORMAT,
        "settings": run.settings,
        "step": run.step,
        "snapshots": [asdict(s) for s in run.snapshots],
        "replay_chunks": [list(c) for c in run.replay_chunks],
        "agent_file": run.agent_file,
        "rng": run.rng,
        "n_updates": run.n_updates,
    }
    atomic_write(run.work_dir / "state.json", lambda tmp: tmp.write_text(json.dumps(state)))


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: given a path, np.savez would append ".npz" to the temp name
        np.savez(f, **arrays)


def save_replay_chunk(run: TrainingRun, start: int, end: int, chunk: dict[str, np.ndarray]) -> None:
    """Write the replay transitions [start, end) (arrays named REPLAY_KEYS) atomically; state.json commits it."""
    atomic_write(run.chunk_path(start, end), lambda tmp: _savez(tmp, chunk))


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
    parts: dict[str, list[np.ndarray]] = {k: [] for k in REPLAY_KEYS}
    for start, end in run.replay_chunks:
        if start >= upto:
            break
        with np.load(run.chunk_path(start, end), allow_pickle=False) as chunk:
            for key in parts:
                parts[key].append(chunk[key][: upto - start])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return ReplayData(
        observations=cat["obs"],
        next_observations=cat["next_obs"],
        actions=cat["actions"],
        rewards=cat["rewards"],
        terminations=cat["dones"] & ~cat["timeouts"],
        truncations=cat["timeouts"],
    )
