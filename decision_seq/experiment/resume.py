"""Resuming a run: which checkpoint to continue from, loading it (a damaged last.pt falls back to the
newest readable periodic checkpoint), and refusing one of another model (README: Resuming)."""

from __future__ import annotations

import logging
from pathlib import Path

from decision_seq.training.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger("decision_seq")


def resume_path(resume, out_dir: Path) -> Path | None:
    """Which checkpoint to continue from: an explicit path, or this run dir's last.pt if present."""
    own = out_dir / "checkpoints" / "last.pt"
    if resume in (False, None, "false"):
        return own if own.is_file() else None  # relaunching the same output dir continues it
    if resume in (True, "true"):
        if not own.is_file():
            raise CheckpointError(
                f"trainer.resume=true but there is no checkpoint at {own}; relaunch with "
                "hydra.run.dir=<the interrupted run's dir> or trainer.resume=<run dir or .pt>"
            )
        return own
    p = Path(str(resume))
    return p / "checkpoints" / "last.pt" if p.is_dir() else p


def load_resume_checkpoint(path: Path, device) -> tuple[Path, dict]:
    """Load the checkpoint to resume from. A damaged last.pt (e.g. a disk filled while copying it) falls
    back to the newest readable periodic step_*.pt beside it, with a warning; a file named explicitly
    must load as is."""
    try:
        return path, load_checkpoint(path, map_location=device)
    except CheckpointError as err:
        if path.name != "last.pt":
            raise
        for candidate in sorted(path.parent.glob("step_*.pt"), reverse=True):  # zero-padded: newest first
            try:
                ckpt = load_checkpoint(candidate, map_location=device)
            except CheckpointError:
                continue
            log.warning("%s; resuming from %s instead", err, candidate)
            return candidate, ckpt
        raise


def check_compatible(ckpt: dict, model_kwargs: dict, where: str) -> None:
    """A checkpoint must match the model being built (backbone, sizes); say which field differs."""
    saved = ckpt.get("model_kwargs", {})
    for key in ("backbone", "state_dim", "action_dim", "discrete", "embed_dim", "backbone_kwargs"):
        if saved.get(key) != model_kwargs.get(key):
            raise CheckpointError(
                f"checkpoint {where} has {key}={saved.get(key)!r} but this run's model has "
                f"{key}={model_kwargs.get(key)!r}; use a checkpoint of the same model and dataset"
            )
