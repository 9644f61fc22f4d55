"""`decision-seq leaderboard`: options reach the statistics, warnings and errors reach stderr with the
documented exit codes, outputs land in the default folder, inputs stay untouched, and one real
2-seed sweep through the `decision-seq` entry point."""

from __future__ import annotations

import pandas as pd
import pytest

from decision_seq.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from decision_seq.cli.leaderboard import main
from tests.helpers import TINY, cli, read_results
from tests.leaderboard.helpers import HOPPER_LAST, ci_by_hand, make_sweep, read_cells, write_run


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path / "sweep")


def test_options_reach_the_statistics(sweep, capsys):
    out = sweep / "lb"
    assert main([str(sweep), "--out", str(out), "--reps", "400", "--seed", "3", "--no-plots"]) == EXIT_OK
    cells = read_cells(out).set_index(["dataset", "model"])
    hop = cells.loc[("d4rl/hopper/medium-replay-v2", "dt")]
    assert (hop.last_ci_low, hop.last_ci_high) == pytest.approx(ci_by_hand([HOPPER_LAST], reps=400, seed=3))
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.csv", "leaderboard.md", "runs.csv"]  # --no-plots
    cap = capsys.readouterr()
    assert "82.7 (DT paper, last)" in cap.out and f"to {out}" in cap.out and cap.err == ""


def test_same_seed_same_output_and_inputs_untouched(sweep):
    before = {p: p.read_bytes() for p in sweep.rglob("results.json")}
    assert main([str(sweep), "--out", str(sweep / "a"), "--no-plots"]) == EXIT_OK
    assert main([str(sweep), "--out", str(sweep / "b"), "--no-plots"]) == EXIT_OK
    assert (sweep / "a" / "leaderboard.csv").read_text() == (sweep / "b" / "leaderboard.csv").read_text()
    assert {p: p.read_bytes() for p in sweep.rglob("results.json")} == before
    assert not list(sweep.rglob(".*.tmp*"))  # no temp files left by the atomic writes


def test_protocol_mismatch_warns_or_fails_with_strict(tmp_path, capsys):
    root = tmp_path / "mixed"
    write_run(root, "a", seed=0, last=40.0, steps=1000)
    write_run(root, "b", seed=1, last=50.0, steps=1000)
    write_run(root, "c", seed=0, last=90.0, steps=3000)
    assert main([str(root), "--no-plots"]) == EXIT_OK
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "'steps'" in err and "steps=3000" in err and str(root / "c") in err
    cells = read_cells(root / "leaderboard")
    assert sorted(cells[cells.row == "cell"].variant) == ["steps=1000", "steps=3000"]

    assert main([str(root), "--strict", "--no-plots"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("decision-seq leaderboard: error: protocol mismatch")
    assert "steps is 1000" in err and "but 3000" in err


def test_skipped_runs_and_invalid_json(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "done", seed=0, last=40.0)
    write_run(root, "stopped", seed=1, status="preempted")
    write_run(root, "broken", seed=2, status="failed")
    (root / "garbage").mkdir()
    (root / "garbage" / "results.json").write_text("{not json")
    assert main([str(root), "--no-plots"]) == EXIT_OK
    cap = capsys.readouterr()
    assert str(root / "garbage" / "results.json") in cap.err and "warning" in cap.err
    assert "skipped runs (not completed): 2" in cap.out
    assert "preempted" in cap.out and str(root / "stopped" / "results.json") in cap.out
    assert "failed" in cap.out and "SIGTERM" in cap.out
    out = root / "leaderboard"  # the default: <first PATH>/leaderboard
    runs = pd.read_csv(out / "runs.csv").set_index("status")
    assert sorted(runs.index) == ["completed", "failed", "preempted"]
    cells = read_cells(out)
    assert cells[cells.row == "cell"].n_seeds.tolist() == [1]
    md = (out / "leaderboard.md").read_text()
    assert "## Skipped runs" in md and "preempted" in md
    assert {p.name for p in out.iterdir()} == {"leaderboard.md", "leaderboard.csv", "runs.csv"}


def test_bad_inputs_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a PATH-less run would write ./leaderboard
    missing = tmp_path / "nowhere"
    assert main([str(missing)]) == EXIT_BAD_INPUT
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == EXIT_BAD_INPUT
    assert "no readable results.json" in capsys.readouterr().err
    write_run(tmp_path / "only", "x", status="running")
    assert main([str(tmp_path / "only")]) == EXIT_BAD_INPUT
    assert "no completed runs" in capsys.readouterr().err
    assert main([]) == EXIT_BAD_INPUT
    assert "give at least one PATH" in capsys.readouterr().err
    write_run(tmp_path / "valid", "x", last=40.0)  # readable runs: only --reps is wrong
    assert main([str(tmp_path / "valid"), "--reps", "0"]) == EXIT_BAD_INPUT
    assert "--reps must be >= 1, got 0" in capsys.readouterr().err
    assert main(["--bogus"]) == EXIT_BAD_INPUT
    assert not (tmp_path / "leaderboard").exists() and not (tmp_path / "valid" / "leaderboard").exists()  # no output
    assert main(["--help"]) == EXIT_OK
    help_text = capsys.readouterr().out
    for word in ("results.json", "--strict", "IQM", "leaderboard.csv", "examples", "docs/published.md"):
        assert word in help_text


def test_default_out_for_a_file_is_the_working_dir(tmp_path, monkeypatch):
    run = write_run(tmp_path / "runs", "r", last=40.0)
    monkeypatch.chdir(tmp_path)
    assert main([str(run / "results.json"), "--no-plots"]) == EXIT_OK
    assert (tmp_path / "leaderboard" / "leaderboard.csv").is_file()


@pytest.mark.slow  # ~12 s; tests/experiment/test_sweeps.py runs the leaderboard over a real sweep too
def test_real_sweep_two_seeds(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "sweep"
    cli("train", "-m", "seed=0,1", "trainer.steps=6", "eval.every=3", "logger=none", f"hydra.sweep.dir={sweep}", *TINY)
    proc = cli("leaderboard", str(sweep), "--reps", "200")
    assert "skipped" not in proc.stdout and pendulum_dataset_id in proc.stdout
    df = read_cells(sweep / "leaderboard")
    cell = df[df.row == "cell"].iloc[0]
    assert cell.model == "dt" and cell.n_seeds == 2 and cell.seeds == "0;1"
    results = [read_results(p.parent) for p in sorted(sweep.rglob("results.json"))]
    assert cell.last_mean == pytest.approx(sum(r["final"]["score"] for r in results) / 2)
    assert cell.best_mean == pytest.approx(sum(r["best"]["score"] for r in results) / 2)
    assert cell.dataset_normalized_score == pytest.approx(results[0]["dataset"]["normalized_score_mean"])
    assert (sweep / "leaderboard" / "curves.png").stat().st_size > 0
