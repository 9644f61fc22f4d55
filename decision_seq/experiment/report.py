"""Terminal tables of run results (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from decision_seq.cli.console import fmt_num as _fmt
from decision_seq.cli.console import make_console


def results_rows(results: dict) -> list[dict]:
    """One row per target of a run's last evaluation (and its best, when there were several)."""
    ds = results.get("dataset", {})
    best = {r["target"]: r for r in (results.get("best") or {}).get("per_target", [])}
    rows = []
    for r in (results.get("final") or {}).get("per_target", []):
        b = best.get(r["target"], {})
        rows.append(
            {
                "backbone": results.get("model") or results.get("backbone"),
                "dataset": ds.get("name") or ds.get("id"),
                "seed": results.get("seed"),
                "target": r["target"],
                "mean_return": r["mean_return"],
                "std_return": r["std_return"],
                "normalized": r["mean_normalized"],
                "best_normalized": b.get("mean_normalized"),
                "dataset_normalized": ds.get("normalized_score_mean"),
            }
        )
    return rows


def print_results_table(runs: list[dict], title: str = "decision-seq results", console: Console | None = None) -> None:
    table = Table(title=title)
    for col, just in (
        ("backbone", "left"),
        ("dataset", "left"),
        ("seed", "right"),
        ("target return", "right"),
        ("mean return", "right"),
        ("normalized (last)", "right"),
        ("normalized (best)", "right"),
        ("dataset mean normalized", "right"),
    ):
        table.add_column(col, justify=just)
    for run in runs:
        for row in results_rows(run):
            table.add_row(
                str(row["backbone"]),
                str(row["dataset"]),
                str(row["seed"]),
                _fmt(row["target"], "g"),
                f"{_fmt(row['mean_return'])} ± {_fmt(row['std_return'])}",
                _fmt(row["normalized"]),
                _fmt(row["best_normalized"]),
                _fmt(row["dataset_normalized"]),
            )
    (console or make_console()).print(table)
