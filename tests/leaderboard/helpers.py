"""Helpers for the leaderboard tests: independent re-computations of the statistics (explicit loops,
a hand-written percentile) and synthetic results.json files with numbers chosen to check by hand.

Import as `from tests.leaderboard.helpers import ci_by_hand, write_run, make_sweep, read_cells`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------------------
# Independent re-computations for the expected values


def percentile_by_hand(values: list[float], q: float) -> float:
    """numpy's default ('linear') percentile, written out."""
    v = sorted(values)
    pos = q / 100 * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def trimmed_mean_by_hand(values: list[float]) -> float:
    v = sorted(values)
    cut = len(v) // 4  # int(0.25 * n)
    kept = v[cut : len(v) - cut]
    return sum(kept) / len(kept)


def stratified_replicates_by_hand(tasks: list[list[float]], aggregate: str, reps: int, seed: int) -> list[float]:
    """The documented resampling: one rng; per task, one integers(0, n_t, size=(reps, n_t)) call."""
    rng = np.random.default_rng(seed)
    indices = [rng.integers(0, len(t), size=(reps, len(t))) for t in tasks]
    out = []
    for r in range(reps):
        samples = [[t[int(indices[k][r, j])] for j in range(len(t))] for k, t in enumerate(tasks)]
        if aggregate == "mean":
            out.append(sum(sum(s) / len(s) for s in samples) / len(samples))
        else:
            out.append(trimmed_mean_by_hand([x for s in samples for x in s]))
    return out


def ci_by_hand(
    tasks: list[list[float]], aggregate: str = "mean", reps: int = 2000, seed: int = 0
) -> tuple[float, float]:
    reps_ = stratified_replicates_by_hand(tasks, aggregate, reps, seed)
    return percentile_by_hand(reps_, 2.5), percentile_by_hand(reps_, 97.5)


# ---------------------------------------------------------------------------------------------------
# Synthetic results.json


def make_results(
    dataset_id: str = "d4rl/hopper/medium-replay-v2",
    model: str = "dt",
    seed: int = 0,
    last: float = 50.0,
    best: float | None = None,
    status: str = "completed",
    normalized: bool = True,
    dataset_score: float = 40.0,
    steps: int = 1000,
    curve: list[float] | None = None,
    data_summary: dict | None = None,
    **protocol: object,
) -> dict:
    """A minimal valid results.json dict; `curve`: eval scores at steps spaced evenly up to `steps`;
    `data_summary`: more keys of the dataset entry (episodes, steps, return_mean...); `protocol`: overrides
    of the protocol keys."""
    best = last if best is None else best
    curve = [last / 2, last] if curve is None else curve
    every = steps // len(curve)
    evals = []
    for i, score in enumerate(curve):
        row = {"target": 3600.0, "mean_return": score * 10, "mean_normalized": score if normalized else None}
        evals.append({"step": (i + 1) * every, "results": [row], "metrics": {}})

    def summary(s: float) -> dict:
        return {
            "score": s,
            "target": 3600.0,
            "step": steps,
            "per_target": [{"target": 3600.0, "mean_return": s * 10, "mean_normalized": s if normalized else None}],
        }

    proto = {
        "targets": [3600, 1800],
        "episodes": 10,
        "mode": "window",
        "eval_every": 500,
        "steps": steps,
        "context_len": 20,
        "rtg_scale": 1000.0,
        "dataset_id": dataset_id,
        "eval_env": "Hopper-v4",
    } | protocol
    res = {
        "status": status,
        "model": model,
        "backbone": {"dt": "transformer", "dmamba": "mamba"}.get(model, model),
        "seed": seed,
        "dataset": {
            "id": dataset_id,
            "name": dataset_id.split("/")[-1],
            "normalized_score_mean": dataset_score if normalized else None,
        }
        | (data_summary or {}),
        "protocol": proto,
        "versions": {},
        "evaluations": evals,
    }
    if status == "completed":
        res |= {"final": summary(last), "best": summary(best)}
    else:
        res["error"] = f"stopped by SIGTERM at step {steps // 2}"
    return res


def write_run(root: Path, name: str, **kwargs: object) -> Path:
    """A run dir `root/name` holding the results.json of make_results(**kwargs)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(make_results(**kwargs)))
    return d


def read_cells(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv", keep_default_na=True)


HOPPER_LAST = [10.0, 20.0, 30.0, 60.0]
HOPPER_BEST = [15.0, 25.0, 35.0, 90.0]
WALKER_LAST = [50.0, 70.0, 80.0, 100.0]


def make_sweep(root: Path) -> Path:
    """dt on two D4RL sets (4 seeds each) and dmamba on one of our rebuilds (2 seeds) under `root`."""
    for s, (lst, bst) in enumerate(zip(HOPPER_LAST, HOPPER_BEST, strict=True)):
        write_run(root, f"dt_hopper_{s}", seed=s, last=lst, best=bst, curve=[lst / 2, lst])
        write_run(
            root,
            f"dt_walker_{s}",
            dataset_id="d4rl/walker2d/medium-v2",
            seed=s,
            last=WALKER_LAST[s],
            dataset_score=60.0,
        )
    for s in range(2):
        write_run(
            root,
            f"dm_hopper_{s}",
            dataset_id="decision-seq/hopper/medium-v0",
            model="dmamba",
            seed=s,
            last=70.0 + 10 * s,
        )
    return root
