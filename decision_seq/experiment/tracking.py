"""Experiment tracking: Weights & Biases (offline unless asked otherwise) or nothing.

Whatever the logger, every run also writes results.json (see `decision_seq.experiment.results`): the
leaderboard reads those files, never logs. Logging must never kill training.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class NoLogger:
    """logger=none: metrics go nowhere (results.json still gets written)."""

    run_dir: Path | None = None

    def log(self, metrics: dict, step: int) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger:
    """A wandb run. Mode: `mode` if given, else $WANDB_MODE, else offline (no network needed)."""

    def __init__(
        self,
        *,
        project: str,
        config: dict,
        out_dir: Path,
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        mode: str | None = None,
        entity: str | None = None,
    ):
        import wandb  # imported here: logger=none never pays for it

        self._wandb = wandb
        mode = mode or os.environ.get("WANDB_MODE") or "offline"
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"logger.mode={mode!r} is not a wandb mode; valid: online, offline, disabled")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # silent: W&B's own ~40 lines per run (banner, sync hints, history tables) become the one line below.
        kwargs = dict(
            project=project,
            entity=entity,
            config=config,
            dir=str(out_dir),
            name=name,
            group=group,
            tags=tags,
            reinit="finish_previous",
            settings=wandb.Settings(silent=True),
        )
        try:
            self.run = wandb.init(mode=mode, **kwargs)
        except Exception as err:  # no network, no API key, server down: training never dies for logging
            if mode != "online":
                raise
            log.warning(
                "wandb online init failed (%s: %s); logging offline instead, upload later with `wandb sync`",
                type(err).__name__,
                err,
            )
            mode = "offline"
            self.run = wandb.init(mode=mode, **kwargs)
        self.mode = mode
        self.run_dir = Path(self.run.dir).parent if mode != "disabled" else None
        if mode == "offline":
            log.info("W&B run (offline) in %s; upload it with: wandb sync %s", self.run_dir, self.run_dir)
        elif mode == "online":
            log.info("W&B run: %s", self.run.url)

    def log(self, metrics: dict, step: int) -> None:
        try:
            self.run.log(metrics, step=step)
        except Exception as err:  # never let tracking kill a training run
            log.warning("wandb.log failed at step %d: %s", step, err)

    def summary(self, values: dict) -> None:
        try:
            self.run.summary.update(values)
        except Exception as err:
            log.warning("wandb summary update failed: %s", err)

    def finish(self) -> None:
        self._wandb.finish()


def make_logger(kind: str, **kwargs):
    """kind: 'wandb' or 'none'."""
    if kind == "none":
        return NoLogger()
    if kind == "wandb":
        return WandbLogger(**kwargs)
    raise ValueError(f"unknown logger {kind!r}; valid loggers: wandb, none")
