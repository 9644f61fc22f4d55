"""The leaderboard as a static site: OUT_DIR/index.html, OUT_DIR/leaderboard.json and the assets.

`leaderboard_json` turns a built `Leaderboard` into the versioned JSON document (docs/leaderboard-json.md
describes every key); it reuses the grouped statistics, and only adds per-step curve bands and the
reproduce commands. `write_site` writes the page with that document embedded (a page opened from
file:// may not fetch() a local file), the same document beside it, and the page's script, style and
the vendored charting library (uPlot, site/vendor/README.md) from the package's site/ folder. The site
is built in a temp folder and then renamed over OUT_DIR, so a failure never leaves a half site.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from decision_seq.leaderboard import stats
from decision_seq.leaderboard.grouping import Aggregate, Cell, Leaderboard, fmt_value
from decision_seq.leaderboard.plots import cell_curve
from decision_seq.leaderboard.published import REBUILD_NOTE
from decision_seq.leaderboard.runs import PROTOCOL_FIELDS, LeaderboardError, Run

SCHEMA = "decision-seq-leaderboard"  # marks a folder as a site we wrote (and may replace)
SCHEMA_VERSION = 1
JSON_FILE = "leaderboard.json"
INDEX_FILE = "index.html"
DATA_PLACEHOLDER = "__LEADERBOARD_DATA__"
# Copied from the package's site/ folder into OUT_DIR/assets/ (index.html itself is a template).
ASSETS = ("app.js", "style.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/uPlot.LICENSE")

_DATASET_NAME = re.compile(r"^(?P<level>.+)-v(?P<version>\d+)$")


def _num(x: float | None) -> float | None:
    """JSON has no NaN: a missing number (one seed's std, a CI of one run) is null."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _jsonable(value: object) -> object:
    """Protocol values as JSON: tuples -> lists, 1000.0 -> 1000 (as the tables print them)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def dataset_parts(dataset_id: str) -> dict[str, str]:
    """'d4rl/hopper/medium-v2' -> namespace d4rl, env hopper, level medium, version v2 ('' when absent)."""
    parts = dataset_id.split("/")
    if len(parts) != 3:
        return {"namespace": "", "env": dataset_id, "level": "", "version": ""}
    m = _DATASET_NAME.match(parts[2])
    level, version = (m["level"], f"v{m['version']}") if m else (parts[2], "")
    return {"namespace": parts[0], "env": parts[1], "level": level, "version": version}


def _summary(s: stats.SeedSummary) -> dict:
    return {"mean": _num(s.mean), "std": _num(s.std), "ci_low": _num(s.ci_low), "ci_high": _num(s.ci_high)}


def _estimate(e: stats.Estimate) -> dict:
    return {"value": _num(e.value), "ci_low": _num(e.ci_low), "ci_high": _num(e.ci_high)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def cell_ids(cells: Sequence[Cell]) -> list[str]:
    """URL-fragment ids, unique: 'd4rl-hopper-medium-v2--dt', '...--dt--steps-1000' for a protocol split."""
    ids, seen = [], set()
    for c in cells:
        base = "--".join(_slug(p) for p in (c.dataset_id, c.model, c.variant) if p)
        cid, k = base, 2
        while cid in seen:
            cid, k = f"{base}-{k}", k + 1
        seen.add(cid)
        ids.append(cid)
    return ids


def curve_band(cell: Cell, reps: int, seed: int) -> dict:
    """Per eval step: mean over the runs that evaluated there and its bootstrap CI (null with one run)."""
    steps, mean, _, _ = cell_curve(cell)
    per_step: dict[int, list[float]] = {}
    for r in cell.runs:
        for step, score in r.curve:
            per_step.setdefault(step, []).append(score)
    lows, highs = [], []
    for s in steps:
        lo, hi = stats.bootstrap_ci(per_step[int(s)], reps=reps, seed=seed)
        lows.append(_num(lo))
        highs.append(_num(hi))
    return {"steps": [int(s) for s in steps], "mean": [_num(m) for m in mean], "ci_low": lows, "ci_high": highs}


def _read_results(run: Run) -> dict:
    """The run's results.json, for what the Run record does not carry (git commit); {} if unreadable."""
    path = Path(run.path)
    if path.name != "results.json":
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _hydra_overrides(run: Run) -> list[str] | None:
    """The command-line overrides Hydra saved for the run (<run dir>/.hydra/overrides.yaml), if any."""
    import yaml  # a hydra/omegaconf dependency

    f = Path(run.path).parent / ".hydra" / "overrides.yaml"
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return [str(o) for o in data] if isinstance(data, list) else None


def _seed_list(runs: Sequence[Run]) -> str:
    seeds = [str(r.seed) for r in runs if r.seed is not None]
    return ",".join(dict.fromkeys(seeds)) or "0"


def reproduce_command(cell: Cell) -> str:
    """The `decision-seq train -m` command that reruns the cell's seeds.

    From the runs' saved Hydra overrides when they agree apart from the seed (exactly what was run);
    otherwise from the protocol (other hyperparameters then come from the model's config).
    """
    saved = [_hydra_overrides(r) for r in cell.runs]
    if all(s is not None for s in saved):
        rest = [tuple(o for o in s if not o.startswith("seed=")) for s in saved]
        if len(set(rest)) == 1:
            args = [*rest[0], f"seed={_seed_list(cell.runs)}"]
            return "decision-seq train -m " + " ".join(shlex.quote(a) for a in args)
    p = cell.protocol
    args = [f"model={cell.model}", f"dataset.id={cell.dataset_id}", f"seed={_seed_list(cell.runs)}"]
    for key, field in (
        ("trainer.steps", "steps"),
        ("eval.every", "eval_every"),
        ("eval.episodes", "episodes"),
        ("eval.mode", "mode"),
        ("eval.targets", "targets"),
        ("model.context_len", "context_len"),
        ("dataset.rtg_scale", "rtg_scale"),
        ("dataset.top_fraction", "top_fraction"),
        ("eval.discrete_action", "discrete_action"),
        ("eval.max_steps", "eval_max_steps"),
    ):
        if p.get(field) is not None:
            args.append(f"{key}={fmt_value(p[field])}")
    return "decision-seq train -m " + " ".join(shlex.quote(a) for a in args)


def _published_json(cell: Cell) -> dict | None:
    pub = cell.published
    if pub is None:
        return None
    return {
        "value": pub.value,
        "source": pub.source,
        "exact": pub.exact,
        "sources": [{"source": s, "value": v} for s, v in pub.all_sources],
    }


def _aggregate_published(a: Aggregate) -> list[dict]:
    """Per source that covers every dataset of the aggregate: the mean of its per-dataset numbers."""
    pubs = [c.published for c in a.cells]
    if not pubs or any(p is None for p in pubs):
        return []
    out = []
    for source, _ in pubs[0].all_sources:
        values = [dict(p.all_sources).get(source) for p in pubs]
        if all(v is not None for v in values):
            out.append({"source": source, "mean": float(np.mean(values)), "exact": all(p.exact for p in pubs)})
    return out


def leaderboard_json(lb: Leaderboard, generated_at: str | None = None) -> dict:
    """The leaderboard as the versioned JSON document (schema: docs/leaderboard-json.md)."""
    ids = cell_ids(lb.cells)
    id_of = {id(c): i for c, i in zip(lb.cells, ids, strict=True)}
    cells = []
    for c, cid in zip(lb.cells, ids, strict=True):
        runs = []
        for r in c.runs:
            results = _read_results(r)
            runs.append(
                {
                    "path": r.path,
                    "seed": r.seed,
                    "backbone": r.backbone,
                    "git_commit": results.get("git_commit"),
                    "last": _num(r.last),
                    "best": _num(r.best),
                    "curve": [[int(s), _num(v)] for s, v in r.curve],
                }
            )
        cells.append(
            {
                "id": cid,
                "dataset": {
                    "id": c.dataset_id,
                    **dataset_parts(c.dataset_id),
                    "normalized_score_mean": _num(c.dataset_score),
                },
                "model": c.model,
                "variant": c.variant,
                "label": c.label,
                "backbones": sorted({str(r.backbone) for r in c.runs if r.backbone}),
                "score_unit": "normalized" if c.normalized else "return",
                "n_seeds": c.last.n,
                "seeds": [r.seed for r in c.runs],
                "last": _summary(c.last),
                "best": _summary(c.best),
                "published": _published_json(c),
                "protocol": {f: _jsonable(c.protocol.get(f)) for f in PROTOCOL_FIELDS},
                "command": reproduce_command(c),
                "runs": runs,
                "curve": curve_band(c, lb.reps, lb.seed),
            }
        )
    aggregates = [
        {
            "model": a.model,
            "variant": a.variant,
            "label": a.label,
            "cells": [id_of[id(c)] for c in a.cells],
            "datasets": [c.dataset_id for c in a.cells],
            "n_runs": a.n_runs,
            "last": {k: _estimate(a.last[k]) for k in ("mean", "iqm")},
            "best": {k: _estimate(a.best[k]) for k in ("mean", "iqm")},
            "published": _aggregate_published(a),
        }
        for a in lb.aggregates
    ]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "statistics": {"reps": lb.reps, "seed": lb.seed, "confidence": 0.95, "method": stats_method(lb)},
        "protocol_fields": list(PROTOCOL_FIELDS),
        "cells": cells,
        "aggregates": aggregates,
        "warnings": list(lb.warnings),
        "notes": list(lb.notes),
        "rebuild_note": REBUILD_NOTE,
        "skipped": [{"path": r.path, "status": r.status, "error": r.error} for r in lb.skipped],
    }


