"""`decision-seq leaderboard PATH...`: tables with confidence intervals, and plots, from results.json.

Reads the `results.json` of completed runs (a file, a run dir, or any folder searched recursively,
e.g. a multirun sweep), optionally W&B runs, and groups them by (dataset, model). Runs of one group
that were produced under different protocols (training steps, eval targets, episodes, ...) are never
averaged together: they become separate rows named by the differing field, with a warning (`--strict`:
an error). Per row: seeds, mean +- sample std and a 95% bootstrap CI of the mean of the `last`
(final evaluation, DT paper) and `best` (max over evaluations, Decision Mamba paper) scores, the
published number where the dataset is a D4RL task, and the dataset's own mean normalized score. Per
model: mean and IQM over datasets with stratified bootstrap CIs (`decision_seq.leaderboard.stats`).

Outputs (each written atomically): leaderboard.md, leaderboard.csv, runs.csv, scores.png, curves.png.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decision_seq.leaderboard import stats
from decision_seq.utils.fileio import atomic_write
from decision_seq.experiment.results import RESULTS_FILE, eval_score

EXIT_BAD_INPUT = 2

# What makes two runs comparable. `mode` is the evaluation mode (window / recurrent).
PROTOCOL_FIELDS = ("dataset_id", "targets", "episodes", "steps", "eval_every", "mode", "context_len", "rtg_scale")
# Fields that differ between datasets by design; aggregates over datasets compare only the others.
DATASET_FIELDS = ("dataset_id", "targets", "rtg_scale")

# Published D4RL normalized scores (x100), from the papers and benchmark tables in REFERENCE.md.
DT_SOURCES = ("DT paper, last", "CORL, last", "CORL, best", "d3rlpy, final", "d3rlpy, best")
PUBLISHED_DT = {
    "halfcheetah-medium": (42.6, 42.2, 42.7, 42.6, 43.5),
    "hopper-medium": (67.6, 65.1, 69.4, 60.4, 77.4),
    "walker2d-medium": (74.0, 67.6, 74.7, 67.4, 80.6),
    "halfcheetah-medium-replay": (36.6, 38.9, 40.3, 38.4, 41.1),
    "hopper-medium-replay": (82.7, 81.8, 88.7, 79.6, 94.8),
    "walker2d-medium-replay": (66.6, 59.9, 68.2, 56.8, 78.8),
    "halfcheetah-medium-expert": (86.8, 91.6, 93.4, 56.5, 88.2),
    "hopper-medium-expert": (107.6, 110.4, 111.2, 108.9, 112.7),
    "walker2d-medium-expert": (108.1, 107.1, 108.7, 108.4, 109.7),
}
PUBLISHED_DMAMBA = {"hopper-medium": (("DMamba paper, best", 83.5),)}  # Ota 2024: max over evaluations
D4RL_ID = re.compile(r"^d4rl/(hopper|halfcheetah|walker2d)/([a-z-]+)-v2$")  # imported D4RL v2 data
REBUILD_ID = re.compile(r"^decision-seq/(hopper|halfcheetah|walker2d)/([a-z-]+)-v\d+$")  # our local rebuilds
DAGGER = "†"
REBUILD_NOTE = f"{DAGGER} D4RL-style rebuild on Gymnasium v5 envs: not the same data; for orientation only."


class LeaderboardError(Exception):
    """Bad input (missing path, no results, protocol mismatch under --strict): one line, exit code 2."""


@dataclass(frozen=True)
class Published:
    value: float
    source: str
    exact: bool  # False: our rebuild of the task, shown with a dagger
    all_sources: tuple[tuple[str, float], ...]

    def label(self) -> str:
        return f"{self.value:.1f}{'' if self.exact else DAGGER} ({self.source})"


def published_for(dataset_id: str, model: str) -> Published | None:
    """The published score for a cell: exact for `d4rl/<env>/<level>-v2`, daggered for our rebuilds."""
    exact = D4RL_ID.match(dataset_id)
    m = exact or REBUILD_ID.match(dataset_id)
    if m is None:
        return None
    task = f"{m.group(1)}-{m.group(2)}"
    if model == "dt" and task in PUBLISHED_DT:
        entries = tuple(zip(DT_SOURCES, PUBLISHED_DT[task]))
    elif model == "dmamba" and task in PUBLISHED_DMAMBA:
        entries = PUBLISHED_DMAMBA[task]
    else:
        return None
    return Published(entries[0][1], entries[0][0], exact is not None, entries)


# ---------------------------------------------------------------------------------------------------
# Reading runs


@dataclass
class Run:
    """One training run as the leaderboard needs it (from results.json or W&B)."""

    path: str
    status: str
    model: str
    dataset_id: str
    seed: int | None = None
    backbone: str | None = None
    dataset_name: str | None = None
    dataset_score: float | None = None  # the dataset's own mean normalized score
    protocol: dict = field(default_factory=dict)  # PROTOCOL_FIELDS -> canonical (hashable) values
    last: float | None = None
    best: float | None = None
    normalized: bool = True  # scores are normalized (0-100); False: raw returns (no reference scores)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, eval score)
    error: str | None = None


def _canon(value):
    """Hashable, comparable protocol value: lists -> tuples, numbers -> float (so 1000 == 1000.0)."""
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def _fmt_value(value) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_fmt_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _finite(x) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite score {x}")
    return x


def run_from_results(data: dict, path: str) -> Run:
    """A Run from a results.json dict; ValueError when required keys are missing or malformed."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    status = data.get("status")
    ds = data.get("dataset") or {}
    proto = data.get("protocol") or {}
    dataset_id = ds.get("id") or proto.get("dataset_id")
    model = data.get("model") or data.get("backbone")
    if not isinstance(status, str) or not dataset_id or not model:
        raise ValueError("missing 'status', 'model' or 'dataset.id': not a decision-seq results.json")
    protocol = {f: _canon(proto.get(f)) for f in PROTOCOL_FIELDS}
    protocol["dataset_id"] = protocol["dataset_id"] or dataset_id
    run = Run(path=path, status=status, model=str(model), dataset_id=str(dataset_id), seed=data.get("seed"),
              backbone=data.get("backbone"), dataset_name=ds.get("name"), dataset_score=ds.get("normalized_score_mean"),
              protocol=protocol, error=data.get("error"))
    try:
        run.curve = [(int(e["step"]), float(eval_score(e["results"]))) for e in data.get("evaluations") or []]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed 'evaluations' ({type(err).__name__}: {err})") from None
    if status == "completed":
        try:
            run.last, run.best = _finite(data["final"]["score"]), _finite(data["best"]["score"])
            rows = data["final"].get("per_target") or []
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"completed run without a valid final/best score ({type(err).__name__}: {err})") from None
        run.normalized = (all(r.get("mean_normalized") is not None for r in rows) if rows
                          else run.dataset_score is not None)
    return run


