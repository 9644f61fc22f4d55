"""End to end through the real `decision-seq` entry point (subprocesses): training for each backbone,
results.json contents, checkpoints, a 2-job multirun, W&B offline, resume, `decision-seq eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from decision_seq.cli import main
from tests.helpers import TINY, cli, read_results


@pytest.mark.parametrize("model", ["dmamba"])  # every backbone trains in process: tests/models/test_backbone_runs.py
def test_train_writes_results_and_checkpoint(model, pendulum_dataset_id, tmp_path, capsys, restore_logging):
    run = tmp_path / model
    main(
        [
            "train",
            f"model={model}",
            "seed=3",
            "trainer.steps=20",
            "eval.every=10",
            "logger=none",
            f"hydra.run.dir={run}",
            *TINY,
        ]
    )
    stdout = capsys.readouterr().out
    res = read_results(run)
    assert res["status"] == "completed"
    for key in (
        "config",
        "versions",
        "git_commit",
        "dataset",
        "backbone",
        "seed",
        "steps",
        "wall_time_sec",
        "throughput",
        "evaluations",
        "final",
        "best",
        "protocol",
    ):
        assert key in res, key
    assert res["backbone"] == {"dt": "transformer", "dmamba": "mamba"}[model]
    assert res["seed"] == 3 and res["steps"] == 20
    assert res["dataset"]["id"] == pendulum_dataset_id and res["dataset"]["steps"] == 30 * 200
    assert [e["step"] for e in res["evaluations"]] == [10, 20]
    for ev in res["evaluations"]:
        assert [r["target"] for r in ev["results"]] == [-150.0, -600.0]
        for r in ev["results"]:
            assert len(r["returns"]) == 2 and r["lengths"] == [200, 200]
            assert r["seeds"] == [30000, 30001]
    best_scores = [max(r["mean_normalized"] for r in ev["results"]) for ev in res["evaluations"]]
    assert res["best"]["score"] == pytest.approx(max(best_scores))
    assert res["final"]["score"] == pytest.approx(best_scores[-1])
    assert res["throughput"]["steps_per_sec"] > 0
    assert res["protocol"]["targets"] == [-150, -600] and res["protocol"]["episodes"] == 2
    assert res["protocol"]["eval_env"] == "Pendulum-v1" and res["protocol"]["top_fraction"] is None
    mean = res["dataset"]["return_mean"]
    assert res["protocol"]["dataset_build"] == f"30 episodes, 6000 steps, mean {mean:.2f}"
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 20 and ckpt["backbone"] == res["backbone"]
    for key in ("model", "optimizer", "scheduler", "rng", "normalization", "config", "model_kwargs"):
        assert key in ckpt, key
    assert "normalized (last)" in stdout  # the results table


@pytest.mark.slow  # ~8 s; the sweep tests cover multiruns in the fast suite
def test_multirun_two_jobs_and_sweep_table(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(
        "train",
        "-m",
        "model=dt,dmamba",
        "trainer.steps=6",
        "eval.every=0",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        *TINY,
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_dt_pendulum-mixed_seed0", "1_dmamba_pendulum-mixed_seed0"]
    assert {read_results(j)["backbone"] for j in jobs} == {"transformer", "mamba"}
    assert f"sweep {sweep}" in proc.stdout.replace("\n", "")


def test_wandb_offline_run_dir(pendulum_dataset_id, tmp_path):
    run = tmp_path / "wb"
    cli("train", "trainer.steps=5", "eval.every=0", "logger=wandb", f"hydra.run.dir={run}", *TINY)
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logs = list(runs[0].glob("*.wandb"))
    assert len(logs) == 1, "no .wandb log file in the offline run dir"
    data = logs[0].read_bytes()  # protobuf records: the config, metrics and summary keys appear verbatim
    for key in (b"pendulum-mixed", b"train/loss", b"eval/score", b"final/score"):
        assert key in data, key


def test_eval_checkpoint_and_bad_checkpoint(pendulum_dataset_id, tmp_path, restore_logging):
    run = tmp_path / "train"
    main(["train", "trainer.steps=5", "eval.every=0", "logger=none", f"hydra.run.dir={run}", *TINY])
    out = tmp_path / "eval"
    main(["eval", f"checkpoint={run}", "eval.episodes=3", "eval.progress=false", f"hydra.run.dir={out}"])
    res = json.loads((out / "eval_results.json").read_text())
    assert res["steps"] == 5 and [len(r["returns"]) for r in res["evaluations"][0]["results"]] == [3, 3]
    # the same seeds give the same returns as the training run's final evaluation (first 2 episodes)
    train_res = read_results(run)["evaluations"][-1]["results"]
    for a, b in zip(res["evaluations"][0]["results"], train_res, strict=True):
        assert a["returns"][:2] == pytest.approx(b["returns"])


def test_eval_refuses_a_bad_or_missing_checkpoint(tmp_path, capsys, restore_logging):
    from decision_seq.cli import main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_:  # in process: the real entry point, Hydra included
        main(["eval", f"checkpoint={bad}", f"hydra.run.dir={tmp_path / 'bad_eval'}"])
    assert exit_.value.code == 2 and "cannot be read safely" in "".join(capsys.readouterr())
    with pytest.raises(SystemExit) as exit_:
        main(["eval", f"checkpoint={tmp_path / 'missing.pt'}"])
    assert exit_.value.code == 2 and "no such file or run dir" in capsys.readouterr().err


def test_missing_dataset_clear_error(tmp_path, capsys, restore_logging):
    from decision_seq.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "dataset.id=mujoco/nowhere/none-v0", "logger=none", f"hydra.run.dir={tmp_path}"])
    assert exit_.value.code == 2
    out = "".join(capsys.readouterr())
    assert "mujoco/nowhere/none-v0" in out and "dataset.download=true" in out


def test_download_without_network_is_one_clear_error(monkeypatch):
    """dataset.download=true offline: the network error becomes RemoteUnavailableError, which the CLI
    reports as one line with exit code 2 (one of its user errors)."""
    import minari

    from decision_seq.cli.apps import user_errors
    from decision_seq.data.episodes import load_minari_dataset
    from decision_seq.datasets.minari_io import RemoteUnavailableError

    def offline(*args, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(minari, "load_dataset", offline)
    with pytest.raises(RemoteUnavailableError, match=r"could not reach the Minari remote \(offline\?\)"):
        load_minari_dataset("mujoco/hopper/medium-v0", download=True)
    assert RemoteUnavailableError in user_errors()


def test_target_outside_dataset_returns_warns():
    from decision_seq.data.episodes import episodes_from_arrays
    from decision_seq.experiment.evaluate import check_targets

    rewards = [np.full(10, 1.0), np.full(10, 3.0)]  # episode returns 10 and 30
    eps = episodes_from_arrays(
        observations=[np.zeros((11, 2))] * 2, actions=[np.zeros((10, 1))] * 2, rewards=rewards, dataset_id="toy"
    )
    assert check_targets([10, 30, 60], eps) == []
    warnings = check_targets([5, 61], eps)
    assert len(warnings) == 2 and "sensible targets lie in [10, 60]" in warnings[0]
