"""`decision-seq` command line. train and eval are Hydra apps (key=value overrides,
-m for multirun sweeps, --help for config groups and keys); datasets and leaderboard are argparse tools."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from decision_seq.experiment.resources import parallel_jobs_default

log = logging.getLogger("decision_seq")

# Exit codes (README: "Resuming, preemption and exit codes").
EXIT_BAD_INPUT = 2  # a known input error, one line
EXIT_NONFINITE = 3  # NaN/inf loss or gradient norm; checkpoints/last.pt is the last good state
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after saving checkpoints/last.pt; relaunch to resume

USAGE = """usage: decision-seq <command> [key=value ...] [-m] [--help]

Return-conditioned sequence models (Decision Transformer, Decision Mamba) on Minari datasets.

commands:
  train        train one backbone on one dataset (Hydra app; -m sweeps, e.g. model=dt,dmamba seed=0,1)
  eval         evaluate a checkpoint: decision-seq eval checkpoint=<run dir or .pt>
  datasets     list, inspect, download, build and import datasets (decision-seq datasets --help)
  leaderboard  tables, intervals and plots from results.json files (decision-seq leaderboard --help)

`decision-seq <command> --help` lists that command's config groups and every key.
Examples:
  decision-seq train                                    # DT on the built-in default dataset
  decision-seq train model=dmamba seed=3 trainer.steps=200 logger=none
  decision-seq train -m experiment=demo model=dt,dmamba
"""


def _user_errors() -> tuple[type[BaseException], ...]:
    from decision_seq.data.episodes import DatasetNotFoundError
    from decision_seq.training.checkpoint import CheckpointError

    return (DatasetNotFoundError, CheckpointError, FileNotFoundError, ValueError)


def _guarded(fn, cfg: DictConfig):
    """Known input errors end a single run with one clear line and exit code 2, a non-finite loss with
    exit code 3. In a sweep any error ends only its own job: it is logged with its traceback, recorded
    in the job's results.json (status "failed"), and the other jobs go on; the sweep summary names the
    failed jobs and the sweep exits non-zero. A stop signal ends the process (a sweep included) with
    exit code 75 after the checkpoint."""
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
        if isinstance(err, (*_user_errors(), NonFiniteError)):
            log.error("%s", err)
            sys.exit(EXIT_NONFINITE if isinstance(err, NonFiniteError) else EXIT_BAD_INPUT)
        raise


def record_failure(out_dir: Path, err: BaseException) -> None:
    """Mark the job's results.json failed with the error, keeping what the run already recorded."""
    import json
    import traceback

    from decision_seq.experiment.results import RESULTS_FILE, write_json_atomic

    path = out_dir / RESULTS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    record.update(status="failed", error=f"{type(err).__name__}: {err}",
                  traceback="".join(traceback.format_exception(err)),
                  overrides=list(HydraConfig.get().overrides.task), output_dir=str(out_dir))
    try:
        write_json_atomic(path, record)
    except OSError as write_err:  # a full disk must not hide the job's own error
        log.error("could not record the failure in %s: %s", path, write_err)


@hydra.main(config_path="pkg://decision_seq.conf", config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    from decision_seq.experiment.recipe import run_training

    results = _guarded(run_training, cfg)
    return None if results is None else results["best"]["score"]  # the value a Hydra sweeper optimizes


@hydra.main(config_path="pkg://decision_seq.conf", config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> float | None:
    from decision_seq.experiment.recipe import run_eval

    results = _guarded(run_eval, cfg)
    return None if results is None else results["final"]["score"]


def datasets_cmd(argv: list[str]) -> None:
    from decision_seq.cli.datasets import main as datasets_main

    sys.exit(datasets_main(argv))


def leaderboard_cmd(argv: list[str]) -> None:
    from decision_seq.leaderboard.board import main as leaderboard_main

    sys.exit(leaderboard_main(argv))


# `hydra/launcher=local`'s default n_jobs (conf/hydra/launcher/local.yaml).
OmegaConf.register_new_resolver("decision_seq_parallel_jobs", parallel_jobs_default, replace=True)

COMMANDS = {"train": train_app, "eval": eval_app}
PLAIN_COMMANDS = {"datasets": datasets_cmd, "leaderboard": leaderboard_cmd}  # argparse, not Hydra


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, rest = argv[0], argv[1:]
    if cmd in PLAIN_COMMANDS:
        PLAIN_COMMANDS[cmd](rest)
        return
    if cmd not in COMMANDS:
        valid = ", ".join([*COMMANDS, *PLAIN_COMMANDS])
        print(f"decision-seq: unknown command {cmd!r}; valid commands: {valid}\n", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    # `experiment` is in the defaults list (as null), so Hydra wants `experiment=x`; accept the
    # `+experiment=x` spelling of Hydra's docs too rather than fail with "Multiple values".
    rest = [a[1:] if a.startswith("+experiment=") else a for a in rest]
    sys.argv = [f"decision-seq-{cmd}", *rest]  # Hydra parses sys.argv
    COMMANDS[cmd]()


if __name__ == "__main__":
    main()