def find_result_files(paths: Sequence[str | Path]) -> list[Path]:
    """results.json files named or found (recursively) under the given paths, de-duplicated."""
    files, seen = [], set()
    for p in map(Path, paths):
        if not p.exists():
            raise LeaderboardError(f"path does not exist: {p}")
        found = [p] if p.is_file() else sorted(p.rglob(RESULTS_FILE))
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def load_runs(files: Sequence[Path]) -> tuple[list[Run], list[str]]:
    """(runs, warnings): unreadable or invalid files are skipped with a warning naming them."""
    runs, warnings = [], []
    for f in files:
        try:
            data = json.loads(Path(f).read_text())
            runs.append(run_from_results(data, str(f)))
        except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
            warnings.append(f"skipped {f}: {type(err).__name__}: {err}")
    return runs, warnings


def _unwrap_wandb_config(config: dict) -> dict:
    """files/config.yaml stores each top-level key as {value: ..., desc: ...}; the API does not."""
    out = {}
    for k, v in config.items():
        if k == "_wandb":
            continue
        out[k] = v["value"] if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} else v
    return out


def run_from_wandb(summary: dict, config: dict, path: str, state: str | None = None,
                   history: Sequence[dict] = ()) -> Run:
    """A Run from a W&B run's summary and config (the keys train.py logs)."""
    cfg = _unwrap_wandb_config(config)
    try:
        model, dataset, ev, tr = cfg["model"], cfg["dataset"], cfg["eval"], cfg["trainer"]
        protocol = {"dataset_id": dataset["id"], "targets": ev.get("targets"), "episodes": ev.get("episodes"),
                    "steps": tr.get("steps"), "eval_every": ev.get("every"), "mode": ev.get("mode"),
                    "context_len": model.get("context_len"), "rtg_scale": dataset.get("rtg_scale")}
        run = Run(path=path, status="running", model=str(model["name"]), dataset_id=str(dataset["id"]),
                  seed=cfg.get("seed"), backbone=(model.get("net") or {}).get("backbone"),
                  dataset_name=dataset.get("name"), dataset_score=summary.get("dataset/mean_normalized_score"),
                  protocol={k: _canon(v) for k, v in protocol.items()})
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"W&B config lacks the decision-seq keys ({type(err).__name__}: {err})") from None
    if summary.get("final/score") is not None and summary.get("best/score") is not None:
        # train.py writes these summary keys only after the last evaluation
        run.status = "completed" if state in (None, "finished") else state
        run.last, run.best = _finite(summary["final/score"]), _finite(summary["best/score"])
    elif state:
        run.status = state
    run.normalized = run.dataset_score is not None
    run.curve = [(int(h["_step"]), float(h["eval/score"])) for h in history
                 if h.get("eval/score") is not None and h.get("_step") is not None]
    return run


