"""The package as users install it: a wheel installed non-editable into a fresh virtual environment finds
its configs (top-level conf/, shipped as decision_seq.conf), runs `decision-seq train --help` and composes
every config; and the wheel's package list covers every package in the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

COMPOSE_ALL = r"""
import pathlib, sys
import decision_seq, decision_seq.conf
from hydra import compose, initialize_config_module
from importlib import resources
from omegaconf import OmegaConf
from decision_seq.experiment.resources import parallel_jobs_default
from decision_seq.experiment.validation import validate_train_config

OmegaConf.register_new_resolver("decision_seq_parallel_jobs", parallel_jobs_default, replace=True)
root = resources.files("decision_seq.conf")
print("package", pathlib.Path(decision_seq.__file__).parent)
n = 0
with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
    for group in ("model", "dataset", "trainer", "logger", "experiment"):
        for item in sorted((root / group).iterdir(), key=lambda p: p.name):
            if item.name.endswith(".yaml"):
                cfg = compose("train", overrides=[f"{group}={item.name[:-5]}"])
                OmegaConf.resolve(cfg)
                validate_train_config(cfg)
                n += 1
    for launcher in ("local", "slurm", "joblib", "submitit_local"):
        compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    cfg = compose("train", overrides=["experiment=demo"])
    assert cfg.trainer.steps == 3000 and cfg.model.net.embed_dim == 64, cfg
    compose("eval", overrides=["checkpoint=x.pt"])
print("composed", n)
"""


def test_every_package_is_in_the_wheel_list():
    """pyproject.toml lists the packages explicitly (conf/ is mapped in); a new subpackage must be added."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "decision_seq").rglob("__init__.py")}
    found.add("decision_seq.conf")
    assert listed == found


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the wheel installed (not editable); its dependencies come from this environment's
    site-packages through a .pth line (no download), after the venv's own site-packages."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so setuptools' build/ and egg-info never land in the checkout
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "outputs", "multirun", "wandb", "__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wheel = next((tmp / "dist").glob("decision_seq-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "decision_seq/conf/train.yaml" in names and "decision_seq/conf/model/dt.yaml" in names
    assert "decision_seq/leaderboard/published.csv" in names  # the published scores the leaderboard reads
    assert "decision_seq/leaderboard/site/index.html" in names  # the --html site's template and chart library
    assert "decision_seq/leaderboard/site/vendor/uPlot.iife.min.js" in names
    assert "decision_seq/models/ops/scan_cpu.c" in names  # the fused CPU scan's source, built on first use
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "outer-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    proc = subprocess.run(
        list(args), cwd=cwd, env={**env, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_non_editable_install_runs_help_and_composes_every_config(installed, tmp_path):
    out = _run(installed, str(installed / "bin" / "decision-seq"), "train", "--help", cwd=tmp_path).stdout
    assert (
        "decision-seq train" in out
        and "experiment: backbones, dc-paper, demo, demo-atari, dmamba-atari, dmamba-paper, dt-atari, dt-paper, smoke"
        in out
    )
    out = _run(installed, str(installed / "bin" / "python"), "-c", COMPOSE_ALL, cwd=tmp_path).stdout
    package = Path(out.split("package ", 1)[1].splitlines()[0])
    assert package.is_relative_to(installed), f"imported {package}, not the installed wheel"
    assert int(out.split("composed ", 1)[1]) >= 45
    out = _run(
        installed, str(installed / "bin" / "decision-seq"), "train", "experiment=demo", "--cfg", "job", cwd=tmp_path
    ).stdout
    assert "steps: 3000" in out and "embed_dim: 64" in out
