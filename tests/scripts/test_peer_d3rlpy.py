"""scripts/peer_d3rlpy.py without d3rlpy: the export in d3rlpy's MDPDataset layout, the overrides our runs
get, the per-seed scores and their summary, and its argument errors. (The d3rlpy side runs in its own
environment; docs/benchmarks.md has the command and the numbers.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from decision_seq.data.episodes import episodes_from_arrays

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "peer_d3rlpy.py"


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("peer_d3rlpy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_d3rlpy"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["peer_d3rlpy"]


def _episodes():
    obs = [np.arange(4 * 2, dtype=np.float32).reshape(4, 2), np.ones((3, 2), np.float32)]  # T+1 rows each
    act = [np.zeros((3, 1), np.float32), np.ones((2, 1), np.float32)]
    rew = [np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0])]
    term = [np.array([False, False, True]), np.array([False, False])]  # the second episode is cut off
    return episodes_from_arrays(obs, act, rew, term, ref_min_score=0.0, ref_max_score=10.0, dataset_id="x/y/z-v0")


def test_export_marks_each_episode_end_as_terminal_or_timeout(peer, tmp_path):
    peer.export(_episodes(), tmp_path / "d.npz")
    d = np.load(tmp_path / "d.npz")
    assert d["observations"].shape == (5, 2) and d["actions"].shape == (5, 1)
    np.testing.assert_array_equal(d["rewards"], [1, 2, 3, 5, 5])
    np.testing.assert_array_equal(d["terminals"], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(d["timeouts"], [0, 0, 0, 0, 1])


def test_summary_normalizes_per_seed_and_target(peer):
    runs = {
        "ours dt": {
            0: {"returns": {4.0: [2.0, 4.0], 8.0: [6.0, 6.0]}, "steps_per_sec": 10.0},
            1: {"returns": {4.0: [5.0, 5.0], 8.0: [8.0, 10.0]}, "steps_per_sec": 30.0},
        }
    }
    out = peer.summarize(runs, _episodes(), [4.0, 8.0])["ours dt"]  # normalized: 100 * R / 10
    assert out["per_seed"][0]["scores"] == pytest.approx([30.0, 60.0]) and out["per_seed"][0]["mean"] == 45.0
    assert out["per_seed"][1]["scores"] == pytest.approx([50.0, 90.0])
    assert out["summary"]["4"]["mean"] == pytest.approx(40.0) and out["summary"]["4"]["n"] == 2
    assert out["summary"]["mean over targets"]["mean"] == pytest.approx(57.5)
    assert out["steps_per_sec_median"] == 20.0


def test_markdown_gives_one_seed_its_score_alone(peer):
    runs = {"ours dt": {0: {"returns": {4.0: [2.0, 4.0]}, "steps_per_sec": 10.0}}}
    report = {"methods": peer.summarize(runs, _episodes(), [4.0]), "seeds": [0]}
    table = peer.markdown(report, [4.0])
    assert "| ours dt | 30.0 (1 seed) | 30.0 (1 seed) | 10.0 |" in table and "nan" not in table
    runs["ours dt"][1] = {"returns": {4.0: [5.0, 5.0]}, "steps_per_sec": 30.0}
    report = {"methods": peer.summarize(runs, _episodes(), [4.0]), "seeds": [0, 1]}
    assert "| ours dt | 40.0 ± 14.1 [" in peer.markdown(report, [4.0])


def test_our_runs_get_the_shape_and_the_schedule(peer, tmp_path):
    args = peer.parse_args(["--d3rlpy-python", sys.executable, "--out", str(tmp_path), "--steps", "7"])
    cmd = peer.our_overrides("dt", "hopper-medium", peer.SHAPES["small"], args, [3600.0, 1800.0], 3, tmp_path)
    for override in ("model.net.embed_dim=64", "model.net.backbone_kwargs.n_layer=2", "trainer.lr=0.001",
                     "trainer.steps=7", "trainer.warmup_steps=500", "eval.targets=[3600,1800]", "seed=3"):  # fmt: skip
        assert override in cmd, override


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ours", "dt,gpt"], "--ours: unknown model 'gpt'; valid: dt, dmamba"),
        (["--seeds", "0,a"], "--seeds and --targets take comma-separated numbers"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--jobs", "0"], "--jobs must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line(peer, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        peer.parse_args(["--d3rlpy-python", sys.executable, "--out", str(tmp_path), *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_runs_keep_their_order_and_stop_at_the_first_failure(peer):
    assert peer.run_all({("a", 1): lambda: 1, ("b", 0): lambda: 2}, jobs=2) == {("a", 1): 1, ("b", 0): 2}
    started = []

    def run(i):
        started.append(i)
        if i == 1:
            raise RuntimeError("run 1 failed")
        return i

    tasks = {i: (lambda i=i: run(i)) for i in range(6)}
    with pytest.raises(RuntimeError, match="run 1 failed"):
        peer.run_all(tasks, jobs=1)
    assert started == [0, 1]  # one at a time: nothing after the failed run starts


def test_an_output_folder_keeps_to_one_dataset_build(peer, tmp_path):
    assert peer.claim_out_dir(tmp_path, "a/b/medium-v0", "259 episodes, 200000 steps, mean 2237.00") is None
    assert peer.claim_out_dir(tmp_path, "a/b/medium-v0", "259 episodes, 200000 steps, mean 2237.00") is None
    problem = peer.claim_out_dir(tmp_path, "a/b/medium-v0", "231 episodes, 200000 steps, mean 2601.25")
    assert "holds runs on a/b/medium-v0 (259 episodes, 200000 steps, mean 2237.00)" in problem
    assert "give another --out" in problem
    assert "not on a/c/medium-v0" in peer.claim_out_dir(
        tmp_path, "a/c/medium-v0", "259 episodes, 200000 steps, mean 2237.00"
    )


def test_each_finished_run_is_reported_once(peer):
    seen = []
    out = peer.run_all({("a", 0): lambda: 1, ("b", 0): lambda: 2}, jobs=1, on_done=lambda k, r: seen.append((k, r)))
    assert out == {("a", 0): 1, ("b", 0): 2} and seen == [(("a", 0), 1), (("b", 0), 2)]


def _write_ours(run: Path, status: str, returns: list[float], steps_per_sec: float) -> None:
    run.mkdir(parents=True)
    results = {"target": 4.0, "returns": returns}
    (run / "results.json").write_text(
        json.dumps(
            {"status": status, "evaluations": [{"results": [results]}], "throughput": {"steps_per_sec": steps_per_sec}}
        )
    )


def test_a_stopped_check_reports_what_finished(peer, tmp_path):
    _write_ours(tmp_path / "ours-dt" / "seed0", "completed", [2.0, 4.0], 10.0)
    _write_ours(tmp_path / "ours-dt" / "seed1", "running", [9.0], 1.0)  # killed mid-run: not a result
    _write_ours(tmp_path / "ours-dt" / "seed2", "completed", [5.0, 5.0], 30.0)
    (tmp_path / "d3rlpy-dt").mkdir()
    (tmp_path / "d3rlpy-dt" / "seed1.json").write_text(
        json.dumps({"results": [{"target": 4.0, "returns": [1.0]}], "steps_per_sec": 5.0})
    )
    (tmp_path / "d3rlpy-dt" / "seed2.tmp").write_text("{")  # a d3rlpy run still going
    runs = peer.finished_runs(tmp_path)
    assert {m: sorted(r) for m, r in runs.items()} == {"ours dt": [0, 2], "d3rlpy dt": [1]}
    spec = {"steps": 7, "targets": [4.0], "episodes": 2}
    report = peer.make_report("x/y/z-v0", "2 episodes", spec, "small", [0, 1, 2], runs, _episodes())
    table = peer.write_report(tmp_path, report)
    assert (tmp_path / "peer.md").read_text() == table
    assert json.loads((tmp_path / "peer.json").read_text())["methods"]["ours dt"]["summary"]["4"]["n"] == 2
    assert "| 0 | 30.0 | - |" in table and "| 1 | - | 10.0 |" in table and "| 2 | 50.0 | - |" in table
    assert "| ours dt | 40.0 ± 14.1 [" in table and "| d3rlpy dt | 10.0 (1 seed) |" in table
    assert "Partial: seeds finished so far: ours dt 2 of 3, d3rlpy dt 1 of 3" in table


def test_report_needs_no_d3rlpy(peer, tmp_path):
    args = peer.parse_args(["--report", "--out", str(tmp_path), "--d3rlpy-python", str(tmp_path / "none")])
    assert args.report