def stats_method(lb: Leaderboard) -> str:
    return (
        f"95% percentile bootstrap CIs ({lb.reps} resamples, seed {lb.seed}); aggregates: mean of per-dataset "
        "means and IQM of all runs pooled, stratified bootstrap over runs within each dataset"
    )


def _script_json(data: dict) -> str:
    """JSON safe inside <script>: no '</script>' or '<!--' can close or confuse the element."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_index(data: dict) -> str:
    """index.html: the package's template with the document embedded."""
    template = resources.files(__package__).joinpath("site", "index.html").read_text(encoding="utf-8")
    return template.replace(DATA_PLACEHOLDER, _script_json(data))


def _is_site(folder: Path) -> bool:
    try:
        return json.loads((folder / JSON_FILE).read_text(encoding="utf-8")).get("schema") == SCHEMA
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def check_site_dir(out: Path) -> None:
    """LeaderboardError unless `out` can take the site: new, an empty folder, or a site we wrote before."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LeaderboardError(f"--html {out}: exists and is a file; give a new folder (or a previous site)")
    if out.is_dir() and any(out.iterdir()) and not _is_site(out):
        raise LeaderboardError(
            f"--html {out}: a non-empty folder that is not a leaderboard site (no {JSON_FILE} of ours); "
            "give a new or empty folder, or a previous site to replace"
        )
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LeaderboardError(f"--html {out}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):  # the temp folder and the renames happen there
                raise LeaderboardError(f"--html {out}: cannot write there, {parent} is not writable")
            break


def write_site(lb: Leaderboard, out: Path, generated_at: str | None = None) -> list[Path]:
    """Write index.html, leaderboard.json and assets/ to `out`, replacing a previous site there whole."""
    out = Path(out)
    check_site_dir(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{out.name}.tmp{os.getpid()}"
    old = parent / f".{out.name}.old{os.getpid()}"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    data = leaderboard_json(lb, generated_at)
    site = resources.files(__package__).joinpath("site")
    try:
        (tmp / "assets" / "vendor").mkdir(parents=True)
        (tmp / INDEX_FILE).write_text(render_index(data), encoding="utf-8")
        (tmp / JSON_FILE).write_text(json.dumps(data, allow_nan=False, indent=1) + "\n", encoding="utf-8")
        for name in ASSETS:
            (tmp / "assets" / name).write_bytes(site.joinpath(*name.split("/")).read_bytes())
        # Two renames: the old site moves aside, the new one takes its name; put the old one back on failure.
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists() and not out.exists():
                os.replace(old, out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return [out / INDEX_FILE, out / JSON_FILE, out / "assets"]