WANDB_RUN_DIR = re.compile(r"^(offline-)?run-\d{8}_\d{6}-\w+$")


def scan_wandb_dir(root: Path) -> tuple[list[Path], list[Run], list[str]]:
    """W&B run dirs under `root`: (results.json files beside them, runs read from files/, warnings).

    Our runs keep their W&B dir inside the run dir (`<run>/wandb/offline-run-*`), so the run's
    results.json is read instead when present (it holds everything). Otherwise files/wandb-summary.json
    and files/config.yaml are read where W&B wrote them (online runs); recent W&B versions keep an
    offline run's summary only in the binary .wandb log: those need `wandb sync` and --wandb-project.
    """
    import yaml  # a hydra/omegaconf dependency

    root = Path(root)
    if not root.is_dir():
        raise LeaderboardError(f"--wandb-dir is not a directory: {root}")
    files, runs, warnings = [], [], []
    run_dirs = sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink() and WANDB_RUN_DIR.match(p.name))
    for d in run_dirs:
        beside = d.parent.parent / RESULTS_FILE
        summary, config = d / "files" / "wandb-summary.json", d / "files" / "config.yaml"
        if beside.is_file():
            files.append(beside)
        elif summary.is_file() and config.is_file():
            try:
                runs.append(run_from_wandb(json.loads(summary.read_text()), yaml.safe_load(config.read_text()) or {},
                                           str(d)))
            except (OSError, ValueError, yaml.YAMLError) as err:
                warnings.append(f"skipped W&B run {d}: {type(err).__name__}: {err}")
        else:
            warnings.append(f"skipped W&B run {d}: no results.json beside it and no files/wandb-summary.json "
                            "(offline runs: `wandb sync` them, then use --wandb-project)")
    if not run_dirs:
        warnings.append(f"no W&B run dirs (run-* / offline-run-*) under {root}")
    return files, runs, warnings


def runs_from_wandb_project(project: str) -> tuple[list[Run], list[str]]:
    """Runs of a W&B project ENTITY/PROJECT through the public API (network and `wandb login` needed)."""
    try:
        import wandb

        api = wandb.Api(timeout=30)
        api_runs = list(api.runs(project))
    except Exception as err:  # no network, no API key, unknown project: one clear line
        raise LeaderboardError(f"cannot list W&B project {project!r} ({type(err).__name__}: {err}); "
                               "this needs network access and an API key (`wandb login`)") from None
    runs, warnings = [], []
    for r in api_runs:
        where = f"wandb:{project}/{r.id}"
        try:
            try:
                history = r.history(keys=["eval/score"], pandas=False)
            except Exception:
                history = []
            runs.append(run_from_wandb(dict(r.summary), dict(r.config), where, state=r.state, history=history))
        except ValueError as err:
            warnings.append(f"skipped {where}: {err}")
    return runs, warnings


# ---------------------------------------------------------------------------------------------------
# Grouping and statistics


def dataset_stem(dataset_id: str) -> str:
    """The id without its version: runs on two versions of one dataset share a group, then split."""
    return re.sub(r"-v\d+$", "", dataset_id)


