"""decision_seq.leaderboard.published: which rows get which published number; that published.csv and
docs/published.md agree on every number; and that every leaderboard cell's published number is a row of
published.csv."""

from __future__ import annotations

import csv
from collections import defaultdict
from importlib import resources
from pathlib import Path

import pytest

from decision_seq.datasets import naming
from decision_seq.leaderboard import published as pub
from decision_seq.leaderboard.grouping import build_leaderboard
from decision_seq.leaderboard.published import (
    COLUMNS,
    DT_SOURCES,
    ENTRIES,
    PUBLISHED_DMAMBA,
    PUBLISHED_DT,
    Entry,
    parse_csv,
    published_for,
)
from tests.helpers import compose_train
from tests.leaderboard.helpers import read_cells, write_run

DOC = Path(__file__).resolve().parents[2] / "docs" / "published.md"


def doc_lines() -> list[str]:
    return DOC.read_text(encoding="utf-8").splitlines()


def cells_of(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def doc_table_rows(header: list[str]) -> list[list[str]]:
    """The body rows of the Markdown table in DOC whose header cells are exactly `header`."""
    lines = doc_lines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and cells_of(line) == header]
    assert len(starts) == 1, f"expected one table headed {header} in {DOC.name}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells_of(line))
    return rows


def doc_table(header_start: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {first cell: other cells}) of the Markdown table in DOC whose header starts so."""
    lines = doc_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start} |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first, *rest = cells_of(line)
        rows[first] = rest
    return cells_of(lines[start])[1:], rows


def env_of(task: str) -> str:
    return task.split("-", 1)[0]


# ---------------------------------------------------------------------------------------------------
# Lookup


def test_published_lookup():
    assert published_for("d4rl/hopper/medium-replay-v2", "dt").value == 82.7
    assert published_for("d4rl/hopper/medium-replay-v2", "dmamba") is None
    assert published_for("d4rl/hopper/medium-v2", "dmamba").value == 83.5
    rebuild = published_for("decision-seq/halfcheetah/medium-expert-v0", "dt")
    assert rebuild.value == 86.8 and not rebuild.exact and "†" in rebuild.label()
    assert published_for("mujoco/hopper/medium-v0", "dt") is None  # Minari's v5 sets: no D4RL number
    assert published_for("decision-seq/pendulum/mixed-v0", "dt") is None
    assert published_for("d4rl/hopper/medium-v1", "dt") is None  # D4RL v1 data: the numbers are for v2
    assert published_for("d4rl/hopper/random-v2", "dt") is None  # no row for the task
    assert published_for("d4rl/hopper/medium-v2", "no-such-model") is None


def test_published_label_and_sources():
    exact = published_for("d4rl/walker2d/medium-v2", "dt")
    assert exact.exact and exact.label() == "74.0 (DT paper, last)"
    assert exact.all_sources == tuple(zip(DT_SOURCES, PUBLISHED_DT["walker2d-medium"], strict=True))
    assert published_for("decision-seq/hopper/medium-v0", "dmamba").label() == "83.5† (DMamba paper, best)"


def test_public_tables_are_built_from_the_csv():
    """Today's numbers and labels, now read from published.csv, are unchanged."""
    assert DT_SOURCES == ("DT paper, last", "CORL, last", "CORL, best", "d3rlpy, final", "d3rlpy, best")
    assert PUBLISHED_DT["hopper-medium"] == (67.6, 65.1, 69.4, 60.4, 77.4)
    assert PUBLISHED_DT["halfcheetah-medium-expert"] == (86.8, 91.6, 93.4, 56.5, 88.2)
    assert len(PUBLISHED_DT) == 9
    assert PUBLISHED_DMAMBA == {"hopper-medium": (("DMamba paper, best", 83.5),)}


def test_any_model_with_rows_gets_its_first_source(monkeypatch):
    """A new model needs only CSV rows; the first row of (task, model) is the one shown."""
    extra = (
        Entry("hopper-medium", "newmodel", "Paper A, best", "best", 90.0, 5, 10, (3600.0,), "ref A", "Table 1"),
        Entry("hopper-medium", "newmodel", "Paper B, last", "last", 70.0, None, None, (), "ref B", ""),
    )
    monkeypatch.setattr(pub, "PUBLISHED", pub.group_entries(ENTRIES + extra))
    got = published_for("d4rl/hopper/medium-v2", "newmodel")
    assert (got.value, got.source, got.exact) == (90.0, "Paper A, best", True)
    assert got.all_sources == (("Paper A, best", 90.0), ("Paper B, last", 70.0))
    assert published_for("d4rl/walker2d/medium-v2", "newmodel") is None


# ---------------------------------------------------------------------------------------------------
# The CSV


