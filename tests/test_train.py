"""End to end through the real `decision-seq` entry point (subprocesses): training for each backbone,
results.json contents, checkpoints, a 2-job multirun, W&B offline, resume, `decision-seq eval`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = [
    "model.context_len=5", "model.net.embed_dim=16", "model.net.backbone_kwargs.n_layer=1",
    "trainer.batch_size=8", "trainer.warmup_steps=5", "trainer.log_every=5", "trainer.progress=false",
    "eval.episodes=2", "eval.targets=[-150,-600]", "trainer.device=cpu", "trainer.num_threads=1",
]


def cli(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "-m", "decision_seq", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"decision-seq {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("model", ["dt", "dmamba"])
def test_train_writes_results_and_checkpoint(model, pendulum_dataset_id, tmp_path):
    run = tmp_path / model
    proc = cli("train", f"model={model}", "seed=3", "trainer.steps=20", "eval.every=10", "logger=none",
               f"hydra.run.dir={run}", *TINY)
    res = read_results(run)
    assert res["status"] == "completed"
    for key in ("config", "versions", "git_commit", "dataset", "backbone", "seed", "steps", "wall_time_sec",
                "throughput", "evaluations", "final", "best", "protocol"):
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
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 20 and ckpt["backbone"] == res["backbone"]
    for key in ("model", "optimizer", "scheduler", "rng", "normalization", "config", "model_kwargs"):
        assert key in ckpt, key
    assert "normalized (last)" in proc.stdout  # the results table


def test_multirun_two_jobs_and_sweep_table(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("train", "-m", "model=dt,dmamba", "trainer.steps=6", "eval.every=0", "logger=none",
               f"hydra.sweep.dir={sweep}", *TINY)
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


def test_eval_checkpoint_and_bad_checkpoint(pendulum_dataset_id, tmp_path):
    run = tmp_path / "train"
    cli("train", "trainer.steps=5", "eval.every=0", "logger=none", f"hydra.run.dir={run}", *TINY)
    out = tmp_path / "eval"
    cli("eval", f"checkpoint={run}", "eval.episodes=3", "eval.progress=false", f"hydra.run.dir={out}")
    res = json.loads((out / "eval_results.json").read_text())
    assert res["steps"] == 5 and [len(r["returns"]) for r in res["evaluations"][0]["results"]] == [3, 3]
    # the same seeds give the same returns as the training run's final evaluation (first 2 episodes)
    train_res = read_results(run)["evaluations"][-1]["results"]
    for a, b in zip(res["evaluations"][0]["results"], train_res):
        assert a["returns"][:2] == pytest.approx(b["returns"])

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = cli("eval", f"checkpoint={bad}", check=False)
    assert proc.returncode == 2 and "cannot be read safely" in proc.stdout + proc.stderr
    proc = cli("eval", f"checkpoint={tmp_path / 'missing.pt'}", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stdout + proc.stderr


def test_missing_dataset_clear_error(tmp_path):
    proc = cli("train", "dataset.id=mujoco/nowhere/none-v0", "logger=none", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "mujoco/nowhere/none-v0" in out and "dataset.download=true" in out


def test_bf16_autocast_on_cpu(pendulum_dataset_id, tmp_path):
    run = tmp_path / "bf16"
    cli("train", "model=dmamba", "trainer.steps=6", "trainer.bf16=true", "eval.every=0", "logger=none",
        f"hydra.run.dir={run}", *TINY)
    res = read_results(run)
    assert res["status"] == "completed" and res["config"]["trainer"]["bf16"] is True