@dataclass
class Cell:
    """One leaderboard row: the completed runs of one model on one dataset under one protocol."""

    dataset_id: str
    model: str
    variant: str  # "" or the differing protocol fields, e.g. "steps=1000"
    runs: list[Run]
    protocol: dict
    last: stats.SeedSummary | None = None
    best: stats.SeedSummary | None = None

    @property
    def label(self) -> str:
        return f"{self.model} [{self.variant}]" if self.variant else self.model

    @property
    def normalized(self) -> bool:
        return all(r.normalized for r in self.runs)

    @property
    def dataset_score(self) -> float | None:
        vals = [r.dataset_score for r in self.runs if r.dataset_score is not None]
        return float(np.mean(vals)) if vals else None

    @property
    def published(self) -> Published | None:
        return published_for(self.dataset_id, self.model)


def _paths_str(runs: list[Run], limit: int = 3) -> str:
    paths = [r.path for r in runs]
    more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def group_cells(runs: Sequence[Run], strict: bool = False) -> tuple[list[Cell], list[str]]:
    """Completed runs -> cells by (dataset, model), split by protocol; (cells, warnings).

    strict: a protocol difference inside a (dataset, model) group raises LeaderboardError naming the
    field and two values with their runs, instead of splitting.
    """
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        if r.status == "completed":
            groups[(dataset_stem(r.dataset_id), r.model)].append(r)
    cells, warnings = [], []
    for (stem, model), members in sorted(groups.items()):
        by_proto: dict[tuple, list[Run]] = {}
        for r in members:
            by_proto.setdefault(tuple(r.protocol[f] for f in PROTOCOL_FIELDS), []).append(r)
        differing = [f for i, f in enumerate(PROTOCOL_FIELDS) if len({key[i] for key in by_proto}) > 1]
        for f in differing:
            i = PROTOCOL_FIELDS.index(f)
            by_value: dict = {}
            for key, rs in by_proto.items():
                by_value.setdefault(key[i], []).extend(rs)
            (va, ra), (vb, rb) = list(by_value.items())[:2]
            if strict:
                raise LeaderboardError(
                    f"protocol mismatch for {stem} / {model}: {f} is {_fmt_value(va)} in {ra[0].path} but "
                    f"{_fmt_value(vb)} in {rb[0].path} (without --strict they become separate rows)")
            sides = " vs ".join(f"{f}={_fmt_value(v)} ({_paths_str(rs)})" for v, rs in by_value.items())
            warnings.append(f"{stem} / {model}: runs differ in protocol field {f!r}: {sides}; "
                            "not averaged together, shown as separate rows")
        for key, rs in by_proto.items():
            protocol = dict(zip(PROTOCOL_FIELDS, key))
            variant = ", ".join(f"{f}={_fmt_value(protocol[f])}" for f in differing)
            cells.append(Cell(dataset_id=protocol["dataset_id"] or rs[0].dataset_id, model=model, variant=variant,
                              runs=rs, protocol=protocol))
    for c in cells:
        seeds = [r.seed for r in c.runs]
        for s in sorted({s for s in seeds if seeds.count(s) > 1}, key=str):
            warnings.append(f"{c.dataset_id} / {c.label}: seed {s} appears in several runs "
                            f"({_paths_str([r for r in c.runs if r.seed == s])}); all are counted")
    cells.sort(key=lambda c: (c.dataset_id, c.model, c.variant))
    return cells, warnings


def summarize_cells(cells: Sequence[Cell], reps: int, seed: int) -> None:
    """Fill each cell's `last` and `best` SeedSummary (mean, sample std, bootstrap CI over seeds)."""
    for c in cells:
        c.last = stats.summarize_seeds([r.last for r in c.runs], reps=reps, seed=seed)
        c.best = stats.summarize_seeds([r.best for r in c.runs], reps=reps, seed=seed)


@dataclass
class Aggregate:
    """Mean and IQM over datasets for one model (and one protocol family)."""

    model: str
    variant: str
    cells: list[Cell]
    last: dict[str, stats.Estimate]
    best: dict[str, stats.Estimate]

    @property
    def label(self) -> str:
        return f"{self.model} [{self.variant}]" if self.variant else self.model

    @property
    def n_runs(self) -> int:
        return sum(len(c.runs) for c in self.cells)


