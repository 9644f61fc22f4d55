"""`decision-seq datasets build ENV`: the arguments of a D4RL-style SAC build and its summary table.

The build itself is decision_seq.datasets.sac (levels.build_report). decision_seq/cli/datasets.py imports
this module only for `build`, so the other `datasets` commands work even when the SAC build cannot be
imported.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

from rich.table import Table

from decision_seq.cli.console import fmt_num, make_console
from decision_seq.cli.exit_codes import EXIT_OK
from decision_seq.datasets.naming import LEVELS
from decision_seq.datasets.sac.config import EXPERT_CHOICES, BuildConfig, parse_levels
from decision_seq.datasets.sac.levels import build_report

_DEFAULTS = {f.name: f.default for f in fields(BuildConfig)}


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `decision-seq datasets build`."""
    d = _DEFAULTS
    parser.add_argument(
        "env",
        help="Gymnasium environment id with flat Box observations and Box actions, "
        "e.g. Hopper-v5, HalfCheetah-v5, Walker2d-v5",
    )
    parser.add_argument(
        "--levels",
        default=",".join(LEVELS),
        help=f"comma-separated levels to build, of: {', '.join(LEVELS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace datasets that already exist locally; without it an existing id is refused",
    )
    parser.add_argument(
        "--seed", type=int, default=d["seed"], help="seed of SAC and of every episode (default: %(default)s)"
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=d["train_steps"],
        help="SAC training budget in env steps (default: %(default)s; D4RL trained to completion)",
    )
    parser.add_argument(
        "--steps-per-level",
        type=int,
        default=d["steps_per_level"],
        help="env steps collected per level, whole episodes (default: %(default)s, as D4RL)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=d["snapshot_every"],
        help="env steps between policy snapshots and resumable checkpoints (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=d["eval_episodes"],
        help="deterministic evaluation episodes per snapshot (default: %(default)s)",
    )
    parser.add_argument(
        "--reference-episodes",
        type=int,
        default=d["reference_episodes"],
        help="fixed-seed episodes for ref_min_score / ref_max_score (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-starts",
        type=int,
        default=d["learning_starts"],
        help="uniform random warm-up steps before SAC updates (default: %(default)s)",
    )
    parser.add_argument(
        "--expert",
        choices=EXPERT_CHOICES,
        default=d["expert"],
        help="expert snapshot: best evaluation return or the final one (default: %(default)s)",
    )
    parser.add_argument("--device", default=d["device"], help="torch device for SAC updates (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=d["num_threads"], help="torch threads during the build (default: %(default)s)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the SAC run's resumable state lives; rerunning the same command resumes or "
        "reuses it; if not given, ~/.cache/decision-seq/builds/<env>-seed<seed>",
    )
    parser.add_argument(
        "--namespace",
        default=d["namespace"],
        help="Minari namespace of the dataset ids <namespace>/<env>/<level>-v0 (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_build(args: argparse.Namespace) -> int:
    """Run `decision-seq datasets build` from parsed arguments; prints a summary table, returns EXIT_OK."""
    config = BuildConfig(
        train_steps=args.train_steps,
        steps_per_level=args.steps_per_level,
        snapshot_every=args.snapshot_every,
        eval_episodes=args.eval_episodes,
        reference_episodes=args.reference_episodes,
        learning_starts=args.learning_starts,
        expert=args.expert,
        seed=args.seed,
        namespace=args.namespace,
        device=args.device,
        num_threads=args.threads,
    )
    t0 = time.perf_counter()
    report = build_report(
        args.env,
        parse_levels(args.levels),
        config,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        work_dir=args.work_dir,
    )
    table = Table(title=f"{report.env_id} (seed {config.seed})")
    for name, justify in [
        ("level", "left"),
        ("dataset id", "left"),
        ("episodes", "right"),
        ("steps", "right"),
        ("mean return", "right"),
        ("normalized", "right"),
        ("time", "right"),
    ]:
        table.add_column(name, justify=justify, no_wrap=True)
    for s in report.levels:
        table.add_row(
            s.level,
            s.dataset_id,
            str(s.episodes),
            str(s.steps),
            fmt_num(s.mean_return),
            fmt_num(s.normalized_mean),
            f"{fmt_num(s.seconds)} s",
        )
    console = make_console()
    console.print(table)
    console.print(
        f"ref_min_score {report.ref_min_score:.1f} (uniform random), ref_max_score "
        f"{report.ref_max_score:.1f} (expert snapshot at step {report.expert_step}); medium snapshot at "
        f"step {report.medium_step}. SAC run: {report.work_dir} (trained {report.train_seconds:.0f} s "
        f"in this call); total {time.perf_counter() - t0:.0f} s"
    )
    return EXIT_OK
