"""Reading runs for the leaderboard: the `Run` record, from results.json files and from W&B.

A run is read from the `results.json` every training run writes (`find_result_files`, `load_runs`,
`run_from_results`), or from W&B: run dirs on disk (`scan_wandb_dir`) or a project through the API
(`runs_from_wandb_project`). Each run carries its protocol (PROTOCOL_FIELDS), which decides what
may be averaged together (decision_seq.leaderboard.grouping).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from decision_seq.experiment.results import RESULTS_FILE, dataset_build, eval_score

# What makes two runs comparable. `mode` is the evaluation mode (window / recurrent). Defined here because
# a run's protocol is read with the run; grouping splits on these same fields.
# eval_env: runs evaluated on different envs (e.g. Hopper-v4 and -v5) are never pooled.
PROTOCOL_FIELDS = (
    "dataset_id",
    "targets",
    "episodes",
    "steps",
    "eval_every",
    "mode",
    "context_len",
    "rtg_scale",
    "eval_env",
    "top_fraction",  # filtered %BC trains on part of the data: another protocol
    # discrete actions: argmax or sampled from the softmax (the DT Atari code samples): never pooled. Null for
    # continuous actions and in results.json files written before the field existed.
    "discrete_action",
    "eval_max_steps",  # evaluation episodes cut short (eval.max_steps): another protocol; null = the env's limit
    # which build of the dataset (episodes, steps, mean return): one id rebuilt on another CPU is other data
    "dataset_build",
)

# W&B names its run dirs `run-<date>_<time>-<id>` (online) or `offline-run-...`.
WANDB_RUN_DIR = re.compile(r"^(offline-)?run-\d{8}_\d{6}-\w+$")


class LeaderboardError(Exception):
    """Bad input (missing path, no results, protocol mismatch under --strict): one line, exit code 2."""


@dataclass
class Run:
    """One training run as the leaderboard needs it (from results.json or W&B)."""

    path: str
    status: str
    model: str
    dataset_id: str
    seed: int | None = None
    backbone: str | None = None
    dataset_score: float | None = None  # the dataset's own mean normalized score
    protocol: dict = field(default_factory=dict)  # PROTOCOL_FIELDS -> canonical (hashable) values
    last: float | None = None
    best: float | None = None
    normalized: bool = True  # scores are normalized (0-100); False: raw returns (no reference scores)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, eval score)
    error: str | None = None


def _canon(value: object) -> object:
    """Hashable, comparable protocol value: lists -> tuples, numbers -> float (so 1000 == 1000.0)."""
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def _finite(x: object) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite score {x}")
    return x


# ---------------------------------------------------------------------------------------------------
# results.json


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
    protocol["dataset_build"] = protocol["dataset_build"] or dataset_build(ds)  # files from before the field
    run = Run(
        path=path,
        status=status,
        model=str(model),
        dataset_id=str(dataset_id),
        seed=data.get("seed"),
        backbone=data.get("backbone"),
        dataset_score=ds.get("normalized_score_mean"),
        protocol=protocol,
        error=data.get("error"),
    )
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
        # normalized only when every target has a normalized score (the dataset has reference scores)
        run.normalized = (
            all(r.get("mean_normalized") is not None for r in rows) if rows else run.dataset_score is not None
        )
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


# ---------------------------------------------------------------------------------------------------
# W&B


def _unwrap_wandb_config(config: dict) -> dict:
    """files/config.yaml stores each top-level key as {value: ..., desc: ...}; the API does not."""
    out = {}
    for k, v in config.items():
        if k == "_wandb":
            continue
        out[k] = v["value"] if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} else v
    return out


def run_from_wandb(
    summary: dict, config: dict, path: str, state: str | None = None, history: Sequence[dict] = ()
) -> Run:
    """A Run from a W&B run's summary and config (the keys train.py logs)."""
    cfg = _unwrap_wandb_config(config)
    try:
        model, dataset, ev, tr = cfg["model"], cfg["dataset"], cfg["eval"], cfg["trainer"]
        protocol = {
            "dataset_id": dataset["id"],
            "targets": ev.get("targets"),
            "episodes": ev.get("episodes"),
            "steps": tr.get("steps"),
            "eval_every": ev.get("every"),
            "mode": ev.get("mode"),
            "context_len": model.get("context_len"),
            "rtg_scale": dataset.get("rtg_scale"),
            "eval_env": summary.get("protocol/eval_env"),
            "top_fraction": dataset.get("top_fraction"),
            # from the summary, like eval_env: the config holds eval.discrete_action for continuous runs too
            "discrete_action": summary.get("protocol/discrete_action"),
            "eval_max_steps": ev.get("max_steps"),
            "dataset_build": summary.get("protocol/dataset_build"),
        }
        run = Run(
            path=path,
            status="running",
            model=str(model["name"]),
            dataset_id=str(dataset["id"]),
            seed=cfg.get("seed"),
            backbone=(model.get("net") or {}).get("backbone"),
            dataset_score=summary.get("dataset/mean_normalized_score"),
            protocol={k: _canon(v) for k, v in protocol.items()},
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"W&B config lacks the decision-seq keys ({type(err).__name__}: {err})") from None
    if summary.get("final/score") is not None and summary.get("best/score") is not None:
        # train.py writes these summary keys only after the last evaluation
        run.status = "completed" if state in (None, "finished") else state
        run.last, run.best = _finite(summary["final/score"]), _finite(summary["best/score"])
    elif state:
        run.status = state
    run.normalized = run.dataset_score is not None
    run.curve = [
        (int(h["_step"]), float(h["eval/score"]))
        for h in history
        if h.get("eval/score") is not None and h.get("_step") is not None
    ]
    return run


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
                runs.append(
                    run_from_wandb(json.loads(summary.read_text()), yaml.safe_load(config.read_text()) or {}, str(d))
                )
            except (OSError, ValueError, yaml.YAMLError) as err:
                warnings.append(f"skipped W&B run {d}: {type(err).__name__}: {err}")
        else:
            warnings.append(
                f"skipped W&B run {d}: no results.json beside it and no files/wandb-summary.json "
                "(offline runs: `wandb sync` them, then use --wandb-project)"
            )
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
        raise LeaderboardError(
            f"cannot list W&B project {project!r} ({type(err).__name__}: {err}); "
            "this needs network access and an API key (`wandb login`)"
        ) from None
    runs, warnings = [], []
    for r in api_runs:
        where = f"wandb:{project}/{r.id}"
        try:
            try:
                history = r.history(keys=["eval/score"], pandas=False)
            except Exception:  # a run without history still has its summary
                history = []
            runs.append(run_from_wandb(dict(r.summary), dict(r.config), where, state=r.state, history=history))
        except ValueError as err:
            warnings.append(f"skipped {where}: {err}")
    return runs, warnings
