"""`decision-seq` command line: dispatches to the Hydra apps (train, eval: key=value overrides, -m for
sweeps, --help for config groups and keys) and the argparse tools (datasets, leaderboard)."""

from __future__ import annotations

import os
import sys

from omegaconf import ListConfig, OmegaConf

from decision_seq.cli.exit_codes import EXIT_BAD_INPUT
from decision_seq.experiment.resources import parallel_jobs_default

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
  decision-seq train -m experiment=dmamba-paper --dry-run   # the jobs a sweep would run, and their settings
"""

HYDRA_COMMANDS = ("train", "eval")
DRY_RUN = "--dry-run"  # ours, not Hydra's: print what each job of the command line would run


def print_jobs(rows: list[dict]) -> None:
    """The table of `--dry-run`: one row per job (seeds folded into one column)."""
    from rich.table import Table

    from decision_seq.cli.console import make_console

    table = Table(title=f"{len(rows)} configuration(s), {sum(len(r['seeds']) for r in rows)} job(s); nothing was run")
    for col in rows[0] if rows else ():
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    make_console().print(table)


def _cell(value) -> str:
    if isinstance(value, (list, tuple, ListConfig)):  # targets
        return ",".join(_cell(v) for v in value)
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def datasets_cmd(argv: list[str]) -> int:
    from decision_seq.cli.datasets import main as datasets_main

    return datasets_main(argv)


def leaderboard_cmd(argv: list[str]) -> int:
    from decision_seq.cli.leaderboard import main as leaderboard_main

    return leaderboard_main(argv)


PLAIN_COMMANDS = {"datasets": datasets_cmd, "leaderboard": leaderboard_cmd}  # argparse, not Hydra

# `hydra/launcher=local`'s default n_jobs (conf/hydra/launcher/local.yaml).
OmegaConf.register_new_resolver("decision_seq_parallel_jobs", parallel_jobs_default, replace=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, rest = argv[0], argv[1:]
    if cmd in PLAIN_COMMANDS:
        sys.exit(PLAIN_COMMANDS[cmd](rest))
    if cmd not in HYDRA_COMMANDS:
        valid = ", ".join([*HYDRA_COMMANDS, *PLAIN_COMMANDS])
        print(f"decision-seq: unknown command {cmd!r}; valid commands: {valid}\n", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    # `experiment` is in the defaults list (as null), so Hydra wants `experiment=x`; accept the
    # `+experiment=x` spelling of Hydra's docs too rather than fail with "Multiple values".
    rest = [a[1:] if a.startswith("+experiment=") else a for a in rest]

    from decision_seq.cli.precheck import dry_run, precheck
    from decision_seq.experiment.validation import ConfigError

    try:
        if DRY_RUN in rest:  # print the jobs, run nothing
            print_jobs(dry_run(cmd, [a for a in rest if a != DRY_RUN]))
            return
        precheck(cmd, rest)  # every bad value: one line, before Hydra creates a dir or loads data
    except ConfigError as err:
        print(f"decision-seq {cmd}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

    from decision_seq.cli.apps import eval_app, train_app

    sys.argv = [f"decision-seq-{cmd}", *rest]  # Hydra parses sys.argv
    try:
        {"train": train_app, "eval": eval_app}[cmd]()
    except BrokenPipeError:  # `decision-seq train --help | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        sys.exit(0)


if __name__ == "__main__":
    main()
