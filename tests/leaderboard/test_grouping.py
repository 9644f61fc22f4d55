"""decision_seq.leaderboard.grouping: rows by (dataset, model), protocol splits (warnings, --strict),
aggregates kept within one protocol family, and the statistics each row and aggregate carries."""

from __future__ import annotations

import math

import pytest

from decision_seq.leaderboard.grouping import build_leaderboard
from decision_seq.leaderboard.runs import LeaderboardError
from tests.leaderboard.helpers import HOPPER_LAST, WALKER_LAST, ci_by_hand, make_sweep, trimmed_mean_by_hand, write_run


def test_rows_and_aggregates_by_hand(tmp_path):
    lb = build_leaderboard([make_sweep(tmp_path / "sweep")], reps=400, seed=3)
    cells = {(c.dataset_id, c.model): c for c in lb.cells}
    assert sorted(cells) == [
        ("d4rl/hopper/medium-replay-v2", "dt"),
        ("d4rl/walker2d/medium-v2", "dt"),
        ("decision-seq/hopper/medium-v0", "dmamba"),
    ]
    hop = cells[("d4rl/hopper/medium-replay-v2", "dt")]
    assert hop.variant == "" and hop.last.n == 4 and hop.last.mean == pytest.approx(30.0)
    assert (hop.last.ci_low, hop.last.ci_high) == pytest.approx(ci_by_hand([HOPPER_LAST], reps=400, seed=3))
    assert hop.published.value == 82.7 and hop.dataset_score == pytest.approx(40.0)
    dm = cells[("decision-seq/hopper/medium-v0", "dmamba")]
    assert dm.last.std == pytest.approx(math.sqrt(50.0)) and not dm.published.exact
    assert lb.warnings == [] and lb.notes == [] and lb.skipped == []

    assert [a.label for a in lb.aggregates] == ["dmamba", "dt"]
    dt = lb.aggregates[1]
    assert [c.dataset_id for c in dt.cells] == ["d4rl/hopper/medium-replay-v2", "d4rl/walker2d/medium-v2"]
    assert dt.n_runs == 8 and dt.last["mean"].value == pytest.approx((30.0 + 75.0) / 2)
    assert dt.last["iqm"].value == pytest.approx(trimmed_mean_by_hand(HOPPER_LAST + WALKER_LAST))


def test_mixed_protocols_split_with_warning(tmp_path):
    root = tmp_path / "mixed"
    write_run(root, "a", seed=0, last=40.0, steps=1000)
    write_run(root, "b", seed=1, last=50.0, steps=1000)
    write_run(root, "c", seed=0, last=90.0, steps=3000)
    lb = build_leaderboard([root])
    assert len(lb.warnings) == 1
    warning = lb.warnings[0]
    assert "'steps'" in warning and "steps=1000" in warning and "steps=3000" in warning and str(root / "c") in warning
    by_variant = {c.variant: c for c in lb.cells}
    assert sorted(by_variant) == ["steps=1000", "steps=3000"]
    assert by_variant["steps=1000"].last.mean == pytest.approx(45.0)
    assert by_variant["steps=3000"].last.n == 1
    assert by_variant["steps=1000"].label == "dt [steps=1000]"

    with pytest.raises(LeaderboardError) as err:
        build_leaderboard([root], strict=True)
    assert "protocol mismatch" in str(err.value) and "steps is 1000" in str(err.value) and "but 3000" in str(err.value)


def test_runs_on_different_eval_envs_never_pool(tmp_path):
    root = tmp_path / "envs"
    write_run(root, "a", seed=0, last=40.0)
    write_run(root, "b", seed=1, last=60.0, eval_env="Hopper-v5")
    lb = build_leaderboard([root])
    assert sorted(c.variant for c in lb.cells) == ["eval_env=Hopper-v4", "eval_env=Hopper-v5"]
    assert len(lb.warnings) == 1 and "'eval_env'" in lb.warnings[0]
    with pytest.raises(LeaderboardError, match="eval_env is Hopper-v4"):
        build_leaderboard([root], strict=True)


