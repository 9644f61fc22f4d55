"""decision_seq.leaderboard.html and `decision-seq leaderboard --html`: the JSON export with exact values on
hand-made sweeps, the reproduce command, the site's files, and how a bad or previous OUT_DIR is handled.
The page itself is tested in a browser in test_html_browser.py."""

from __future__ import annotations

import json
import math
import re

import pytest

from decision_seq.cli.leaderboard import main
from decision_seq.leaderboard import html
from decision_seq.leaderboard.grouping import build_leaderboard
from decision_seq.leaderboard.runs import LeaderboardError
from tests.leaderboard.helpers import HOPPER_BEST, HOPPER_LAST, WALKER_LAST, ci_by_hand, make_sweep, write_run

REPS, SEED = 400, 3


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path / "sweep")


def _cells(data: dict) -> dict[tuple[str, str], dict]:
    return {(c["dataset"]["id"], c["label"]): c for c in data["cells"]}


def test_json_cells_exact(sweep):
    data = html.leaderboard_json(build_leaderboard([sweep], reps=REPS, seed=SEED), generated_at="T")
    assert data["schema"] == "decision-seq-leaderboard" and data["schema_version"] == 1
    assert data["generated_at"] == "T" and data["statistics"]["reps"] == REPS and data["statistics"]["seed"] == SEED
    json.dumps(data, allow_nan=False)  # no NaN: missing numbers are null
    cells = _cells(data)
    assert list(cells) == [
        ("d4rl/hopper/medium-replay-v2", "dt"),
        ("d4rl/walker2d/medium-v2", "dt"),
        ("decision-seq/hopper/medium-v0", "dmamba"),
    ]
    hop = cells[("d4rl/hopper/medium-replay-v2", "dt")]
    assert hop["id"] == "d4rl-hopper-medium-replay-v2--dt"
    assert hop["dataset"] == {
        "id": "d4rl/hopper/medium-replay-v2",
        "namespace": "d4rl",
        "env": "hopper",
        "level": "medium-replay",
        "version": "v2",
        "normalized_score_mean": 40.0,
    }
    assert hop["backbones"] == ["transformer"] and hop["score_unit"] == "normalized"
    assert hop["n_seeds"] == 4 and hop["seeds"] == [0, 1, 2, 3]
    last_lo, last_hi = ci_by_hand([HOPPER_LAST], reps=REPS, seed=SEED)
    assert hop["last"] == pytest.approx(
        {"mean": 30.0, "std": math.sqrt(1400 / 3), "ci_low": last_lo, "ci_high": last_hi}
    )
    best_lo, best_hi = ci_by_hand([HOPPER_BEST], reps=REPS, seed=SEED)
    assert hop["best"]["mean"] == pytest.approx(41.25)
    assert (hop["best"]["ci_low"], hop["best"]["ci_high"]) == pytest.approx((best_lo, best_hi))
    assert hop["published"]["value"] == 82.7 and hop["published"]["source"] == "DT paper, last"
    assert hop["published"]["exact"] is True and hop["published"]["sources"][1] == {
        "source": "CORL, last",
        "value": 81.8,
    }
    assert hop["protocol"] == {
        "dataset_id": "d4rl/hopper/medium-replay-v2",
        "targets": [3600, 1800],
        "episodes": 10,
        "steps": 1000,
        "eval_every": 500,
        "mode": "window",
        "context_len": 20,
        "rtg_scale": 1000,
        "eval_env": "Hopper-v4",
        "top_fraction": None,
        "discrete_action": None,
        "eval_max_steps": None,
        "dataset_build": None,  # make_results' dataset entry has no episodes / steps / return_mean
    }
    assert [r["seed"] for r in hop["runs"]] == [0, 1, 2, 3]
    assert hop["runs"][3]["last"] == 60.0 and hop["runs"][3]["best"] == 90.0
    assert hop["runs"][3]["curve"] == [[500, 30.0], [1000, 60.0]]  # make_results: curve [last / 2, last]
    assert hop["runs"][0]["path"] == str(sweep / "dt_hopper_0" / "results.json")
    # the learning curve: per step, the mean over seeds and its bootstrap CI
    band = hop["curve"]
    assert band["steps"] == [500, 1000] and band["mean"] == pytest.approx([15.0, 30.0])
    half_lo, half_hi = ci_by_hand([[x / 2 for x in HOPPER_LAST]], reps=REPS, seed=SEED)
    assert band["ci_low"] == pytest.approx([half_lo, last_lo]) and band["ci_high"] == pytest.approx([half_hi, last_hi])

    dm = cells[("decision-seq/hopper/medium-v0", "dmamba")]
    assert dm["last"]["std"] == pytest.approx(math.sqrt(50.0)) and dm["backbones"] == ["mamba"]
    assert dm["published"]["exact"] is False and dm["published"]["value"] == 83.5
    assert dm["dataset"]["namespace"] == "decision-seq" and dm["dataset"]["version"] == "v0"


