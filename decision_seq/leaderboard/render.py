"""Leaderboard outputs: the terminal tables, leaderboard.md, leaderboard.csv and runs.csv, and
`write_outputs`, which writes every file (the plots too) atomically.

The terminal and Markdown tables share their rows (`cell_rows`, `aggregate_rows`), so they always agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from decision_seq.cli.console import fmt_num, make_console
from decision_seq.leaderboard import stats
from decision_seq.leaderboard.grouping import Cell, Leaderboard, fmt_value, suite_of
from decision_seq.leaderboard.plots import plot_curves, plot_scores
from decision_seq.leaderboard.published import ATARI_NOTE, REBUILD_NOTE
from decision_seq.leaderboard.runs import PROTOCOL_FIELDS
from decision_seq.utils.fileio import atomic_write

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

CELL_COLUMNS = ("dataset", "model", "seeds", "last", "best", "published", "dataset mean")
AGGREGATE_COLUMNS = ("model", "datasets", "runs", "last mean", "last IQM", "best mean", "best IQM")


def _present(x: float | None) -> float | None:
    """None for NaN too: a single seed's std is NaN, and shows as missing."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def fmt_summary(s: stats.SeedSummary) -> str:
    """'mean ± std [lo, hi]'; std '-' and no interval for a single seed."""
    ci = "" if math.isnan(s.ci_low) else f" [{s.ci_low:.1f}, {s.ci_high:.1f}]"
    return f"{s.mean:.1f} ± {fmt_num(_present(s.std))}{ci}"


def fmt_estimate(e: stats.Estimate) -> str:
    """'value [lo, hi]'; no interval when it could not be computed."""
    ci = "" if math.isnan(e.ci_low) else f" [{e.ci_low:.1f}, {e.ci_high:.1f}]"
    return f"{e.value:.1f}{ci}"


def _dataset_label(c: Cell) -> str:
    return c.dataset_id if c.normalized else f"{c.dataset_id} (raw return)"


def cell_rows(lb: Leaderboard) -> list[dict[str, str]]:
    """The display rows shared by the terminal and Markdown tables (keys: CELL_COLUMNS)."""
    rows = []
    for c in lb.cells:
        pub = c.published
        rows.append(
            {
                "dataset": _dataset_label(c),
                "model": c.label,
                "seeds": str(c.last.n),
                "last": fmt_summary(c.last),
                "best": fmt_summary(c.best),
                "published": pub.label() if pub else "-",
                "dataset mean": fmt_num(_present(c.dataset_score)),
            }
        )
    return rows


def aggregate_rows(lb: Leaderboard) -> list[dict[str, str]]:
    """The aggregate rows shared by the terminal and Markdown tables (keys: AGGREGATE_COLUMNS)."""
    return [
        {
            "model": a.label,
            "datasets": str(len(a.cells)),
            "runs": str(a.n_runs),
            "last mean": fmt_estimate(a.last["mean"]),
            "last IQM": fmt_estimate(a.last["iqm"]),
            "best mean": fmt_estimate(a.best["mean"]),
            "best IQM": fmt_estimate(a.best["iqm"]),
        }
        for a in lb.aggregates
    ]


def _needs_dagger(lb: Leaderboard) -> bool:
    return any(c.published is not None and not c.published.exact for c in lb.cells)


def _has_atari(lb: Leaderboard) -> bool:
    return any(suite_of(c.dataset_id, c.protocol.get("eval_env")) == "atari" for c in lb.cells)


def _ci_text(lb: Leaderboard) -> str:
    return (
        f"95% percentile bootstrap CI ({lb.reps} resamples, seed {lb.seed}); aggregates: stratified bootstrap "
        "over runs within each dataset"
    )


def _first_line(text: str, limit: int = 120) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------
# Terminal


