"""Hydra callback summing up a multirun sweep: one results table, the failed jobs with their errors,
and a non-zero exit when any job failed (the others' results are all kept)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from decision_seq.cli.exit_codes import EXIT_SWEEP_FAILED
from decision_seq.experiment.report import print_results_table
from decision_seq.experiment.results import RESULTS_FILE

log = logging.getLogger(__name__)


def collect_results(sweep_dir: Path) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Completed results.json of every job dir under `sweep_dir`, and (job dir, reason) for the others."""
    done, failed = [], []
    for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()):
        f = job / RESULTS_FILE
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and data.get("status") == "completed":
            done.append(data)
        elif data is None:
            failed.append((job, f"no readable {RESULTS_FILE} (killed, or failed before training started)"))
        else:
            failed.append((job, f"status {data.get('status')!r}" + (f": {data['error']}" if data.get("error") else "")))
    return done, failed


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        done, failed = collect_results(sweep_dir)
        if done:
            print_results_table(done, title=f"sweep {sweep_dir}")
            print(f"leaderboard: decision-seq leaderboard {sweep_dir}")
        for job, reason in failed:
            log.error("job %s did not complete: %s", job.name, reason)
        if failed:
            log.error(
                "%d of %d jobs did not complete: %s (their logs and results.json are in %s); the completed "
                "jobs' results are kept",
                len(failed),
                len(done) + len(failed),
                ", ".join(job.name for job, _ in failed),
                sweep_dir,
            )
            # Hydra turns a callback's exception into a warning; the exit status must say the sweep failed.
            sys.exit(EXIT_SWEEP_FAILED)