def test_json_aggregates_exact(sweep):
    data = html.leaderboard_json(build_leaderboard([sweep], reps=REPS, seed=SEED))
    aggs = {a["label"]: a for a in data["aggregates"]}
    dt = aggs["dt"]
    assert dt["cells"] == ["d4rl-hopper-medium-replay-v2--dt", "d4rl-walker2d-medium-v2--dt"]
    assert dt["datasets"] == ["d4rl/hopper/medium-replay-v2", "d4rl/walker2d/medium-v2"] and dt["n_runs"] == 8
    lo, hi = ci_by_hand([HOPPER_LAST, WALKER_LAST], "mean", REPS, SEED)
    assert dt["last"]["mean"] == pytest.approx({"value": 52.5, "ci_low": lo, "ci_high": hi})
    lo, hi = ci_by_hand([HOPPER_LAST, WALKER_LAST], "iqm", REPS, SEED)
    assert dt["last"]["iqm"] == pytest.approx({"value": (30 + 50 + 60 + 70) / 4, "ci_low": lo, "ci_high": hi})
    # published beside ours: per source, the mean of its numbers on the same two datasets
    first = dt["published"][0]
    assert first["source"] == "DT paper, last" and first["mean"] == pytest.approx((82.7 + 74.0) / 2)
    assert first["exact"] is True
    assert aggs["dmamba"]["published"] == [{"source": "DMamba paper, best", "mean": 83.5, "exact": False}]


def test_single_seed_and_protocol_split(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "a", seed=0, last=40.0)
    write_run(root, "b", seed=1, last=50.0, steps=2000)
    data = html.leaderboard_json(build_leaderboard([root], reps=REPS))
    assert [c["id"] for c in data["cells"]] == [
        "d4rl-hopper-medium-replay-v2--dt--steps-1000",
        "d4rl-hopper-medium-replay-v2--dt--steps-2000",
    ]
    one = data["cells"][0]
    assert one["variant"] == "steps=1000" and one["label"] == "dt [steps=1000]"
    assert one["last"] == {"mean": 40.0, "std": None, "ci_low": None, "ci_high": None}
    assert one["curve"]["ci_low"] == [None, None]  # one run: no band
    assert any("differ in protocol field 'steps'" in w for w in data["warnings"])


def test_cell_ids_unique_and_url_safe(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "a", dataset_id="local/my env/x y-v0", model="dt", normalized=False)
    write_run(root, "b", dataset_id="local/my-env/x-y-v0", model="dt", normalized=False)
    lb = build_leaderboard([root], reps=REPS)
    ids = html.cell_ids(lb.cells)
    assert len(set(ids)) == 2 and all(re.fullmatch(r"[A-Za-z0-9._-]+", i) for i in ids)
    assert html.dataset_parts("pendulum") == {"namespace": "", "env": "pendulum", "level": "", "version": ""}
    assert html.dataset_parts("mujoco/hopper/simple-v0")["level"] == "simple"


