"""Checkpoints: everything needed to use the weights (model arguments, normalization stats, config)
and to resume training exactly (optimizer, scheduler, step, RNG states, evaluations so far).

Files are written to a temporary name and renamed, so a crash never leaves a torn checkpoint, and
loading uses `torch.load(weights_only=True)`: only tensors and plain containers, never arbitrary
pickled objects. RNG states are stored as tensors and plain tuples for that reason.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from decision_seq.utils.fileio import atomic_write

FORMAT = "decision-seq-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable decision-seq checkpoint."""


def atomic_torch_save(obj, path: Path) -> None:
    """`torch.save(obj, path)` through a temp file and a rename: `path` is the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Atomically replace `dst` with a byte copy of the finished checkpoint `src` (no re-serialization)."""
    atomic_write(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temp files left by a process killed mid-write (never a finished checkpoint)."""
    stale = [p for p in Path(directory).glob(".*.tmp*") if p.is_file()] if Path(directory).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: Path, **payload) -> None:
    """Write `payload` (model, model_kwargs, optimizer, scheduler, step, ...) with our format tag."""
    atomic_torch_save({"format": FORMAT, "version": VERSION, **payload}, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and validate a decision-seq checkpoint; clear errors for missing, foreign or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist (expected a .pt file written by decision-seq train)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read safely ({type(err).__name__}: {err}); "
            "it is corrupt or not a decision-seq checkpoint"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a decision-seq checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {ckpt.get('version')}; "
            f"this decision-seq reads version {VERSION}"
        )
    return ckpt
