"""decision_seq.leaderboard.render and .plots: the terminal table, leaderboard.md, leaderboard.csv,
runs.csv, scores.png and curves.png, with exact values on hand-made sweeps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from decision_seq.leaderboard import stats
from decision_seq.leaderboard.grouping import build_leaderboard
from decision_seq.leaderboard.render import fmt_estimate, fmt_summary, print_leaderboard, write_outputs
from tests.leaderboard.helpers import (
    HOPPER_BEST,
    HOPPER_LAST,
    WALKER_LAST,
    ci_by_hand,
    make_sweep,
    read_cells,
    trimmed_mean_by_hand,
    write_run,
)


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path / "sweep")


def test_table_values_exact(sweep, capsys):
    out = sweep / "lb"
    lb = build_leaderboard([sweep], reps=400, seed=3)
    write_outputs(lb, out, plots=False)
    print_leaderboard(lb)
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
        ci_by_hand([HOPPER_LAST, WALKER_LAST], "iqm", 400, 3)
    )
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


def test_single_seed_and_missing_numbers_print_as_dash():
    one = stats.SeedSummary(n=1, mean=42.0, std=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    assert fmt_summary(one) == "42.0 ± -"
    two = stats.SeedSummary(n=2, mean=42.0, std=1.5, ci_low=41.0, ci_high=43.0)
    assert fmt_summary(two) == "42.0 ± 1.5 [41.0, 43.0]"
    assert fmt_estimate(stats.Estimate(5.0, float("nan"), float("nan"))) == "5.0"
    assert fmt_estimate(stats.Estimate(5.0, 4.0, 6.5)) == "5.0 [4.0, 6.5]"


def test_skipped_runs_listed(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "done", seed=0, last=40.0, dataset_id="local/pendulum/raw-v0", normalized=False)
    write_run(root, "stopped", seed=1, status="preempted")
    lb = build_leaderboard([root])
    out = write_outputs(lb, tmp_path / "lb", plots=False)
    assert [p.name for p in out] == ["leaderboard.md", "leaderboard.csv", "runs.csv"]
    print_leaderboard(lb)
    text = capsys.readouterr().out
    assert "skipped runs (not completed): 1" in text and "preempted" in text and "SIGTERM" in text
    assert "local/pendulum/raw-v0 (raw return)" in text
    assert "note: not in the aggregates (raw returns" in text  # the aggregates' notes reach the terminal
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "## Skipped runs" in md and str(root / "stopped" / "results.json") in md
    assert "## Footnotes" not in md  # no published number for this dataset
    cells = read_cells(tmp_path / "lb")
    assert cells.score_unit.tolist() == ["return"] and math.isnan(cells.published[0])


def test_plots_written(sweep):
    from matplotlib.image import imread

    out = sweep / "leaderboard"
    written = write_outputs(build_leaderboard([sweep], reps=100), out)
    assert [p.name for p in written][-2:] == ["scores.png", "curves.png"]
    for name in ("scores.png", "curves.png"):
        path = out / name
        assert path.stat().st_size > 0
        img = imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and len(np.unique(img)) > 1  # not a blank image
    assert not list(out.glob(".*.tmp*"))  # no temp files left by the atomic writes
