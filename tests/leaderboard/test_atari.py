"""Atari on the leaderboard: runs that picked discrete actions differently never pool (older results.json
without the field still load), Atari cells are aggregated apart from D4RL ones, the DT paper's Atari
scores are shown beside ours, and published_atari.csv, docs/atari.md and the gamer table agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decision_seq.datasets.dqn_replay import GAMES
from decision_seq.leaderboard.grouping import build_leaderboard, suite_of
from decision_seq.leaderboard.published import ATARI_ENTRIES, ATARI_NOTE, atari_task, published_for
from decision_seq.leaderboard.render import markdown
from decision_seq.leaderboard.runs import run_from_results
from tests.leaderboard.helpers import make_results, write_run

DOC = Path(__file__).resolve().parents[2] / "docs" / "atari.md"
BREAKOUT = "dqn-replay/breakout/1pct-v0"
PONG = "dqn-replay/pong/1pct-v0"


def _atari(root: Path, name: str, dataset_id: str, **kwargs) -> Path:
    game = dataset_id.split("/")[1]
    defaults = {"targets": [90], "rtg_scale": 1.0, "eval_env": f"ALE/{game}-v5", "discrete_action": "sample"}
    return write_run(root, name, dataset_id=dataset_id, **(defaults | kwargs))


def test_discrete_action_splits_rows_and_old_files_still_load(tmp_path):
    root = tmp_path / "runs"
    _atari(root, "s0", BREAKOUT, seed=0, last=100.0)
    _atari(root, "s1", BREAKOUT, seed=1, last=200.0)
    _atari(root, "a0", BREAKOUT, seed=0, last=40.0, discrete_action="argmax")
    lb = build_leaderboard([root], reps=50)
    rows = {c.label: c for c in lb.cells}
    assert set(rows) == {"dt [discrete_action=sample]", "dt [discrete_action=argmax]"}
    assert rows["dt [discrete_action=sample]"].last.mean == 150.0
    assert rows["dt [discrete_action=argmax]"].last.mean == 40.0
    assert any("'discrete_action'" in w for w in lb.warnings)

    old = make_results(seed=0)  # a results.json written before the field existed
    assert "discrete_action" not in old["protocol"]
    assert run_from_results(json.loads(json.dumps(old)), "old").protocol["discrete_action"] is None


def test_atari_cells_are_aggregated_apart_from_d4rl(tmp_path):
    root = tmp_path / "runs"
    # identical protocol fields (steps, episodes, eval_every, mode, context_len): only the suite differs
    same = {"targets": [90], "rtg_scale": 1.0, "eval_env": "X-v0", "discrete_action": None}
    for seed, (h, w, b, p) in enumerate([(10.0, 50.0, 200.0, 100.0), (30.0, 70.0, 300.0, 110.0)]):
        write_run(root, f"h{seed}", dataset_id="d4rl/hopper/medium-v2", seed=seed, last=h, **same)
        write_run(root, f"w{seed}", dataset_id="d4rl/walker2d/medium-v2", seed=seed, last=w, **same)
        write_run(root, f"b{seed}", dataset_id=BREAKOUT, seed=seed, last=b, **same)
        write_run(root, f"p{seed}", dataset_id=PONG, seed=seed, last=p, **same)
    lb = build_leaderboard([root], reps=50)
    aggs = {a.label: a for a in lb.aggregates}
    assert set(aggs) == {"dt", "dt [atari]"}
    assert [c.dataset_id for c in aggs["dt [atari]"].cells] == [BREAKOUT, PONG]
    assert aggs["dt"].last["mean"].value == pytest.approx((20.0 + 60.0) / 2)
    assert aggs["dt [atari]"].last["mean"].value == pytest.approx((250.0 + 105.0) / 2)
    assert [suite_of(d) for d in (BREAKOUT, "atari/pong/expert-v0", "decision-seq/atari-breakout/demo-v0")] == [
        "atari"
    ] * 3
    assert suite_of("decision-seq/x/y-v0", "ALE/Pong-v5") == "atari"  # any data evaluated on the ALE
    assert suite_of("d4rl/hopper/medium-v2", "Hopper-v4") == suite_of("decision-seq/pendulum/mixed-v0") == ""


def test_published_atari_scores_beside_ours(tmp_path):
    assert published_for(BREAKOUT, "dt").value == 267.5 and published_for(BREAKOUT, "dt").exact
    assert published_for(PONG, "bc").value == 85.2
    assert published_for("dqn-replay/seaquest/1pct-v0", "dt").label() == "2.5 (DT paper, last)"
    assert published_for("dqn-replay/breakout/100000steps-v0", "dt") is None  # not the paper's data size
    assert published_for(BREAKOUT, "dmamba") is None
    assert (atari_task(BREAKOUT), atari_task("d4rl/hopper/medium-v2")) == ("breakout", None)

    root = tmp_path / "runs"
    _atari(root, "b0", BREAKOUT, seed=123, last=250.0)
    text = markdown(build_leaderboard([root], reps=50))
    row = next(line for line in text.splitlines() if line.startswith(f"| {BREAKOUT} "))
    assert "267.5 (DT paper, last)" in row and "250.0" in row
    assert ATARI_NOTE in text


def _doc_table(header: str) -> dict[str, list[str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(header)
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_csv_doc_and_gamer_table_agree():
    published = _doc_table("| game | DT | DT std | BC | BC std |")
    assert {(e.task, e.model): e.value for e in ATARI_ENTRIES} == {
        (game, model): float(cells[0 if model == "dt" else 2])
        for game, cells in published.items()
        for model in ("dt", "bc")
    }
    assert all((e.seeds, e.episodes, e.protocol) == (3, 10, "last") for e in ATARI_ENTRIES)
    gamer = _doc_table("| game | random | gamer |")
    assert {g.lower(): [float(v) for v in cells] for g, cells in gamer.items()} == {
        key: [game.random_score, game.gamer_score] for key, game in GAMES.items()
    }
    # the DT authors: Breakout 267.5 is a raw return "somewhere in the 70s" (kzl/decision-transformer issue 21)
    b = GAMES["breakout"]
    assert 70 <= b.random_score + 267.5 / 100 * (b.gamer_score - b.random_score) < 80