def aggregate_cells(cells: Sequence[Cell], reps: int, seed: int) -> tuple[list[Aggregate], list[str]]:
    """Per model, mean and IQM over datasets with stratified bootstrap CIs; (aggregates, notes).

    Only cells with normalized scores and one protocol family (the protocol without its per-dataset
    fields: dataset id, targets, rtg scale) are pooled; other families are aggregated separately, and a
    family with two cells of one dataset is not aggregated. Each case is reported in the notes.
    """
    family_fields = [f for f in PROTOCOL_FIELDS if f not in DATASET_FIELDS]
    aggregates, notes = [], []
    raw = [c for c in cells if not c.normalized]
    if raw:
        notes.append("not in the aggregates (raw returns, the dataset has no reference scores): "
                     + ", ".join(f"{c.dataset_id} / {c.label}" for c in raw))
    by_model: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        if c.normalized:
            by_model[c.model].append(c)
    for model, mcells in sorted(by_model.items()):
        families: dict[tuple, list[Cell]] = {}
        for c in mcells:
            families.setdefault(tuple(c.protocol[f] for f in family_fields), []).append(c)
        differing = [f for i, f in enumerate(family_fields) if len({k[i] for k in families}) > 1]
        if differing:
            sides = " vs ".join(
                ", ".join(f"{f}={_fmt_value(dict(zip(family_fields, k))[f])}" for f in differing)
                + " (" + ", ".join(c.dataset_id for c in fc) + ")" for k, fc in families.items())
            notes.append(f"model {model}: datasets were run under different protocols ({sides}); "
                         "aggregated separately, not mixed")
        for key, fcells in families.items():
            variant = ", ".join(f"{f}={_fmt_value(dict(zip(family_fields, key))[f])}" for f in differing)
            stems = [dataset_stem(c.dataset_id) for c in fcells]
            if len(set(stems)) < len(stems):
                dup = sorted({s for s in stems if stems.count(s) > 1})
                notes.append(f"model {model}{' [' + variant + ']' if variant else ''}: no aggregate, "
                             f"{', '.join(dup)} has rows under several protocols (see the row labels)")
                continue
            last = stats.aggregate([[r.last for r in c.runs] for c in fcells], reps=reps, seed=seed)
            best = stats.aggregate([[r.best for r in c.runs] for c in fcells], reps=reps, seed=seed)
            aggregates.append(Aggregate(model, variant, fcells, last, best))
    return aggregates, notes


@dataclass
class Leaderboard:
    cells: list[Cell]
    aggregates: list[Aggregate]
    runs: list[Run]  # every run read, completed or not
    warnings: list[str]  # unreadable files, protocol splits, duplicate seeds
    notes: list[str]  # what the aggregates leave out or keep apart
    reps: int
    seed: int

    @property
    def skipped(self) -> list[Run]:
        return [r for r in self.runs if r.status != "completed"]


def build_leaderboard(paths: Sequence[str | Path] = (), *, reps: int = stats.DEFAULT_REPS,
                      seed: int = stats.DEFAULT_SEED, strict: bool = False, wandb_dirs: Sequence[str | Path] = (),
                      wandb_projects: Sequence[str] = ()) -> Leaderboard:
    """Read runs, group, split by protocol and compute every statistic. LeaderboardError on bad input."""
    if reps < 1:
        raise LeaderboardError(f"--reps must be >= 1, got {reps}")
    files = find_result_files(paths)
    runs, warnings = [], []
    for d in wandb_dirs:
        wfiles, wruns, wwarn = scan_wandb_dir(Path(d))
        seen = {f.resolve() for f in files}
        files += [f for f in wfiles if f.resolve() not in seen]
        runs += wruns
        warnings += wwarn
    loaded, load_warnings = load_runs(files)
    runs = loaded + runs
    warnings = load_warnings + warnings
    for project in wandb_projects:
        pruns, pwarn = runs_from_wandb_project(project)
        runs += pruns
        warnings += pwarn
    if not runs:
        where = ", ".join(map(str, [*paths, *wandb_dirs, *wandb_projects])) or "(no paths given)"
        raise LeaderboardError(f"no readable {RESULTS_FILE} found under {where}")
    if not any(r.status == "completed" for r in runs):
        raise LeaderboardError(f"no completed runs among the {len(runs)} found: "
                               + ", ".join(f"{r.path} ({r.status})" for r in runs[:5])
                               + (" ..." if len(runs) > 5 else ""))
    cells, split_warnings = group_cells(runs, strict=strict)
    summarize_cells(cells, reps, seed)
    aggregates, notes = aggregate_cells(cells, reps, seed)
    return Leaderboard(cells, aggregates, runs, warnings + split_warnings, notes, reps, seed)


