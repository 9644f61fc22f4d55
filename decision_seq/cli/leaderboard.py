"""`decision-seq leaderboard PATH...`: tables with confidence intervals, and plots, from results.json.

The command line only: the parser (its --help explains what is read, grouped, computed and written),
the default output folder and `main`. The work is in decision_seq.leaderboard: runs (reading),
grouping (rows and statistics), render (tables and files), plots, published (published numbers),
html (the static site of --html).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from decision_seq.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from decision_seq.leaderboard import stats
from decision_seq.leaderboard.grouping import build_leaderboard
from decision_seq.leaderboard.html import check_site_dir, write_site
from decision_seq.leaderboard.render import print_leaderboard, write_outputs
from decision_seq.leaderboard.runs import LeaderboardError

DESCRIPTION = """\
Tables with confidence intervals, and plots, from the results.json of training runs.

Reads: each PATH may be a results.json file, a run dir, or any folder (a Hydra multirun sweep, a
whole outputs/ tree) searched recursively for results.json. Only runs with status "completed" are
tabulated; running / preempted / failed runs are listed as skipped. Unreadable or invalid files are
skipped with a warning. W&B runs can be added with --wandb-dir or --wandb-project.

Grouping: one row per (dataset, model). Runs of one row must share a protocol: dataset id (with
version), eval targets, episodes per target, training steps, eval interval, eval mode, context
length, rtg scale. Runs that differ are not averaged together: they become separate rows named by
the differing field (e.g. "dt [steps=1000]") with a warning; --strict makes that an error (exit 2).

Statistics (decision_seq/leaderboard/stats.py, rliable's methods in numpy): per row, mean and sample
std over seeds and a 95% percentile bootstrap CI of the mean, for both `last` (final evaluation, DT
paper) and `best` (max over evaluations, Decision Mamba paper) scores. Per model, over datasets: mean
and interquartile mean (IQM) with stratified bootstrap CIs, only over rows of one protocol family.
Published D4RL numbers (DT paper, CORL, d3rlpy; Decision Mamba) stand beside d4rl/<env>/<level>-v2
rows, and with a dagger beside our D4RL-style rebuilds decision-seq/<env>/<level>-v0; their sources
are listed in docs/published.md.

Writes to --out: leaderboard.md, leaderboard.csv (one row per cell, then per aggregate, with CI
bounds), runs.csv (one row per run), scores.png and curves.png (unless --no-plots). Input files
are never modified.

--html OUT_DIR also writes a static site people can publish (GitHub Pages, a paper's companion page):
OUT_DIR/index.html, OUT_DIR/leaderboard.json (the same data, versioned schema in
docs/leaderboard-json.md) and OUT_DIR/assets/ (its script, style and the uPlot charting library). It
needs no server and no network: open index.html from disk. It shows the aggregate and per-row tables
(sortable; rows filterable by environment, dataset level and backbone), published numbers, and per row
its protocol, runs with their git commits, learning curves and the command that reruns it, each row
at its own link (index.html#cell=<id>). OUT_DIR must be new, empty, or a site written before (it is
replaced whole, never left half written).
"""

EPILOG = """\
examples:
  decision-seq leaderboard multirun/2025-01-01/12-00-00        # one sweep; writes <sweep>/leaderboard/
  decision-seq leaderboard outputs multirun --out reports/lb    # everything under two trees
  decision-seq leaderboard run_a/results.json run_b --strict    # fail on any protocol mismatch
  decision-seq leaderboard multirun --reps 10000 --seed 1 --no-plots
  decision-seq leaderboard --wandb-project my-team/decision-seq # W&B runs (network, wandb login)
  decision-seq leaderboard multirun/smoke --html site/          # also a static site: open site/index.html

exit codes: 0 success; 2 bad input (missing path, no readable results, protocol mismatch with --strict,
an --html OUT_DIR that is a file or a non-empty folder other than a previous site)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="decision-seq leaderboard",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="results.json files, run dirs or folders to search")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <first PATH>/leaderboard if it is a folder, else ./leaderboard)",
    )
    p.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap RNG seed (default %(default)s)")
    p.add_argument("--strict", action="store_true", help="error (exit 2) when runs of one row differ in protocol")
    p.add_argument("--no-plots", action="store_true", help="do not write scores.png and curves.png")
    p.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="OUT_DIR",
        help="also write a static site to OUT_DIR: index.html (open it from disk), leaderboard.json, assets/ "
        "(new, empty, or a previous site, which is replaced)",
    )
    p.add_argument(
        "--wandb-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also read W&B run dirs under DIR (uses the results.json beside our runs' wandb/ dirs, "
        "else files/wandb-summary.json + config.yaml); repeatable",
    )
    p.add_argument(
        "--wandb-project",
        action="append",
        default=[],
        metavar="ENTITY/PROJECT",
        help="also read the runs of a W&B project through the API (needs network); repeatable",
    )
    return p


def default_out(paths: Sequence[str]) -> Path:
    """<first PATH>/leaderboard when the first PATH is a folder (a sweep), else ./leaderboard."""
    if paths and Path(paths[0]).is_dir():
        return Path(paths[0]) / "leaderboard"
    return Path("leaderboard")


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (decision_seq.cli.exit_codes)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2): return the code, do not exit
        return int(exit_.code or EXIT_OK)
    if not args.paths and not args.wandb_dir and not args.wandb_project:
        print(
            "decision-seq leaderboard: error: give at least one PATH (or --wandb-dir / --wandb-project); see --help",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    out = args.out or default_out(args.paths)
    try:
        if args.html is not None:  # before the (slow) statistics: a bad OUT_DIR fails at once
            if args.html.absolute() == out.absolute():
                raise LeaderboardError(f"--html {args.html}: must differ from the --out folder {out}")
            check_site_dir(args.html)
        lb = build_leaderboard(
            args.paths,
            reps=args.reps,
            seed=args.seed,
            strict=args.strict,
            wandb_dirs=args.wandb_dir,
            wandb_projects=args.wandb_project,
        )
    except LeaderboardError as err:
        print(f"decision-seq leaderboard: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for w in lb.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print_leaderboard(lb)
    t0 = time.perf_counter()
    written = write_outputs(lb, out, plots=not args.no_plots)
    print(f"wrote {', '.join(p.name for p in written)} to {out} ({time.perf_counter() - t0:.1f} s)")
    if args.html is not None:
        t0 = time.perf_counter()
        try:
            write_site(lb, args.html)
        except LeaderboardError as err:
            print(f"decision-seq leaderboard: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as err:  # e.g. a full disk: any previous site there is kept
            print(
                f"decision-seq leaderboard: error: --html {args.html}: cannot write the site ({err})", file=sys.stderr
            )
            return EXIT_BAD_INPUT
        print(f"wrote the site to {args.html} ({time.perf_counter() - t0:.1f} s): open {args.html / 'index.html'}")
    return EXIT_OK
