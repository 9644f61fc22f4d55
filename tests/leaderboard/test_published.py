"""decision_seq.leaderboard.published: which rows get which published number, and that the numbers agree
with their documented sources in docs/published-scores.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from decision_seq.leaderboard.published import DT_SOURCES, PUBLISHED_DMAMBA, PUBLISHED_DT, published_for
from tests.helpers import compose_train

DOC = Path(__file__).resolve().parents[2] / "docs" / "published-scores.md"


def doc_table(header_start: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {first cell: other cells}) of the Markdown table in DOC whose header starts so."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start} |"))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first, *rest = cells(line)
        rows[first] = rest
    return cells(lines[start])[1:], rows


def test_published_lookup():
    assert published_for("d4rl/hopper/medium-replay-v2", "dt").value == 82.7
    assert published_for("d4rl/hopper/medium-replay-v2", "dmamba") is None
    assert published_for("d4rl/hopper/medium-v2", "dmamba").value == 83.5
    rebuild = published_for("decision-seq/halfcheetah/medium-expert-v0", "dt")
    assert rebuild.value == 86.8 and not rebuild.exact and "†" in rebuild.label()
    assert published_for("mujoco/hopper/medium-v0", "dt") is None  # Minari's v5 sets: no D4RL number
    assert published_for("decision-seq/pendulum/mixed-v0", "dt") is None
    assert published_for("d4rl/hopper/medium-v1", "dt") is None  # D4RL v1 data: the numbers are for v2


def test_published_label_and_sources():
    exact = published_for("d4rl/walker2d/medium-v2", "dt")
    assert exact.exact and exact.label() == "74.0 (DT paper, last)"
    assert exact.all_sources == tuple(zip(DT_SOURCES, PUBLISHED_DT["walker2d-medium"], strict=True))
    assert published_for("decision-seq/hopper/medium-v0", "dmamba").label() == "83.5† (DMamba paper, best)"


def test_numbers_match_the_documented_sources():
    header, rows = doc_table("task | DT paper, last")
    assert tuple(header) == DT_SOURCES
    assert set(rows) == set(PUBLISHED_DT)
    for task, values in PUBLISHED_DT.items():
        assert [float(v) for v in rows[task]] == pytest.approx(values), task
    header, rows = doc_table("task | DMamba paper, best")
    for task, entries in PUBLISHED_DMAMBA.items():
        assert tuple(header) == tuple(source for source, _ in entries)
        assert [float(v) for v in rows[task]] == pytest.approx([value for _, value in entries]), task


def test_reference_returns_and_targets_match_the_doc():
    from decision_seq.datasets.d4rl import D4RL_ENVS

    _, returns = doc_table("env | random")
    _, targets = doc_table("env | targets")
    assert set(returns) == set(targets) == set(D4RL_ENVS)
    for name, env in D4RL_ENVS.items():
        assert [float(v) for v in returns[name]] == [env.ref_min_score, env.ref_max_score], name
        # the DT paper's targets live in the dataset configs (one per level, all the same per env)
        for level in ("medium", "medium-replay", "medium-expert"):
            cfg = compose_train([f"dataset=d4rl-{name}-{level}"]).dataset
            assert tuple(float(t) for t in targets[name][0].split(",")) == tuple(cfg.targets), (name, level)
