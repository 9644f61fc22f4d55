"""Grouping runs into leaderboard rows and computing their statistics.

Completed runs are grouped by (dataset, model). Runs of one group produced under different protocols
(decision_seq.leaderboard.runs.PROTOCOL_FIELDS) are never averaged together: they become separate rows
(`Cell`s) named by the differing field, with a warning (strict: an error). Per row: mean, sample std
and bootstrap CI over seeds of the `last` and `best` scores; per model: mean and IQM over datasets
(`Aggregate`), only within one suite (Atari apart from the rest) and one protocol family.
`build_leaderboard` does it all from paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decision_seq.datasets.naming import BUILTIN_NAMESPACE, DQN_REPLAY_NAMESPACE, dataset_stem
from decision_seq.experiment.results import RESULTS_FILE
from decision_seq.leaderboard import stats
from decision_seq.leaderboard.published import Published, published_for
from decision_seq.leaderboard.runs import (
    PROTOCOL_FIELDS,
    LeaderboardError,
    Run,
    find_result_files,
    load_runs,
    runs_from_wandb_project,
    scan_wandb_dir,
)

# Fields that differ between datasets by design; aggregates over datasets compare only the others.
DATASET_FIELDS = ("dataset_id", "targets", "rtg_scale", "eval_env", "dataset_build")


def suite_of(dataset_id: str, eval_env: str | None = None) -> str:
    """The benchmark suite of a dataset, for the aggregates: "atari" for Atari data (evaluated on an `ALE/`
    env, or an Atari id: DQN-Replay imports, Minari's `atari/...` sets, local `decision-seq/atari-...`
    builds; scores gamer-normalized), "" for the rest (D4RL-normalized or raw). Suites never pool."""
    atari_ids = (f"{DQN_REPLAY_NAMESPACE}/", "atari/", f"{BUILTIN_NAMESPACE}/atari-")
    return "atari" if str(eval_env or "").startswith("ALE/") or dataset_id.startswith(atari_ids) else ""


def fmt_value(value: object) -> str:
    """A protocol value as row labels and messages show it: [3600,1800], 1000 (not 1000.0)."""
    if isinstance(value, tuple):
        return "[" + ",".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
    # The stem (id without version) groups two versions of one dataset; the protocol split then parts them.
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
                    f"protocol mismatch for {stem} / {model}: {f} is {fmt_value(va)} in {ra[0].path} but "
                    f"{fmt_value(vb)} in {rb[0].path} (without --strict they become separate rows)"
                )
            sides = " vs ".join(f"{f}={fmt_value(v)} ({_paths_str(rs)})" for v, rs in by_value.items())
            warnings.append(
                f"{stem} / {model}: runs differ in protocol field {f!r}: {sides}; "
                "not averaged together, shown as separate rows"
            )
        for key, rs in by_proto.items():
            protocol = dict(zip(PROTOCOL_FIELDS, key, strict=True))
            variant = ", ".join(f"{f}={fmt_value(protocol[f])}" for f in differing)
            cells.append(
                Cell(
                    dataset_id=protocol["dataset_id"] or rs[0].dataset_id,
                    model=model,
                    variant=variant,
                    runs=rs,
                    protocol=protocol,
                )
            )
    for c in cells:
        seeds = [r.seed for r in c.runs]
        for s in sorted({s for s in seeds if seeds.count(s) > 1}, key=str):
            warnings.append(
                f"{c.dataset_id} / {c.label}: seed {s} appears in several runs "
                f"({_paths_str([r for r in c.runs if r.seed == s])}); all are counted"
            )
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

    Only cells with normalized scores, of one suite (`suite_of`: Atari's gamer-normalized scores are never
    averaged with D4RL's) and one protocol family (the protocol without its per-dataset fields: dataset id,
    targets, rtg scale) are pooled; other suites and families are aggregated separately (an Atari
    aggregate's label says [atari]), and a family with two cells of one dataset is not aggregated. Each
    case is reported in the notes.
    """
    family_fields = [f for f in PROTOCOL_FIELDS if f not in DATASET_FIELDS]
    aggregates, notes = [], []
    raw = [c for c in cells if not c.normalized]
    if raw:
        notes.append(
            "not in the aggregates (raw returns, the dataset has no reference scores): "
            + ", ".join(f"{c.dataset_id} / {c.label}" for c in raw)
        )
    by_model: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        if c.normalized:
            by_model[c.model].append(c)
    for model, all_cells in sorted(by_model.items()):
        by_suite: dict[str, list[Cell]] = defaultdict(list)
        for c in all_cells:
            by_suite[suite_of(c.dataset_id, c.protocol.get("eval_env"))].append(c)
        for suite, mcells in sorted(by_suite.items()):
            name = f"{model} ({suite})" if suite else model
            families: dict[tuple, list[Cell]] = {}
            for c in mcells:
                families.setdefault(tuple(c.protocol[f] for f in family_fields), []).append(c)
            differing = [f for i, f in enumerate(family_fields) if len({k[i] for k in families}) > 1]
            if differing:
                sides = " vs ".join(
                    ", ".join(f"{f}={fmt_value(dict(zip(family_fields, k, strict=True))[f])}" for f in differing)
                    + " ("
                    + ", ".join(c.dataset_id for c in fc)
                    + ")"
                    for k, fc in families.items()
                )
                notes.append(
                    f"model {name}: datasets were run under different protocols ({sides}); "
                    "aggregated separately, not mixed"
                )
            for key, fcells in families.items():
                variant = ", ".join(
                    ([suite] if suite else [])
                    + [f"{f}={fmt_value(dict(zip(family_fields, key, strict=True))[f])}" for f in differing]
                )
                stems = [dataset_stem(c.dataset_id) for c in fcells]
                if len(set(stems)) < len(stems):
                    dup = sorted({s for s in stems if stems.count(s) > 1})
                    notes.append(
                        f"model {model}{' [' + variant + ']' if variant else ''}: no aggregate, "
                        f"{', '.join(dup)} has rows under several protocols (see the row labels)"
                    )
                    continue
                last = stats.aggregate([[r.last for r in c.runs] for c in fcells], reps=reps, seed=seed)
                best = stats.aggregate([[r.best for r in c.runs] for c in fcells], reps=reps, seed=seed)
                aggregates.append(Aggregate(model, variant, fcells, last, best))
    return aggregates, notes


@dataclass
class Leaderboard:
    """Everything the tables, CSV files and plots show."""

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


def build_leaderboard(
    paths: Sequence[str | Path] = (),
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = stats.DEFAULT_SEED,
    strict: bool = False,
    wandb_dirs: Sequence[str | Path] = (),
    wandb_projects: Sequence[str] = (),
) -> Leaderboard:
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
        raise LeaderboardError(
            f"no completed runs among the {len(runs)} found: "
            + ", ".join(f"{r.path} ({r.status})" for r in runs[:5])
            + (" ..." if len(runs) > 5 else "")
        )
    cells, split_warnings = group_cells(runs, strict=strict)
    summarize_cells(cells, reps, seed)
    aggregates, notes = aggregate_cells(cells, reps, seed)
    return Leaderboard(cells, aggregates, runs, warnings + split_warnings, notes, reps, seed)