# ---------------------------------------------------------------------------------------------------
# Rendering


def _num(x, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_summary(s: stats.SeedSummary) -> str:
    """'mean ± std [lo, hi]'; std '-' and no interval for a single seed."""
    ci = "" if math.isnan(s.ci_low) else f" [{s.ci_low:.1f}, {s.ci_high:.1f}]"
    return f"{s.mean:.1f} ± {_num(s.std)}{ci}"


def fmt_estimate(e: stats.Estimate) -> str:
    ci = "" if math.isnan(e.ci_low) else f" [{e.ci_low:.1f}, {e.ci_high:.1f}]"
    return f"{e.value:.1f}{ci}"


def _dataset_label(c: Cell) -> str:
    return c.dataset_id if c.normalized else f"{c.dataset_id} (raw return)"


def cell_rows(lb: Leaderboard) -> list[dict]:
    """The display rows shared by the terminal and Markdown tables."""
    rows = []
    for c in lb.cells:
        pub = c.published
        rows.append({"dataset": _dataset_label(c), "model": c.label, "seeds": str(c.last.n),
                     "last": fmt_summary(c.last), "best": fmt_summary(c.best),
                     "published": pub.label() if pub else "-", "dataset mean": _num(c.dataset_score)})
    return rows


def aggregate_rows(lb: Leaderboard) -> list[dict]:
    return [{"model": a.label, "datasets": str(len(a.cells)), "runs": str(a.n_runs),
             "last mean": fmt_estimate(a.last["mean"]), "last IQM": fmt_estimate(a.last["iqm"]),
             "best mean": fmt_estimate(a.best["mean"]), "best IQM": fmt_estimate(a.best["iqm"])}
            for a in lb.aggregates]


def _needs_dagger(lb: Leaderboard) -> bool:
    return any(c.published is not None and not c.published.exact for c in lb.cells)


def _ci_text(lb: Leaderboard) -> str:
    return (f"95% percentile bootstrap CI ({lb.reps} resamples, seed {lb.seed}); aggregates: stratified bootstrap "
            "over runs within each dataset")


def print_leaderboard(lb: Leaderboard, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:  # pipes and logs: do not squeeze the table into 80 columns
            console = Console(width=200)
    table = Table(title="decision-seq leaderboard", caption="mean ± std over seeds [" + _ci_text(lb) + "]")
    cols = ("dataset", "model", "seeds", "last", "best", "published", "dataset mean")
    for col in cols:
        table.add_column(col, justify="left" if col in ("dataset", "model", "published") else "right")
    for row in cell_rows(lb):
        table.add_row(*(Text(row[c]) for c in cols))  # Text: no rich markup in paths or "[lo, hi]"
    console.print(table)
    if lb.aggregates:
        agg = Table(title="aggregate over datasets (per model)")
        acols = ("model", "datasets", "runs", "last mean", "last IQM", "best mean", "best IQM")
        for col in acols:
            agg.add_column(col, justify="left" if col == "model" else "right")
        for row in aggregate_rows(lb):
            agg.add_row(*(Text(row[c]) for c in acols))
        console.print(agg)
    if _needs_dagger(lb):
        console.print(Text(REBUILD_NOTE))
    for note in lb.notes:
        console.print(Text(f"note: {note}"))
    if lb.skipped:
        console.print(Text(f"skipped runs (not completed): {len(lb.skipped)}"))
        for r in lb.skipped:
            console.print(Text(f"  {r.status:<10} {r.path}" + (f"  ({_first_line(r.error)})" if r.error else "")))


def _first_line(text: str, limit: int = 120) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _md_table(rows: list[dict], cols: Sequence[str]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return lines


def markdown(lb: Leaderboard) -> str:
    lines = ["# decision-seq leaderboard", "",
             "Score: mean normalized score (0-100, D4RL convention) of the best eval target, or mean return "
             "where the dataset has no reference scores. `last`: final evaluation (the DT paper's protocol); "
             "`best`: max over evaluations during training (the Decision Mamba paper's protocol). "
             f"Cells: mean ± sample std over seeds [{_ci_text(lb)}].", ""]
    lines += _md_table(cell_rows(lb), ("dataset", "model", "seeds", "last", "best", "published", "dataset mean"))
    if lb.aggregates:
        lines += ["", "## Aggregate over datasets", "",
                  "Mean of per-dataset means and interquartile mean (IQM) of all runs pooled, "
                  "with 95% stratified bootstrap CIs.", ""]
        lines += _md_table(aggregate_rows(lb), ("model", "datasets", "runs", "last mean", "last IQM", "best mean",
                                                "best IQM"))
        lines.append("")
        for a in lb.aggregates:
            lines.append(f"- {a.label}: " + ", ".join(c.dataset_id for c in a.cells))
    lines += ["", "## Protocols", ""]
    for c in lb.cells:
        proto = ", ".join(f"{f}={_fmt_value(c.protocol[f])}" for f in PROTOCOL_FIELDS if f != "dataset_id")
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


def cells_frame(lb: Leaderboard):
    """leaderboard.csv: one row per cell (`row=cell`), then one per aggregate (`row=aggregate`)."""
    import pandas as pd

    records = []
    for c in lb.cells:
        pub = c.published
        rec = {"row": "cell", "dataset": c.dataset_id, "model": c.model, "variant": c.variant,
               "backbone": ";".join(sorted({str(r.backbone) for r in c.runs})),
               "score_unit": "normalized" if c.normalized else "return", "n_datasets": 1, "n_seeds": c.last.n,
               "seeds": ";".join(str(r.seed) for r in c.runs)}
        for name, s in (("last", c.last), ("best", c.best)):
            rec |= {f"{name}_mean": s.mean, f"{name}_std": s.std, f"{name}_ci_low": s.ci_low,
                    f"{name}_ci_high": s.ci_high, f"{name}_iqm": np.nan, f"{name}_iqm_ci_low": np.nan,
                    f"{name}_iqm_ci_high": np.nan}
        rec |= {"published": pub.value if pub else np.nan, "published_source": pub.source if pub else "",
                "published_match": ("exact" if pub.exact else "rebuild") if pub else "",
                "dataset_normalized_score": c.dataset_score if c.dataset_score is not None else np.nan}
        rec |= {f"protocol_{f}": _fmt_value(c.protocol[f]) for f in PROTOCOL_FIELDS if f != "dataset_id"}
        records.append(rec)
    for a in lb.aggregates:
        rec = {"row": "aggregate", "dataset": ";".join(c.dataset_id for c in a.cells), "model": a.model,
               "variant": a.variant, "backbone": "", "score_unit": "normalized", "n_datasets": len(a.cells),
               "n_seeds": a.n_runs, "seeds": ""}
        for name, est in (("last", a.last), ("best", a.best)):
            rec |= {f"{name}_mean": est["mean"].value, f"{name}_std": np.nan, f"{name}_ci_low": est["mean"].ci_low,
                    f"{name}_ci_high": est["mean"].ci_high, f"{name}_iqm": est["iqm"].value,
                    f"{name}_iqm_ci_low": est["iqm"].ci_low, f"{name}_iqm_ci_high": est["iqm"].ci_high}
        records.append(rec)
    return pd.DataFrame.from_records(records)


def runs_frame(lb: Leaderboard):
    """runs.csv: one row per run read, completed or not."""
    import pandas as pd

    variant = {id(r): c.variant for c in lb.cells for r in c.runs}
    return pd.DataFrame.from_records([
        {"path": r.path, "dataset": r.dataset_id, "model": r.model, "variant": variant.get(id(r), ""), "seed": r.seed,
         "last": r.last if r.last is not None else np.nan, "best": r.best if r.best is not None else np.nan,
         "score_unit": "normalized" if r.normalized else "return", "status": r.status} for r in lb.runs],
        columns=["path", "dataset", "model", "variant", "seed", "last", "best", "score_unit", "status"])


def _panels(n: int):
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


def plot_scores(lb: Leaderboard):
    """Per dataset: last and best mean per model, CI error bars, the dataset's mean as a dashed line."""
    groups = _by_dataset(lb.cells)
    fig, axes = _panels(len(groups))
    width = 0.38
    for ax, (dataset, cells) in zip(axes, groups.items()):
        x = np.arange(len(cells))
        for k, (name, color) in enumerate((("last", "tab:blue"), ("best", "tab:orange"))):
            s = [getattr(c, name) for c in cells]
            means = np.array([v.mean for v in s])
            err = np.array([[v.mean - v.ci_low, v.ci_high - v.mean] for v in s]).T  # NaN (1 seed): no bar
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
    return (steps, np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]))


def plot_curves(lb: Leaderboard):
    """Per dataset: eval score vs training step, mean over seeds with a min-max band, one line per model."""
    groups = _by_dataset(lb.cells)
    fig, axes = _panels(len(groups))
    for ax, (dataset, cells) in zip(axes, groups.items()):
        drawn = False
        for c in cells:
            steps, mean, lo, hi = cell_curve(c)
            if steps.size == 0:
                continue
            line, = ax.plot(steps, mean, marker="o", ms=3, label=f"{c.label} (n={len(c.runs)})")
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


def write_outputs(lb: Leaderboard, out: Path, plots: bool = True) -> list[Path]:
    """leaderboard.md, leaderboard.csv, runs.csv (and scores.png, curves.png), each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, writer) -> None:
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


# ---------------------------------------------------------------------------------------------------
# Command line

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

Statistics (decision_seq/stats.py, rliable's methods in numpy): per row, mean and sample std over
seeds and a 95% percentile bootstrap CI of the mean, for both `last` (final evaluation, DT paper)
and `best` (max over evaluations, Decision Mamba paper) scores. Per model, over datasets: mean and
interquartile mean (IQM) with stratified bootstrap CIs, only over rows of one protocol family.
Published D4RL numbers (DT paper, CORL, d3rlpy; Decision Mamba) stand beside d4rl/<env>/<level>-v2
rows, and with a dagger beside our D4RL-style rebuilds decision-seq/<env>/<level>-v0.

Writes to --out: leaderboard.md, leaderboard.csv (one row per cell, then per aggregate, with CI
bounds), runs.csv (one row per run), scores.png and curves.png (unless --no-plots). Input files
are never modified.
"""

EPILOG = """\
examples:
  decision-seq leaderboard multirun/2025-01-01/12-00-00        # one sweep; writes <sweep>/leaderboard/
  decision-seq leaderboard outputs multirun --out reports/lb    # everything under two trees
  decision-seq leaderboard run_a/results.json run_b --strict    # fail on any protocol mismatch
  decision-seq leaderboard multirun --reps 10000 --seed 1 --no-plots
  decision-seq leaderboard --wandb-project my-team/decision-seq # W&B runs (network, wandb login)

exit codes: 0 success; 2 bad input (missing path, no readable results, protocol mismatch with --strict)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="decision-seq leaderboard", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="results.json files, run dirs or folders to search")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: <first PATH>/leaderboard if it is a folder, else ./leaderboard)")
    p.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap RNG seed (default %(default)s)")
    p.add_argument("--strict", action="store_true", help="error (exit 2) when runs of one row differ in protocol")
    p.add_argument("--no-plots", action="store_true", help="do not write scores.png and curves.png")
    p.add_argument("--wandb-dir", action="append", default=[], metavar="DIR",
                   help="also read W&B run dirs under DIR (uses the results.json beside our runs' wandb/ dirs, "
                        "else files/wandb-summary.json + config.yaml); repeatable")
    p.add_argument("--wandb-project", action="append", default=[], metavar="ENTITY/PROJECT",
                   help="also read the runs of a W&B project through the API (needs network); repeatable")
    return p


def default_out(paths: Sequence[str]) -> Path:
    if paths and Path(paths[0]).is_dir():
        return Path(paths[0]) / "leaderboard"
    return Path("leaderboard")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2): return the code, do not exit
        return int(exit_.code or 0)
    if not args.paths and not args.wandb_dir and not args.wandb_project:
        print("decision-seq leaderboard: error: give at least one PATH (or --wandb-dir / --wandb-project); "
              "see --help", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        lb = build_leaderboard(args.paths, reps=args.reps, seed=args.seed, strict=args.strict,
                               wandb_dirs=args.wandb_dir, wandb_projects=args.wandb_project)
    except LeaderboardError as err:
        print(f"decision-seq leaderboard: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for w in lb.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print_leaderboard(lb)
    out = args.out or default_out(args.paths)
    written = write_outputs(lb, out, plots=not args.no_plots)
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0
