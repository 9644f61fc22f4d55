"""decision_seq.leaderboard.runs: reading results.json files (valid, invalid, unfinished) and W&B run dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decision_seq.leaderboard.grouping import build_leaderboard
from decision_seq.leaderboard.runs import LeaderboardError, find_result_files, load_runs, run_from_results
from tests.leaderboard.helpers import make_results, write_run


def test_run_from_results_reads_scores_protocol_and_curve():
    run = run_from_results(make_results(seed=3, last=40.0, best=55.0, curve=[10.0, 40.0]), "x/results.json")
    assert (run.status, run.model, run.backbone, run.seed) == ("completed", "dt", "transformer", 3)
    assert (run.last, run.best, run.normalized, run.dataset_score) == (40.0, 55.0, True, 40.0)
    assert run.curve == [(500, 10.0), (1000, 40.0)]
    assert run.protocol["targets"] == (3600.0, 1800.0) and run.protocol["steps"] == 1000.0  # canonical values
    raw = run_from_results(make_results(normalized=False, last=-300.0), "raw")
    assert not raw.normalized
    with pytest.raises(ValueError, match="not a decision-seq results.json"):
        run_from_results({"status": "completed"}, "bad")
    broken = make_results()
    broken["final"]["score"] = float("nan")
    with pytest.raises(ValueError, match="completed run without a valid final/best score"):
        run_from_results(broken, "nan")


def test_invalid_files_are_skipped_with_a_warning(tmp_path):
    write_run(tmp_path, "ok", last=40.0)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "results.json").write_text("{not json")
    files = find_result_files([tmp_path, tmp_path / "ok" / "results.json"])  # the same file twice: read once
    assert len(files) == 2
    runs, warnings = load_runs(files)
    assert [r.last for r in runs] == [40.0]
    assert len(warnings) == 1 and str(tmp_path / "garbage" / "results.json") in warnings[0]
    with pytest.raises(LeaderboardError, match="path does not exist"):
        find_result_files([tmp_path / "nowhere"])


def test_wandb_dir(tmp_path: Path):
    # an online-style run dir with files/wandb-summary.json and config.yaml
    wb = tmp_path / "wandb" / "run-20250101_120000-abc123" / "files"
    wb.mkdir(parents=True)
    (wb / "wandb-summary.json").write_text(
        json.dumps(
            {
                "final/score": 61.0,
                "best/score": 70.0,
                "dataset/mean_normalized_score": 40.0,
                "protocol/eval_env": "Hopper-v4",
            }
        )
    )
    (wb / "config.yaml").write_text(
        "_wandb:\n  value: {cli_version: 0.31.0}\n"
        "model:\n  value: {name: dt, context_len: 20, net: {backbone: transformer}}\n"
        "dataset:\n  value: {id: d4rl/hopper/medium-replay-v2, name: hopper-medium-replay, rtg_scale: 1000.0}\n"
        "eval:\n  value: {targets: [3600, 1800], episodes: 10, every: 500, mode: window}\n"
        "trainer:\n  value: {steps: 1000}\nseed:\n  value: 4\n"
    )
    # our run dir: the offline wandb dir inside it adds nothing; its results.json is read instead
    run = write_run(tmp_path / "outputs", "r", seed=1, last=51.0)
    (run / "wandb" / "offline-run-20250101_120001-def456").mkdir(parents=True)
    lb = build_leaderboard(wandb_dirs=[tmp_path / "wandb", run])
    assert len(lb.cells) == 1  # the W&B run and ours share the protocol: one row
    cell = lb.cells[0]
    assert [r.seed for r in cell.runs] == [1, 4] and cell.last.mean == pytest.approx(56.0)
    assert cell.best.mean == pytest.approx((51.0 + 70.0) / 2)
