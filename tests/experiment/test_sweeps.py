"""Sweeps through Hydra's launcher plugins (joblib, submitit's local executor, Ray when installed), the
experiment presets, failed jobs that do not stop the others, and the leaderboard over a real sweep."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from tests.helpers import cli, main_in_process

# The smoke preset made tinier still; threads are left to the launcher logic (decision_seq/experiment/resources.py).
TINIER = [
    "trainer.steps=10",
    "eval.every=5",
    "eval.episodes=2",
    "eval.targets=[-150,-600]",
    "model.context_len=4",
    "model.net.embed_dim=16",
    "trainer.batch_size=8",
    "trainer.progress=false",
    "trainer.device=cpu",
]


def _job_results(sweep: Path) -> dict[str, dict]:
    return {
        p.name: json.loads((p / "results.json").read_text()) for p in sorted(sweep.iterdir()) if (p / ".hydra").is_dir()
    }


def _leaderboard_cells(sweep: Path, out: Path) -> list[dict]:
    cli("leaderboard", str(sweep), "--out", str(out), "--no-plots", "--reps", "200")
    with open(out / "leaderboard.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("row", "cell") == "cell"]


def _check_smoke_sweep(sweep: Path, tmp_path: Path) -> None:
    jobs = _job_results(sweep)
    assert len(jobs) == 4, list(jobs)
    assert all(r["status"] == "completed" for r in jobs.values())
    assert sorted((r["model"], r["seed"]) for r in jobs.values()) == [
        ("dmamba", 0),
        ("dmamba", 1),
        ("dt", 0),
        ("dt", 1),
    ]
    cells = _leaderboard_cells(sweep, tmp_path / "board")
    assert sorted(c["model"] for c in cells) == ["dmamba", "dt"]
    for cell in cells:
        runs = [r for r in jobs.values() if r["model"] == cell["model"]]
        assert int(cell["n_seeds"]) == 2
        mean_last = sum(r["final"]["score"] for r in runs) / 2
        assert float(cell["last_mean"]) == pytest.approx(mean_last)


def test_smoke_preset_through_joblib_then_leaderboard(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "joblib"
    proc = cli(
        "train",
        "-m",
        "+experiment=smoke",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        *TINIER,
        timeout=600,
    )
    _check_smoke_sweep(sweep, tmp_path)
    assert f"decision-seq leaderboard {sweep}" in proc.stdout.replace("\n", "")
    # Two jobs share the 2-core box: each takes cores // 2 threads instead of all of them.
    log = (sweep / "0_dt_pendulum-mixed_seed0" / "train.log").read_text()
    assert "2-way parallel sweep" in log


@pytest.mark.slow  # ~30 s; the joblib sweep covers the same recipe in the fast suite
def test_smoke_preset_through_submitit_local_executor(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "submitit"
    # submitit's local executor starts all 4 jobs at once: one torch thread each on the 2-core box
    cli(
        "train",
        "-m",
        "experiment=smoke",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        *TINIER,
        "trainer.num_threads=1",
        timeout=600,
    )
    _check_smoke_sweep(sweep, tmp_path)
    assert (sweep / ".submitit").is_dir()  # the jobs really went through submitit


@pytest.mark.parametrize("launcher", ["basic", pytest.param("joblib", marks=pytest.mark.slow)])
def test_failed_job_does_not_stop_the_others(pendulum_dataset_id, tmp_path, launcher, capsys, restore_logging):
    sweep = tmp_path / launcher
    extra = [] if launcher == "basic" else ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    # job 0 names a dataset that does not exist; job 1 is fine
    args = ["train", "-m", f"dataset.id=no/such/dataset-v0,{pendulum_dataset_id}", "logger=none"]
    args += [f"hydra.sweep.dir={sweep}", *extra, *TINIER]
    if launcher == "basic":  # jobs run in this process: the real entry point, seconds faster
        assert main_in_process(*args) != 0
        out = "".join(capsys.readouterr())
    else:
        proc = cli(*args, check=False, timeout=600)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
    jobs = _job_results(sweep)
    bad, good = jobs["0_dt_pendulum-mixed_seed0"], jobs["1_dt_pendulum-mixed_seed0"]
    assert good["status"] == "completed"
    assert bad["status"] == "failed" and "no/such/dataset-v0" in bad["error"] and bad["traceback"]
    assert "1 of 2 jobs did not complete: 0_dt_pendulum-mixed_seed0" in out
    # the leaderboard reads the completed job and lists the failed one as skipped
    cells = _leaderboard_cells(sweep, tmp_path / "board")
    assert [int(c["n_seeds"]) for c in cells] == [1]


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="the optional Ray launcher is not installed (pip install 'decision-seq[ray]')",
)
def test_smoke_preset_through_local_ray(pendulum_dataset_id, tmp_path):
    sweep = tmp_path / "ray"
    cli(
        "train",
        "-m",
        "experiment=smoke",
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        f"hydra.sweep.dir={sweep}",
        *TINIER,
        timeout=900,
    )
    _check_smoke_sweep(sweep, tmp_path)


@pytest.mark.parametrize("cpus,gpus,expected_jobs", [(16, 0, 8), (2, 0, 1), (1, 0, 1), (16, 3, 3)])
def test_launcher_configs_compose(monkeypatch, cpus, gpus, expected_jobs):
    """hydra/launcher=local runs one job per GPU, else one per 2 cores; =slurm keeps its documented keys."""
    from omegaconf import OmegaConf

    from decision_seq.experiment import resources

    monkeypatch.setattr(resources, "_cpu_count", lambda: cpus)
    monkeypatch.setattr(resources, "_gpu_count", lambda: gpus)
    OmegaConf.register_new_resolver("decision_seq_parallel_jobs", resources.parallel_jobs_default, replace=True)
    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        slurm = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        assert "SlurmLauncher" in slurm._target_ and slurm.gpus_per_node == 1 and slurm.array_parallelism == 64
        local = compose("train", overrides=["hydra/launcher=local"], return_hydra_config=True).hydra.launcher
        assert "JoblibLauncher" in local._target_ and local.n_jobs == expected_jobs


@pytest.mark.parametrize(
    "job_num,gpus,expected_device", [(0, 2, "cuda:0"), (3, 2, "cuda:1"), (5, 0, "auto"), (1, 1, "auto")]
)
def test_parallel_jobs_split_gpus_and_threads(monkeypatch, job_num, gpus, expected_device):
    from decision_seq.experiment import resources as launch

    monkeypatch.setattr(launch, "concurrent_jobs", lambda: 4)
    monkeypatch.setattr(launch, "_job_num", lambda: job_num)
    monkeypatch.setattr(launch, "_gpu_count", lambda: gpus)
    monkeypatch.setattr(launch, "_cpu_count", lambda: 16)
    assert launch.job_resources("auto", None) == (expected_device, 4)
    assert launch.job_resources("cpu", 2) == ("cpu", 2)  # explicit settings are kept
    monkeypatch.setattr(launch, "concurrent_jobs", lambda: 1)
    assert launch.job_resources("auto", None) == ("auto", None)  # one job at a time: defaults untouched
