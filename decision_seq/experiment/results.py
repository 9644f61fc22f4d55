"""results.json: the one record of a run that the leaderboard reads.

Holds config, versions, git commit, dataset, backbone, seed, steps, wall time, throughput, every
evaluation and the `final` (last evaluation) and `best` (max over evaluations during training)
summaries with the protocol that produced them. Written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import numpy as np

from decision_seq.utils.fileio import atomic_write

RESULTS_FILE = "results.json"


def dataset_build(summary: dict) -> str | None:
    """Which build of a dataset a run trained on, from the dataset summary results.json holds: episodes,
    steps and mean return. Two builds under one id differ here (a SAC build is reproducible on one CPU, not
    across CPUs: their float rounding differs and the policy's training diverges), so the leaderboard keeps
    their runs apart. None when the summary lacks these fields."""
    try:
        return f"{int(summary['episodes'])} episodes, {int(summary['steps'])} steps, mean {summary['return_mean']:.2f}"
    except (KeyError, TypeError, ValueError):
        return None


def eval_record(step: int, per_target: dict[float, dict], normalize) -> dict:
    """One evaluation: per-target returns and normalized scores (0-100), plus flat logger metrics."""
    rows, metrics = [], {}
    for target, res in per_target.items():
        returns = np.asarray(res["returns"], dtype=np.float64)
        norm = normalize(returns) if normalize is not None else None
        row = {
            "target": float(target),
            "returns": [float(r) for r in returns],
            "lengths": res["lengths"],
            "seeds": res["seeds"],
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "normalized": None if norm is None else [float(x) for x in norm],
            "mean_normalized": None if norm is None else float(np.mean(norm)),
            "std_normalized": None if norm is None else float(np.std(norm)),
        }
        rows.append(row)
        tag = f"target_{target:g}"
        metrics[f"eval/{tag}/return_mean"] = row["mean_return"]
        metrics[f"eval/{tag}/return_std"] = row["std_return"]
        metrics[f"eval/{tag}/length_mean"] = float(np.mean(res["lengths"]))
        if norm is not None:
            metrics[f"eval/{tag}/normalized_score"] = row["mean_normalized"]
    return {"step": int(step), "results": rows, "metrics": metrics}


def row_score(row: dict) -> float:
    """One target's score: its mean normalized score, or its mean return when the dataset has none."""
    return row["mean_normalized"] if row.get("mean_normalized") is not None else row["mean_return"]


def eval_score(rows: list[dict]) -> float:
    """One evaluation's score: the best target's (what `eval/score` logs and the curves plot)."""
    return max(row_score(r) for r in rows)


def summarize(evaluations: list[dict]) -> tuple[dict, dict]:
    """(final, best): per target the last evaluation and the best one, and the headline score.

    Headline `score` = best target's mean normalized score (mean return when the dataset has no
    reference scores). `final` is what the DT paper reports (last checkpoint); `best` (max over
    evaluations) is what the Decision Mamba paper reports. Both are always recorded.
    """
    if not evaluations:
        return {}, {}
    last = evaluations[-1]
    final_rows = [
        {k: r[k] for k in ("target", "mean_return", "std_return", "mean_normalized", "std_normalized")}
        | {"step": last["step"]}
        for r in last["results"]
    ]
    best_rows = []
    for i in range(len(last["results"])):
        cand = [(e["step"], e["results"][i]) for e in evaluations]
        step, row = max(cand, key=lambda c: row_score(c[1]))
        best_rows.append(
            {k: row[k] for k in ("target", "mean_return", "std_return", "mean_normalized", "std_normalized")}
            | {"step": step}
        )

    def headline(rows):
        top = max(rows, key=row_score)
        return {"score": row_score(top), "target": top["target"], "step": top["step"], "per_target": rows}

    return headline(final_rows), headline(best_rows)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import gymnasium
    import minari
    import torch

    import decision_seq

    v = {
        "decision_seq": decision_seq.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "minari": minari.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }
    try:
        import importlib.metadata as md

        v["mamba_ssm"] = md.version("mamba_ssm")
    except Exception:
        v["mamba_ssm"] = None
    return v


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=_jsonable)  # serialize first: a TypeError leaves no file
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