def test_reproduce_command_and_git_commit(tmp_path):
    root = tmp_path / "runs"
    for s in (0, 1):
        d = write_run(root, f"dt_{s}", seed=s)
        (d / ".hydra").mkdir()
        (d / ".hydra" / "overrides.yaml").write_text(f"- experiment=smoke\n- model=dt\n- seed={s}\n")
        res = json.loads((d / "results.json").read_text())
        (d / "results.json").write_text(json.dumps(res | {"git_commit": f"abc{s}"}))
    write_run(root, "dm_0", model="dmamba", seed=4, steps=3000, top_fraction=0.1)
    data = html.leaderboard_json(build_leaderboard([root], reps=REPS))
    dt, dm = data["cells"][1], data["cells"][0]
    assert dt["model"] == "dt" and dt["command"] == "decision-seq train -m experiment=smoke model=dt seed=0,1"
    assert [r["git_commit"] for r in dt["runs"]] == ["abc0", "abc1"]
    # no saved overrides: the command comes from the protocol
    assert dm["command"] == (
        "decision-seq train -m model=dmamba dataset.id=d4rl/hopper/medium-replay-v2 seed=4 trainer.steps=3000 "
        "eval.every=500 eval.episodes=10 eval.mode=window 'eval.targets=[3600,1800]' model.context_len=20 "
        "dataset.rtg_scale=1000 dataset.top_fraction=0.1"
    )
    assert dm["runs"][0]["git_commit"] is None


def test_write_site_files(sweep, tmp_path):
    lb = build_leaderboard([sweep], reps=REPS)
    out = tmp_path / "site"
    html.write_site(lb, out, generated_at="T")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "assets/app.js",
        "assets/style.css",
        "assets/vendor/uPlot.LICENSE",
        "assets/vendor/uPlot.iife.min.js",
        "assets/vendor/uPlot.min.css",
        "index.html",
        "leaderboard.json",
    ]
    page = (out / "index.html").read_text()
    embedded = re.search(r'<script id="leaderboard-data" type="application/json">(.*?)</script>', page, re.S)
    assert json.loads(embedded.group(1)) == json.loads((out / "leaderboard.json").read_text())
    # self-contained: every script and style the page loads is a relative path inside the folder
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert not re.match(r"[a-z]+:|//", ref) and (out / ref).is_file(), ref
    assert not list(tmp_path.glob(".site.*"))  # no temp folders left


def test_embedded_json_cannot_close_the_script(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "x</script><script>alert(1)</script>", seed=0)
    out = tmp_path / "site"
    html.write_site(build_leaderboard([root], reps=REPS), out)
    page = (out / "index.html").read_text()
    assert page.count("</script>") == 3  # the data element and the two script tags
    assert "x</script>" in json.loads((out / "leaderboard.json").read_text())["cells"][0]["runs"][0]["path"]


def test_previous_site_replaced_foreign_folder_refused(sweep, tmp_path):
    lb = build_leaderboard([sweep], reps=REPS)
    out = tmp_path / "site"
    html.write_site(lb, out, generated_at="first")
    (out / "stale.txt").write_text("from the old site")
    html.write_site(lb, out, generated_at="second")
    assert json.loads((out / "leaderboard.json").read_text())["generated_at"] == "second"
    assert not (out / "stale.txt").exists()  # replaced whole

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(LeaderboardError, match="not a leaderboard site"):
        html.write_site(lb, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    html.write_site(lb, tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "index.html").is_file()


def test_failed_write_keeps_the_previous_site(sweep, tmp_path, monkeypatch):
    lb = build_leaderboard([sweep], reps=REPS)
    out = tmp_path / "site"
    html.write_site(lb, out, generated_at="good")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(data):
        raise OSError("disk full")

    monkeypatch.setattr(html, "render_index", broken)
    with pytest.raises(OSError, match="disk full"):
        html.write_site(lb, out, generated_at="bad")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "sweep"]  # no temp folders left


def test_cli_html(sweep, tmp_path, capsys):
    out = tmp_path / "site"
    assert main([str(sweep), "--no-plots", "--reps", "50", "--html", str(out)]) == 0
    assert (out / "index.html").is_file() and (sweep / "leaderboard" / "leaderboard.md").is_file()
    assert f"wrote the site to {out}" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "--html OUT_DIR" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["file", "foreign", "under_file", "same_as_out"])
def test_cli_bad_html_dir(sweep, tmp_path, capsys, kind):
    target = tmp_path / "x"
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "foreign":
        target.mkdir()
        (target / "a.txt").write_text("mine")
    elif kind == "under_file":
        (tmp_path / "f").write_text("")
        target = tmp_path / "f" / "site"
    args = [str(sweep), "--no-plots", "--html", str(target)]
    if kind == "same_as_out":
        args += ["--out", str(target)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("decision-seq leaderboard: error: --html ")
    assert not (sweep / "leaderboard").exists()  # failed before computing or writing anything
