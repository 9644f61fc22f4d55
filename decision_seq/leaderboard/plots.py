"""Leaderboard plots (matplotlib, no pyplot): scores.png (bars with CIs) and curves.png (eval score vs step).

One panel per dataset, three panels a row. render.write_outputs saves the figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from decision_seq.leaderboard.grouping import Cell, Leaderboard

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _panels(n: int) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg renders the PNG

    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _by_dataset(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    out: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        out[c.dataset_id].append(c)
    return dict(sorted(out.items()))


def plot_scores(lb: Leaderboard) -> Figure:
    """Per dataset: last and best mean per model, CI error bars, the dataset's mean as a dashed line."""
    groups = _by_dataset(lb.cells)
    fig, axes = _panels(len(groups))
    width = 0.38
    for ax, (dataset, cells) in zip(axes, groups.items(), strict=False):  # the grid may have spare axes
        x = np.arange(len(cells))
        for k, (name, color) in enumerate((("last", "tab:blue"), ("best", "tab:orange"))):
            s = [getattr(c, name) for c in cells]
            means = np.array([v.mean for v in s])
            err = np.array([[v.mean - v.ci_low, v.ci_high - v.mean] for v in s]).T  # (2, cells); NaN (1 seed): no bar
            ax.bar(x + (k - 0.5) * width, means, width, yerr=err, capsize=3, color=color, label=name)
        ds_score = next((c.dataset_score for c in cells if c.dataset_score is not None), None)
        if ds_score is not None and all(c.normalized for c in cells):
            ax.axhline(ds_score, color="gray", ls="--", lw=1, label="dataset mean")
        ax.set_xticks(x, [c.label for c in cells], rotation=15 if len(cells) > 2 else 0, fontsize=8)
        ax.set_title(dataset, fontsize=9)
        ax.set_ylabel("normalized score" if all(c.normalized for c in cells) else "return")
        ax.legend(fontsize=7)
    fig.suptitle(f"last / best score, mean over seeds, 95% bootstrap CI ({lb.reps} resamples)", fontsize=10)
    return fig


def cell_curve(cell: Cell) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) of the eval score over the cell's runs, at every step any run evaluated."""
    per_step: dict[int, list[float]] = defaultdict(list)
    for r in cell.runs:
        for step, score in r.curve:
            per_step[step].append(score)
    steps = np.array(sorted(per_step), dtype=np.int64)
    vals = [np.asarray(per_step[s]) for s in steps]
    return (
        steps,
        np.array([v.mean() for v in vals]),
        np.array([v.min() for v in vals]),
        np.array([v.max() for v in vals]),
    )


def plot_curves(lb: Leaderboard) -> Figure:
    """Per dataset: eval score vs training step, mean over seeds with a min-max band, one line per model."""
    groups = _by_dataset(lb.cells)
    fig, axes = _panels(len(groups))
    for ax, (dataset, cells) in zip(axes, groups.items(), strict=False):  # the grid may have spare axes
        drawn = False
        for c in cells:
            steps, mean, lo, hi = cell_curve(c)
            if steps.size == 0:
                continue
            (line,) = ax.plot(steps, mean, marker="o", ms=3, label=f"{c.label} (n={len(c.runs)})")
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no evaluation curves", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("eval score (best target)" if all(c.normalized for c in cells) else "eval return")
    fig.suptitle("evaluation score during training: mean over seeds, band = min..max", fontsize=10)
    return fig