def test_csv_is_package_data_with_the_documented_columns():
    text = resources.files("decision_seq.leaderboard").joinpath("published.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines()))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) - 1 == len(ENTRIES) == 46
    for e in ENTRIES:
        assert e.task.split("-", 1)[1] in naming.LEVELS and env_of(e.task) in naming.D4RL_ENV_NAMES, e
        assert e.protocol in ("last", "best")
        # the label names its protocol ("final" is d3rlpy's word for last)
        word = e.source.rsplit(", ", 1)[-1]
        assert {"last": "last", "final": "last", "best": "best"}[word] == e.protocol, e


def test_parse_csv_rejects_malformed_rows():
    header = ",".join(COLUMNS)
    good = 'hopper-medium,dt,"X, last",last,1.0,3,100,3600;1800,ref,Table 1'
    assert parse_csv(f"{header}\n{good}\n")[0].targets == (3600.0, 1800.0)
    with pytest.raises(ValueError, match="columns"):
        parse_csv("task,model\nhopper-medium,dt\n")
    with pytest.raises(ValueError, match="protocol"):
        parse_csv(f"{header}\n{good.replace(',last,', ',mean,')}\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_csv(f"{header}\n{good.replace(',1.0,', ',n/a,')}\n")
    with pytest.raises(ValueError, match="second row"):
        parse_csv(f"{header}\n{good}\n{good}\n")


# ---------------------------------------------------------------------------------------------------
# The CSV and the doc agree


def test_every_score_matches_the_doc():
    models = list(dict.fromkeys(e.model for e in ENTRIES))
    for model in models:
        sources = pub.sources_of(model)
        rows = {r[0]: r[1:] for r in doc_table_rows(["task", *sources])}
        in_csv = {e.task for e in ENTRIES if e.model == model}
        assert set(rows) == in_csv, model
        for e in ENTRIES:
            if e.model == model:
                assert float(rows[e.task][sources.index(e.source)]) == pytest.approx(e.value), (model, e.task, e.source)


def test_every_protocol_cell_matches_the_doc():
    """seeds, episodes, targets, reference and where: one per (model, source), as documented."""
    by_source: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in ENTRIES:
        by_source[(e.model, e.source)].append(e)
    header = ["model", "source", "protocol", "seeds", "episodes", "targets", "reference", "where"]
    doc = {(r[0], r[1]): r[2:] for r in doc_table_rows(header)}
    assert set(doc) == set(by_source)

    def cell(value: object) -> str:
        return "-" if value in (None, "") else str(value)

    for key, rows in by_source.items():
        for field in ("protocol", "seeds", "episodes", "reference", "where"):
            values = {getattr(e, field) for e in rows}
            assert len(values) == 1, (key, field, values)  # one protocol per source
        first = rows[0]
        protocol, seeds, episodes, targets, reference, where = doc[key]
        assert (protocol, seeds, episodes, reference, where) == (
            first.protocol,
            cell(first.seeds),
            cell(first.episodes),
            first.reference,
            cell(first.where),
        ), key
        per_env = {env_of(e.task): e.targets for e in rows}
        assert all(per_env[env_of(e.task)] == e.targets for e in rows), key  # one target list per env
        documented = {}
        if targets != "-":
            for part in targets.split(", "):
                env, values = part.split(" ")
                documented[env] = tuple(float(t) for t in values.split(";"))
        assert documented == {env: t for env, t in per_env.items() if t}, key


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


# ---------------------------------------------------------------------------------------------------
# Every leaderboard cell with a published number cites a CSV row


def test_leaderboard_cells_cite_csv_rows(tmp_path):
    pairs = sorted({(e.task, e.model) for e in ENTRIES})
    for i, (task, model) in enumerate(pairs):
        env, level = task.split("-", 1)
        write_run(tmp_path, f"run{i}", dataset_id=naming.d4rl_id(env, level), model=model, last=50.0)
    # datasets with no entry: a task without rows, Minari's remote set, and a model without rows
    write_run(tmp_path, "none1", dataset_id="d4rl/hopper/random-v2", model="dt", last=5.0)
    write_run(tmp_path, "none2", dataset_id="mujoco/hopper/medium-v0", model="dt", last=5.0)
    write_run(tmp_path, "none3", dataset_id="d4rl/walker2d/medium-v2", model="dmamba", last=5.0)

    lb = build_leaderboard([tmp_path], reps=20)
    rows_of = pub.group_entries(ENTRIES)
    seen = set()
    for c in lb.cells:
        task = naming.d4rl_task(c.dataset_id)
        rows = rows_of.get((c.model, task[0])) if task else None
        if not rows:
            assert c.published is None, (c.dataset_id, c.model)
            continue
        seen.add((task[0], c.model))
        assert c.published.exact
        assert (c.published.source, c.published.value) == (rows[0].source, rows[0].value)
        assert c.published.all_sources == tuple((e.source, e.value) for e in rows)
    assert seen == set(pairs)
    assert sum(c.published is None for c in lb.cells) == 3

    # the written leaderboard.csv cites the same rows
    from decision_seq.leaderboard.render import write_outputs

    out = tmp_path / "out"
    write_outputs(lb, out, plots=False)
    cells = read_cells(out)
    cells = cells[cells["row"] == "cell"]
    csv_rows = {(e.task, e.model, e.source, e.value) for e in ENTRIES}
    for _, r in cells.iterrows():
        task = naming.d4rl_task(r["dataset"])
        if r["published_source"] != r["published_source"] or not r["published_source"]:  # NaN or empty
            assert task is None or (r["model"], task[0]) not in rows_of, r["dataset"]
            continue
        assert (task[0], r["model"], r["published_source"], float(r["published"])) in csv_rows