def test_runs_on_two_builds_of_one_dataset_never_pool(tmp_path):
    # results.json files from before protocol.dataset_build: the build is read off their dataset summary
    root = tmp_path / "builds"
    first = {"episodes": 259, "steps": 200_000, "return_mean": 2237.0}
    write_run(root, "a", seed=0, last=40.0, data_summary=first)
    write_run(root, "b", seed=1, last=50.0, data_summary=first)
    write_run(root, "c", seed=2, last=90.0, data_summary=first | {"episodes": 231, "return_mean": 2601.25})
    lb = build_leaderboard([root])
    cells = {c.variant: c for c in lb.cells}
    assert sorted(cells) == [
        "dataset_build=231 episodes, 200000 steps, mean 2601.25",
        "dataset_build=259 episodes, 200000 steps, mean 2237.00",
    ]
    assert cells["dataset_build=259 episodes, 200000 steps, mean 2237.00"].last.mean == pytest.approx(45.0)
    assert len(lb.warnings) == 1 and "'dataset_build'" in lb.warnings[0]
    # a run that names its build pools with the files that leave it to the summary
    build = "259 episodes, 200000 steps, mean 2237.00"
    write_run(root, "d", seed=3, last=60.0, data_summary=first, dataset_build=build)
    cells = {c.variant: c for c in build_leaderboard([root]).cells}
    assert cells[f"dataset_build={build}"].last.n == 3


def test_aggregates_keep_protocol_families_apart(tmp_path):
    root = tmp_path / "fam"
    write_run(root, "h", seed=0, last=40.0, steps=1000)
    write_run(root, "w", dataset_id="d4rl/walker2d/medium-v2", seed=0, last=60.0, steps=3000)
    write_run(root, "raw", dataset_id="local/pendulum/raw-v0", seed=0, last=-300.0, normalized=False)
    lb = build_leaderboard([root])
    notes = " ".join(lb.notes)
    assert "aggregated separately, not mixed" in notes
    assert "raw returns" in notes and "local/pendulum/raw-v0" in notes
    assert sorted(a.variant for a in lb.aggregates) == ["steps=1000", "steps=3000"]
    assert {len(a.cells) for a in lb.aggregates} == {1}


def test_version_difference_splits_rows(tmp_path):
    root = tmp_path / "ver"
    write_run(root, "a", dataset_id="d4rl/hopper/medium-v1", last=10.0)
    write_run(root, "b", dataset_id="d4rl/hopper/medium-v2", last=20.0)
    lb = build_leaderboard([root])
    assert any("'dataset_id'" in w for w in lb.warnings)
    assert sorted(c.dataset_id for c in lb.cells) == ["d4rl/hopper/medium-v1", "d4rl/hopper/medium-v2"]
    # two rows of one dataset under different protocols: no aggregate for that family, and a note why
    assert lb.aggregates == [] and any("no aggregate" in n and "d4rl/hopper/medium" in n for n in lb.notes)


def test_duplicate_seed_warns_and_counts_both(tmp_path):
    root = tmp_path / "dup"
    write_run(root, "a", seed=0, last=40.0)
    write_run(root, "b", seed=0, last=60.0)
    lb = build_leaderboard([root])
    assert len(lb.warnings) == 1 and "seed 0 appears in several runs" in lb.warnings[0]
    assert lb.cells[0].last.n == 2 and lb.cells[0].last.mean == pytest.approx(50.0)


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(LeaderboardError, match="--reps must be >= 1"):
        build_leaderboard([make_sweep(tmp_path / "sweep")], reps=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LeaderboardError, match="no readable results.json"):
        build_leaderboard([empty])
    write_run(tmp_path / "only", "x", status="running")
    with pytest.raises(LeaderboardError, match="no completed runs"):
        build_leaderboard([tmp_path / "only"])