def print_leaderboard(lb: Leaderboard, console: Console | None = None) -> None:
    """The row table, the aggregate table, then footnotes, notes and skipped runs (stdout by default)."""
    from rich.table import Table
    from rich.text import Text

    console = make_console() if console is None else console
    table = Table(title="decision-seq leaderboard", caption="mean ± std over seeds [" + _ci_text(lb) + "]")
    for col in CELL_COLUMNS:
        table.add_column(col, justify="left" if col in ("dataset", "model", "published") else "right")
    for row in cell_rows(lb):
        table.add_row(*(Text(row[c]) for c in CELL_COLUMNS))  # Text: no rich markup in paths or "[lo, hi]"
    console.print(table)
    if lb.aggregates:
        agg = Table(title="aggregate over datasets (per model)")
        for col in AGGREGATE_COLUMNS:
            agg.add_column(col, justify="left" if col == "model" else "right")
        for row in aggregate_rows(lb):
            agg.add_row(*(Text(row[c]) for c in AGGREGATE_COLUMNS))
        console.print(agg)
    if _needs_dagger(lb):
        console.print(Text(REBUILD_NOTE))
    if _has_atari(lb):
        console.print(Text(ATARI_NOTE))
    for note in lb.notes:
        console.print(Text(f"note: {note}"))
    if lb.skipped:
        console.print(Text(f"skipped runs (not completed): {len(lb.skipped)}"))
        for r in lb.skipped:
            console.print(Text(f"  {r.status:<10} {r.path}" + (f"  ({_first_line(r.error)})" if r.error else "")))


# ---------------------------------------------------------------------------------------------------
# Markdown and CSV


def _md_table(rows: list[dict[str, str]], cols: Sequence[str]) -> list[str]:
    def esc(s: object) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return lines


def markdown(lb: Leaderboard) -> str:
    """leaderboard.md: the tables, each row's protocol, warnings, skipped runs and published sources."""
    lines = [
        "# decision-seq leaderboard",
        "",
        "Score: mean normalized score (0-100, D4RL convention) of the best eval target, or mean return "
        "where the dataset has no reference scores. `last`: final evaluation (the DT paper's protocol); "
        "`best`: max over evaluations during training (the Decision Mamba paper's protocol). "
        f"Cells: mean ± sample std over seeds [{_ci_text(lb)}].",
        "",
    ]
    if _has_atari(lb):
        lines += [ATARI_NOTE, ""]
    lines += _md_table(cell_rows(lb), CELL_COLUMNS)
    if lb.aggregates:
        lines += [
            "",
            "## Aggregate over datasets",
            "",
            "Mean of per-dataset means and interquartile mean (IQM) of all runs pooled, "
            "with 95% stratified bootstrap CIs.",
            "",
        ]
        lines += _md_table(aggregate_rows(lb), AGGREGATE_COLUMNS)
        lines.append("")
        for a in lb.aggregates:
            lines.append(f"- {a.label}: " + ", ".join(c.dataset_id for c in a.cells))
    lines += ["", "## Protocols", ""]
    for c in lb.cells:
        proto = ", ".join(f"{f}={fmt_value(c.protocol[f])}" for f in PROTOCOL_FIELDS if f != "dataset_id")
        seeds = ", ".join(str(r.seed) for r in c.runs)
        lines.append(f"- `{c.dataset_id}` / {c.label}: {proto}; seeds {seeds}")
    if lb.warnings or lb.notes:
        lines += ["", "## Warnings and notes", ""] + [f"- {w}" for w in lb.warnings + lb.notes]
    if lb.skipped:
        lines += ["", "## Skipped runs (not completed)", ""]
        lines += [f"- {r.status}: `{r.path}`" + (f" ({_first_line(r.error)})" if r.error else "") for r in lb.skipped]
    published = [c for c in lb.cells if c.published]
    if published:
        lines += ["", "## Footnotes", ""]
        if _needs_dagger(lb):
            lines.append(f"- {REBUILD_NOTE}")
        for c in published:
            srcs = "; ".join(f"{s} {v:.1f}" for s, v in c.published.all_sources)
            lines.append(f"- published for `{c.dataset_id}` / {c.model}: {srcs}")
    return "\n".join(lines) + "\n"


