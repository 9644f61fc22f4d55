"""Hydra callback printing one table for a whole multirun sweep, naming jobs that wrote no results."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from decision_seq.report import print_results_table
from decision_seq.results import RESULTS_FILE

log = logging.getLogger(__name__)


def collect_results(sweep_dir: Path) -> tuple[list[dict], list[Path]]:
    """results.json of every job dir under `sweep_dir`, and the job dirs without a completed one."""
    done, failed = [], []
    for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()):
        f = job / RESULTS_FILE
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and data.get("status") == "completed":
            done.append(data)
        else:
            failed.append(job)
    return done, failed


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        done, failed = collect_results(sweep_dir)
        if done:
            print_results_table(done, title=f"sweep {sweep_dir}")
        for job in failed:
            log.error("job %s did not complete (no completed %s)", job.name, RESULTS_FILE)
