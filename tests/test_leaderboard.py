"""`decision-seq leaderboard` and decision_seq.leaderboard.stats: exact statistics on tiny hand-made inputs,
protocol splits, skipped and invalid runs, outputs and plots, W&B dirs, and one real 2-seed sweep."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decision_seq.leaderboard import stats
from decision_seq.leaderboard.board import main, published_for

# ---------------------------------------------------------------------------------------------------
# Independent re-computations for the expected values (explicit loops, hand-written percentile)


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
    kept = v[cut:len(v) - cut]
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


def ci_by_hand(tasks, aggregate="mean", reps=2000, seed=0) -> tuple[float, float]:
    reps_ = stratified_replicates_by_hand(tasks, aggregate, reps, seed)
    return percentile_by_hand(reps_, 2.5), percentile_by_hand(reps_, 97.5)


# ---------------------------------------------------------------------------------------------------
# stats


def test_iqm_known_arrays():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert stats.iqm([0, 0, 0, 100]) == 0.0  # drops one value at each end: mean(0, 0)
    assert stats.iqm([5, 1, 100, 2, 3]) == pytest.approx((2 + 3 + 5) / 3)  # n=5: int(1.25) = 1 cut
    assert stats.iqm([[1, 9], [3, 7]]) == pytest.approx(5.0)  # flattened runs x tasks: mean(3, 7)
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(1).normal(size=(7, 3))
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25, axis=None))
    batched = stats.iqm(np.array([[1, 2, 3, 4], [10, 0, 0, 0]]), axis=-1)  # row-wise on resamples
    np.testing.assert_allclose(batched, [2.5, 0.0])


def test_seed_summary_by_hand():
    x = [10.0, 20.0, 30.0, 60.0]
    s = stats.summarize_seeds(x, reps=500, seed=3)
    assert s.n == 4 and s.mean == pytest.approx(30.0)
    assert s.std == pytest.approx(math.sqrt((400 + 100 + 0 + 900) / 3))
    lo, hi = ci_by_hand([x], "mean", reps=500, seed=3)
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi), abs=1e-12)
    assert s.ci_low <= s.mean <= s.ci_high
    one = stats.summarize_seeds([42.0])
    assert one.mean == 42.0 and math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)


def test_stratified_aggregate_by_hand():
    tasks = [[10.0, 20.0, 30.0, 60.0], [50.0, 70.0, 80.0]]  # unequal runs per task are allowed
    agg = stats.aggregate(tasks, reps=300, seed=7)
    assert agg["mean"].value == pytest.approx((30.0 + 200.0 / 3) / 2)
    # 7 pooled runs 10 20 30 50 60 70 80: int(1.75) = 1 cut at each end
    assert agg["iqm"].value == pytest.approx((20 + 30 + 50 + 60 + 70) / 5)
    for name in ("mean", "iqm"):
        lo, hi = ci_by_hand(tasks, name, reps=300, seed=7)
        assert (agg[name].ci_low, agg[name].ci_high) == pytest.approx((lo, hi), abs=1e-12)
        assert agg[name].ci_low <= agg[name].value <= agg[name].ci_high


def test_bootstrap_deterministic_and_shrinks_with_seeds():
    rng = np.random.default_rng(0)
    few, many = rng.normal(50, 10, size=4), rng.normal(50, 10, size=64)
    assert stats.bootstrap_ci(few, seed=5) == stats.bootstrap_ci(few, seed=5)
    assert stats.bootstrap_ci(few, seed=5) != stats.bootstrap_ci(few, seed=6)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(stats.bootstrap_ci(many)) < width(stats.bootstrap_ci(few))
    assert stats.aggregate([few, many], seed=2) == stats.aggregate([few, many], seed=2)


# ---------------------------------------------------------------------------------------------------
# Synthetic results.json


def make_results(dataset_id="d4rl/hopper/medium-replay-v2", model="dt", seed=0, last=50.0, best=None,
                 status="completed", normalized=True, dataset_score=40.0, steps=1000, curve=None, **protocol) -> dict:
    """A minimal valid results.json dict; `curve`: eval scores at steps spaced evenly up to `steps`;
    `protocol`: overrides of the protocol keys."""
    best = last if best is None else best
    curve = [last / 2, last] if curve is None else curve
    every = steps // len(curve)
    evals = []
    for i, score in enumerate(curve):
        row = {"target": 3600.0, "mean_return": score * 10, "mean_normalized": score if normalized else None}
        evals.append({"step": (i + 1) * every, "results": [row], "metrics": {}})
    summary = lambda s: {"score": s, "target": 3600.0, "step": steps,  # noqa: E731
                         "per_target": [{"target": 3600.0, "mean_return": s * 10,
                                         "mean_normalized": s if normalized else None}]}
    proto = {"targets": [3600, 1800], "episodes": 10, "mode": "window", "eval_every": 500, "steps": steps,
             "context_len": 20, "rtg_scale": 1000.0, "dataset_id": dataset_id} | protocol
    res = {"status": status, "model": model, "backbone": {"dt": "transformer", "dmamba": "mamba"}.get(model, model),
           "seed": seed, "dataset": {"id": dataset_id, "name": dataset_id.split("/")[-1],
                                     "normalized_score_mean": dataset_score if normalized else None},
           "protocol": proto, "versions": {}, "evaluations": evals}
    if status == "completed":
        res |= {"final": summary(last), "best": summary(best)}
    else:
        res["error"] = f"stopped by SIGTERM at step {steps // 2}"
    return res


def write_run(root: Path, name: str, **kwargs) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(make_results(**kwargs)))
    return d


def read_cells(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv", keep_default_na=True)


HOPPER_LAST = [10.0, 20.0, 30.0, 60.0]
HOPPER_BEST = [15.0, 25.0, 35.0, 90.0]
WALKER_LAST = [50.0, 70.0, 80.0, 100.0]


@pytest.fixture
def sweep(tmp_path) -> Path:
    """dt on two D4RL sets (4 seeds each) and dmamba on one; numbers chosen to check by hand."""
    root = tmp_path / "sweep"
    for s, (lst, bst) in enumerate(zip(HOPPER_LAST, HOPPER_BEST)):
        write_run(root, f"dt_hopper_{s}", seed=s, last=lst, best=bst, curve=[lst / 2, lst])
        write_run(root, f"dt_walker_{s}", dataset_id="d4rl/walker2d/medium-v2", seed=s, last=WALKER_LAST[s],
                  dataset_score=60.0)
    for s in range(2):
        write_run(root, f"dm_hopper_{s}", dataset_id="decision-seq/hopper/medium-v0", model="dmamba", seed=s,
                  last=70.0 + 10 * s)
    return root


def test_table_values_exact(sweep, capsys):
    out = sweep / "lb"
    assert main([str(sweep), "--out", str(out), "--reps", "400", "--seed", "3", "--no-plots"]) == 0
    df = read_cells(out)
    cells = df[df.row == "cell"].set_index(["dataset", "model"])
    hop = cells.loc[("d4rl/hopper/medium-replay-v2", "dt")]
    assert hop.n_seeds == 4 and hop.seeds == "0;1;2;3"
    assert hop.last_mean == pytest.approx(30.0)
    assert hop.last_std == pytest.approx(math.sqrt(1400 / 3))
    assert (hop.last_ci_low, hop.last_ci_high) == pytest.approx(ci_by_hand([HOPPER_LAST], reps=400, seed=3))
    assert hop.best_mean == pytest.approx(np.mean(HOPPER_BEST))
    assert (hop.best_ci_low, hop.best_ci_high) == pytest.approx(ci_by_hand([HOPPER_BEST], reps=400, seed=3))
    assert hop.published == pytest.approx(82.7) and hop.published_match == "exact"
    assert hop.published_source == "DT paper, last" and hop.dataset_normalized_score == pytest.approx(40.0)
    walker = cells.loc[("d4rl/walker2d/medium-v2", "dt")]
    assert walker.published == pytest.approx(74.0)
    dm = cells.loc[("decision-seq/hopper/medium-v0", "dmamba")]
    assert dm.published == pytest.approx(83.5) and dm.published_match == "rebuild"
    assert dm.last_std == pytest.approx(math.sqrt(50.0))

    agg = df[df.row == "aggregate"].set_index("model")
    dt = agg.loc["dt"]
    assert dt.n_datasets == 2 and dt.n_seeds == 8
    assert dt.last_mean == pytest.approx((30.0 + 75.0) / 2)
    pooled = sorted(HOPPER_LAST + WALKER_LAST)  # 10 20 30 50 60 70 80 100: middle four
    assert dt.last_iqm == pytest.approx((30 + 50 + 60 + 70) / 4)
    assert (dt.last_ci_low, dt.last_ci_high) == pytest.approx(ci_by_hand([HOPPER_LAST, WALKER_LAST], "mean", 400, 3))
    assert (dt.last_iqm_ci_low, dt.last_iqm_ci_high) == pytest.approx(
        ci_by_hand([HOPPER_LAST, WALKER_LAST], "iqm", 400, 3))
    assert trimmed_mean_by_hand(pooled) == pytest.approx(dt.last_iqm)

    text = capsys.readouterr().out
    assert "82.7 (DT paper, last)" in text and "83.5† (DMamba paper, best)" in text
    assert "D4RL-style rebuild on Gymnasium v5 envs" in text
    md = (out / "leaderboard.md").read_text()
    assert "| d4rl/hopper/medium-replay-v2 | dt | 4 | 30.0 ± 21.6 [" in md and "not the same data" in md
    assert "## Protocols" in md and "steps=1000" in md
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 10 and set(runs.status) == {"completed"}
    assert sorted(runs[runs.model == "dmamba"].last) == [70.0, 80.0]


def test_same_seed_same_output_and_inputs_untouched(sweep):
    before = {p: p.read_bytes() for p in sweep.rglob("results.json")}
    assert main([str(sweep), "--out", str(sweep / "a"), "--no-plots"]) == 0
    assert main([str(sweep), "--out", str(sweep / "b"), "--no-plots"]) == 0
    assert (sweep / "a" / "leaderboard.csv").read_text() == (sweep / "b" / "leaderboard.csv").read_text()
    assert {p: p.read_bytes() for p in sweep.rglob("results.json")} == before
    assert not list(sweep.rglob(".*.tmp*"))  # no temp files left by the atomic writes


def test_mixed_protocols_split_with_warning(tmp_path, capsys):
    root = tmp_path / "mixed"
    write_run(root, "a", seed=0, last=40.0, steps=1000)
    write_run(root, "b", seed=1, last=50.0, steps=1000)
    write_run(root, "c", seed=0, last=90.0, steps=3000)
    assert main([str(root), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "'steps'" in err and "steps=1000" in err and "steps=3000" in err and str(root / "c") in err
    cells = read_cells(root / "leaderboard")
    cells = cells[cells.row == "cell"]
    assert sorted(cells.variant) == ["steps=1000", "steps=3000"]
    by_variant = cells.set_index("variant")
    assert by_variant.loc["steps=1000"].last_mean == pytest.approx(45.0)
    assert by_variant.loc["steps=3000"].n_seeds == 1

    assert main([str(root), "--strict", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "protocol mismatch" in err and "steps is 1000" in err and "but 3000" in err


def test_aggregates_keep_protocol_families_apart(tmp_path, capsys):
    root = tmp_path / "fam"
    write_run(root, "h", seed=0, last=40.0, steps=1000)
    write_run(root, "w", dataset_id="d4rl/walker2d/medium-v2", seed=0, last=60.0, steps=3000)
    write_run(root, "raw", dataset_id="local/pendulum/raw-v0", seed=0, last=-300.0, normalized=False)
    assert main([str(root), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "aggregated separately, not mixed" in out.replace("\n", " ")
    assert "raw returns" in out and "local/pendulum/raw-v0" in out
    agg = read_cells(root / "leaderboard")
    agg = agg[agg.row == "aggregate"]
    assert sorted(agg.variant) == ["steps=1000", "steps=3000"] and set(agg.n_datasets) == {1}


def test_version_difference_splits_rows(tmp_path, capsys):
    root = tmp_path / "ver"
    write_run(root, "a", dataset_id="d4rl/hopper/medium-v1", last=10.0)
    write_run(root, "b", dataset_id="d4rl/hopper/medium-v2", last=20.0)
    assert main([str(root), "--no-plots"]) == 0
    assert "'dataset_id'" in capsys.readouterr().err
    cells = read_cells(root / "leaderboard")
    assert sorted(cells[cells.row == "cell"].dataset) == ["d4rl/hopper/medium-v1", "d4rl/hopper/medium-v2"]


def test_skipped_runs_and_invalid_json(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "done", seed=0, last=40.0)
    write_run(root, "stopped", seed=1, status="preempted")
    write_run(root, "broken", seed=2, status="failed")
    (root / "garbage").mkdir()
    (root / "garbage" / "results.json").write_text("{not json")
    assert main([str(root), "--no-plots"]) == 0
    cap = capsys.readouterr()
    assert str(root / "garbage" / "results.json") in cap.err and "warning" in cap.err
    assert "skipped runs (not completed): 2" in cap.out
    assert "preempted" in cap.out and str(root / "stopped" / "results.json") in cap.out
    assert "failed" in cap.out and "SIGTERM" in cap.out
    runs = pd.read_csv(root / "leaderboard" / "runs.csv").set_index("status")
    assert sorted(runs.index) == ["completed", "failed", "preempted"]
    cells = read_cells(root / "leaderboard")
    assert cells[cells.row == "cell"].n_seeds.tolist() == [1]
    md = (root / "leaderboard" / "leaderboard.md").read_text()
    assert "## Skipped runs" in md and "preempted" in md


def test_bad_inputs_exit_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main([str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert "no readable results.json" in capsys.readouterr().err
    write_run(tmp_path / "only", "x", status="running")
    assert main([str(tmp_path / "only")]) == 2
    assert "no completed runs" in capsys.readouterr().err
    assert main([]) == 2
    assert main([str(empty), "--reps", "0"]) == 2
    assert main(["--bogus"]) == 2
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for word in ("results.json", "--strict", "IQM", "leaderboard.csv", "examples"):
        assert word in help_text


def test_plots_written(sweep):
    from matplotlib.image import imread

    out = sweep / "leaderboard"  # the default: <first PATH>/leaderboard
    assert main([str(sweep), "--reps", "100"]) == 0
    for name in ("scores.png", "curves.png"):
        path = out / name
        assert path.stat().st_size > 0
        img = imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and len(np.unique(img)) > 1  # not a blank image


def test_published_lookup():
    assert published_for("d4rl/hopper/medium-replay-v2", "dt").value == 82.7
    assert published_for("d4rl/hopper/medium-replay-v2", "dmamba") is None
    assert published_for("d4rl/hopper/medium-v2", "dmamba").value == 83.5
    rebuild = published_for("decision-seq/halfcheetah/medium-expert-v0", "dt")
    assert rebuild.value == 86.8 and not rebuild.exact and "†" in rebuild.label()
    assert published_for("mujoco/hopper/medium-v0", "dt") is None  # Minari's v5 sets: no D4RL number
    assert published_for("decision-seq/pendulum/mixed-v0", "dt") is None


def test_wandb_dir(tmp_path, capsys):
    # an online-style run dir with files/wandb-summary.json and config.yaml
    wb = tmp_path / "wandb" / "run-20250101_120000-abc123" / "files"
    wb.mkdir(parents=True)
    (wb / "wandb-summary.json").write_text(json.dumps(
        {"final/score": 61.0, "best/score": 70.0, "dataset/mean_normalized_score": 40.0}))
    (wb / "config.yaml").write_text(
        "_wandb:\n  value: {cli_version: 0.31.0}\n"
        "model:\n  value: {name: dt, context_len: 20, net: {backbone: transformer}}\n"
        "dataset:\n  value: {id: d4rl/hopper/medium-replay-v2, name: hopper-medium-replay, rtg_scale: 1000.0}\n"
        "eval:\n  value: {targets: [3600, 1800], episodes: 10, every: 500, mode: window}\n"
        "trainer:\n  value: {steps: 1000}\nseed:\n  value: 4\n")
    # our run dir: the offline wandb dir inside it adds nothing; its results.json is read instead
    run = write_run(tmp_path / "outputs", "r", seed=1, last=51.0)
    (run / "wandb" / "offline-run-20250101_120001-def456").mkdir(parents=True)
    out = tmp_path / "lb"
    assert main(["--wandb-dir", str(tmp_path / "wandb"), "--wandb-dir", str(run), "--out", str(out),
                 "--no-plots"]) == 0
    cells = read_cells(out)
    cell = cells[cells.row == "cell"].iloc[0]
    assert cell.n_seeds == 2 and cell.seeds == "1;4" and cell.last_mean == pytest.approx(56.0)


# ---------------------------------------------------------------------------------------------------
# Real training runs through the `decision-seq` entry point (as in test_train.py)

TINY = [
    "model.context_len=5", "model.net.embed_dim=16", "model.net.backbone_kwargs.n_layer=1",
    "trainer.batch_size=8", "trainer.warmup_steps=5", "trainer.log_every=5", "trainer.progress=false",
    "eval.episodes=2", "eval.targets=[-150,-600]", "trainer.device=cpu", "trainer.num_threads=1",
]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "-m", "decision_seq", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, f"decision-seq {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc



def test_real_sweep_two_seeds(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "sweep"
    cli("train", "-m", "seed=0,1", "trainer.steps=6", "eval.every=3", "logger=none", f"hydra.sweep.dir={sweep}",
        *TINY)
    proc = cli("leaderboard", str(sweep), "--reps", "200")
    assert "skipped" not in proc.stdout and "decision-seq/pendulum/mixed-v0" in proc.stdout
    df = read_cells(sweep / "leaderboard")
    cell = df[df.row == "cell"].iloc[0]
    assert cell.model == "dt" and cell.n_seeds == 2 and cell.seeds == "0;1"
    results = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert cell.last_mean == pytest.approx(np.mean([r["final"]["score"] for r in results]))
    assert cell.best_mean == pytest.approx(np.mean([r["best"]["score"] for r in results]))
    assert cell.dataset_normalized_score == pytest.approx(results[0]["dataset"]["normalized_score_mean"])
    assert (sweep / "leaderboard" / "curves.png").stat().st_size > 0
