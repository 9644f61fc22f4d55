"""The Hydra apps behind `decision-seq train` and `decision-seq eval`, and how their errors end a run.

A known input error ends a single run with one clear line and exit code 2, a non-finite loss with exit
code 3, a stop signal with exit code 75 after the checkpoint. In a `-m` sweep any other error ends only
its own job: it is logged with its traceback, recorded in the job's results.json (status "failed"), and
the other jobs go on; the sweep summary (`experiment.sweep`) names the failed jobs and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from decision_seq.cli.exit_codes import EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_PREEMPTED

log = logging.getLogger("decision_seq")

CONFIG_PATH = "pkg://decision_seq.conf"  # the top-level conf/, installed as the package decision_seq.conf


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the input (config, dataset, checkpoint, paths): one line, exit code 2."""
    from decision_seq.data.episodes import DatasetNotFoundError
    from decision_seq.datasets.minari_io import RemoteUnavailableError
    from decision_seq.training.checkpoint import CheckpointError

    return (DatasetNotFoundError, CheckpointError, RemoteUnavailableError, FileNotFoundError, ValueError)


def _guarded(fn, cfg: DictConfig):
    from decision_seq.training.trainer import NonFiniteError, TrainingPreempted

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return fn(cfg, out_dir)
    except TrainingPreempted as err:
        log.warning("%s", err)
        sys.exit(EXIT_PREEMPTED)
    except Exception as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.exception("job failed: %s", err)
            record_failure(out_dir, err)
            return None
        if isinstance(err, (*user_errors(), NonFiniteError)):
            log.error("%s", err)
            sys.exit(EXIT_NONFINITE if isinstance(err, NonFiniteError) else EXIT_BAD_INPUT)
        raise


def record_failure(out_dir: Path, err: BaseException) -> None:
    """Mark the job's results.json failed with the error, keeping what the run already recorded."""
    from decision_seq.experiment.results import RESULTS_FILE, write_json_atomic

    path = out_dir / RESULTS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    record.update(
        status="failed",
        error=f"{type(err).__name__}: {err}",
        traceback="".join(traceback.format_exception(err)),
        overrides=list(HydraConfig.get().overrides.task),
        output_dir=str(out_dir),
    )
    try:
        write_json_atomic(path, record)
    except OSError as write_err:  # a full disk must not hide the job's own error
        log.error("could not record the failure in %s: %s", path, write_err)


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    from decision_seq.experiment.recipe import run_training

    results = _guarded(run_training, cfg)
    return None if results is None else results["best"]["score"]  # the value a Hydra sweeper optimizes


@hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> float | None:
    from decision_seq.experiment.recipe import run_eval

    results = _guarded(run_eval, cfg)
    return None if results is None else results["final"]["score"]
