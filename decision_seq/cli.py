"""`decision-seq` command line: train | eval. Each subcommand is a Hydra app (key=value overrides,
-m for multirun sweeps, --help for its config groups and keys)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

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
    exit code 3; in a sweep they are re-raised so Hydra records the job as failed and the other jobs go
    on. A stop signal ends the process (a sweep included) with exit code 75 after the checkpoint."""
    from decision_seq.training.trainer import NonFiniteError, TrainingPreempted

    try:
        return fn(cfg, Path(HydraConfig.get().runtime.output_dir))
    except TrainingPreempted as err:
        log.warning("%s", err)
        sys.exit(EXIT_PREEMPTED)
    except (*_user_errors(), NonFiniteError) as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        log.error("%s", err)
        sys.exit(EXIT_NONFINITE if isinstance(err, NonFiniteError) else EXIT_BAD_INPUT)


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    from decision_seq.train import run_training

    results = _guarded(run_training, cfg)
    return results["best"]["score"]  # the value a Hydra sweeper optimizes


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> float | None:
    from decision_seq.train import run_eval

    return _guarded(run_eval, cfg)["final"]["score"]


def datasets_cmd(argv: list[str]) -> None:
    from decision_seq.datasets_cli import main as datasets_main

    sys.exit(datasets_main(argv))


def leaderboard_cmd(argv: list[str]) -> None:
    from decision_seq.leaderboard import main as leaderboard_main

    sys.exit(leaderboard_main(argv))


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
    sys.argv = [f"decision-seq-{cmd}", *rest]  # Hydra parses sys.argv
    COMMANDS[cmd]()


if __name__ == "__main__":
    main()