def cells_frame(lb: Leaderboard) -> pd.DataFrame:
    """leaderboard.csv: one row per cell (`row=cell`), then one per aggregate (`row=aggregate`)."""
    import pandas as pd

    records = []
    for c in lb.cells:
        pub = c.published
        rec = {
            "row": "cell",
            "dataset": c.dataset_id,
            "model": c.model,
            "variant": c.variant,
            "backbone": ";".join(sorted({str(r.backbone) for r in c.runs})),
            "score_unit": "normalized" if c.normalized else "return",
            "n_datasets": 1,
            "n_seeds": c.last.n,
            "seeds": ";".join(str(r.seed) for r in c.runs),
        }
        for name, s in (("last", c.last), ("best", c.best)):
            rec |= {
                f"{name}_mean": s.mean,
                f"{name}_std": s.std,
                f"{name}_ci_low": s.ci_low,
                f"{name}_ci_high": s.ci_high,
                f"{name}_iqm": np.nan,
                f"{name}_iqm_ci_low": np.nan,
                f"{name}_iqm_ci_high": np.nan,
            }
        rec |= {
            "published": pub.value if pub else np.nan,
            "published_source": pub.source if pub else "",
            "published_match": ("exact" if pub.exact else "rebuild") if pub else "",
            "dataset_normalized_score": c.dataset_score if c.dataset_score is not None else np.nan,
        }
        rec |= {f"protocol_{f}": fmt_value(c.protocol[f]) for f in PROTOCOL_FIELDS if f != "dataset_id"}
        records.append(rec)
    for a in lb.aggregates:
        rec = {
            "row": "aggregate",
            "dataset": ";".join(c.dataset_id for c in a.cells),
            "model": a.model,
            "variant": a.variant,
            "backbone": "",
            "score_unit": "normalized",
            "n_datasets": len(a.cells),
            "n_seeds": a.n_runs,
            "seeds": "",
        }
        for name, est in (("last", a.last), ("best", a.best)):
            rec |= {
                f"{name}_mean": est["mean"].value,
                f"{name}_std": np.nan,
                f"{name}_ci_low": est["mean"].ci_low,
                f"{name}_ci_high": est["mean"].ci_high,
                f"{name}_iqm": est["iqm"].value,
                f"{name}_iqm_ci_low": est["iqm"].ci_low,
                f"{name}_iqm_ci_high": est["iqm"].ci_high,
            }
        records.append(rec)
    return pd.DataFrame.from_records(records)


def runs_frame(lb: Leaderboard) -> pd.DataFrame:
    """runs.csv: one row per run read, completed or not."""
    import pandas as pd

    variant = {id(r): c.variant for c in lb.cells for r in c.runs}
    return pd.DataFrame.from_records(
        [
            {
                "path": r.path,
                "dataset": r.dataset_id,
                "model": r.model,
                "variant": variant.get(id(r), ""),
                "seed": r.seed,
                "last": r.last if r.last is not None else np.nan,
                "best": r.best if r.best is not None else np.nan,
                "score_unit": "normalized" if r.normalized else "return",
                "status": r.status,
            }
            for r in lb.runs
        ],
        columns=["path", "dataset", "model", "variant", "seed", "last", "best", "score_unit", "status"],
    )


# ---------------------------------------------------------------------------------------------------
# Files


def write_outputs(lb: Leaderboard, out: Path, plots: bool = True) -> list[Path]:
    """leaderboard.md, leaderboard.csv, runs.csv (and scores.png, curves.png), each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, writer: Callable[[Path], object]) -> None:
        atomic_write(out / name, writer)
        written.append(out / name)

    text = markdown(lb)
    put("leaderboard.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    cells_df, runs_df = cells_frame(lb), runs_frame(lb)
    put("leaderboard.csv", lambda tmp: cells_df.to_csv(tmp, index=False))
    put("runs.csv", lambda tmp: runs_df.to_csv(tmp, index=False))
    if plots:
        for name, make in (("scores.png", plot_scores), ("curves.png", plot_curves)):
            fig = make(lb)
            put(name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110))  # tmp has no .png suffix
    return written
