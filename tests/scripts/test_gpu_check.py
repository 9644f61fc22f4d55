"""scripts/gpu_check.sh (its --dry-run on the CPU, as CI runs it), scripts/wheel_pieces.sh (kernel wheels split
into pieces and joined back) and the backbone selection the benchmarks share (scripts/bench_common.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decision_seq.models.backbones import available_backbones
from tests.helpers import REPO

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))  # the bench scripts import their shared module as a top-level one
import bench_common  # noqa: E402

MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


def sh(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *map(str, args)], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def fake_wheel(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(bytes((seed + 7 * i) % 251 for i in range(size)))
    return path


# --- wheel pieces ------------------------------------------------------------------------------------


def test_pieces_round_trip_and_size_limit(tmp_path):
    wheels = [
        fake_wheel(tmp_path / "mamba_ssm-2.3.2-cp312-cp312-linux_x86_64.whl", 2500),
        fake_wheel(tmp_path / "causal_conv1d-1.7.0-cp312-cp312-linux_x86_64.whl", 700, seed=3),
    ]
    pieces = tmp_path / "pieces"
    done = sh(SCRIPTS / "wheel_pieces.sh", "split", pieces, *wheels, env={"PIECE_SIZE": "1K"})
    assert done.returncode == 0, done.stderr
    parts = sorted(pieces.glob("*.part-*"))
    assert len(parts) == 3 + 1  # 2500 bytes in 1 KiB pieces, and one piece of 700
    assert all(p.stat().st_size <= 1024 for p in parts)
    joined = sh(SCRIPTS / "wheel_pieces.sh", "join", pieces, tmp_path / "out")
    assert joined.returncode == 0, joined.stderr
    for w in wheels:
        assert (tmp_path / "out" / w.name).read_bytes() == w.read_bytes()


def test_pieces_join_refuses_a_corrupt_or_missing_piece(tmp_path):
    wheel = fake_wheel(tmp_path / "mamba_ssm-2.3.2-cp312-cp312-linux_x86_64.whl", 2500)
    pieces = tmp_path / "pieces"
    assert sh(SCRIPTS / "wheel_pieces.sh", "split", pieces, wheel, env={"PIECE_SIZE": "1K"}).returncode == 0
    part = pieces / f"{wheel.name}.part-01"
    part.write_bytes(b"x" + part.read_bytes()[1:])
    bad = sh(SCRIPTS / "wheel_pieces.sh", "join", pieces, tmp_path / "out")
    assert bad.returncode != 0 and "missing or corrupt" in bad.stderr
    part.unlink()
    missing = sh(SCRIPTS / "wheel_pieces.sh", "join", pieces, tmp_path / "out2")
    assert missing.returncode != 0 and "missing or corrupt" in missing.stderr


# --- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "want CARRY_DIR OUT_DIR"),
        (("only-out",), "want CARRY_DIR OUT_DIR"),
        (("--budget", "soon", "c", "o"), "--budget must be a whole number"),
        (("--only", "bench", "c", "o"), "--only: unknown step 'bench'"),
        (("--frobnicate",), "unknown option '--frobnicate'"),
    ],
)
def test_gpu_check_rejects_bad_arguments(args, message, tmp_path):
    done = sh(SCRIPTS / "gpu_check.sh", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_gpu_check_rejects_a_missing_carry_dir(tmp_path):
    done = sh(SCRIPTS / "gpu_check.sh", tmp_path / "nope", tmp_path / "out")
    assert done.returncode == 2 and "is not a directory" in done.stderr


# --- the benchmarks' rows ------------------------------------------------------------------------------


def test_paper_configs_cover_every_backbone_with_dt_first():
    configs = bench_common.paper_configs()
    assert configs[0].name == bench_common.REFERENCE_MODEL
    assert {c.backbone for c in configs} == set(available_backbones())
    assert set(MODELS) <= {c.name for c in configs}


def test_kernel_rows_are_skipped_on_the_cpu_and_selection_by_backbone_or_model():
    configs = bench_common.select_configs(bench_common.paper_configs(), "mamba,dt")
    rows = bench_common.expand_paths(configs, "both", torch.device("cpu"))
    assert [(r.label, r.skip is not None) for r in rows] == [
        ("dt", False),
        ("dmamba (kernel)", True),
        ("dmamba (torch)", False),
    ]
    assert rows[2].net_kwargs()["backbone_kwargs"]["use_kernels"] is False
    with pytest.raises(SystemExit, match="unknown name.*nope.*valid: .*dmamba"):
        bench_common.select_configs(bench_common.paper_configs(), "nope")


# --- the whole dry run ---------------------------------------------------------------------------------


@pytest.mark.slow  # about 3 minutes on a 2-core CI machine: every backbone trained and evaluated on the CPU
def test_gpu_check_dry_run_writes_every_backbone(tmp_path):
    carry, out = tmp_path / "carry", tmp_path / "out"
    carry.mkdir()
    (carry / "einops-0.8.1-py3-none-any.whl").write_bytes(b"")  # a carried dependency: listed, not installed
    kernel = fake_wheel(tmp_path / "mamba_ssm-2.3.2-cp312-cp312-linux_x86_64.whl", 3000)
    assert sh(SCRIPTS / "wheel_pieces.sh", "split", carry / "kernel-wheels", kernel).returncode == 0

    done = sh(SCRIPTS / "gpu_check.sh", "--dry-run", carry, out, env={"PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["ok"] and summary["dry_run"]
    status = {s["step"]: s for s in summary["steps"]}
    assert status["kernels"]["status"] == "skipped" and "joined and verified" in status["kernels"]["note"]
    assert "einops" in (out / "logs" / "deps.log").read_text()
    assert all(status[s]["status"] == "ok" for s in ("env", "pytest", "train-fp32", "train-bf16", "eval"))

    benches = summary["benchmarks"]
    for name in ("train-fp32", "train-bf16"):  # every model, bf16 too (the CPU LSTM runs in fp32 under it)
        results = benches[name]["results"]
        timed = {r["model"]: r for r in results if "ms_per_step" in r}
        assert set(MODELS) <= set(timed), name
        assert all(r["ms_per_step"] > 0 and r["steps_per_s"] > 0 and r["params"] > 0 for r in timed.values())
        assert timed["dt"]["x_dt"] == pytest.approx(1.0)
        assert {r["backbone"] for r in results} >= set(available_backbones())
        assert all("error" not in r or r["error"].startswith("skipped: kernel path needs CUDA") for r in results)
    evaluated = {(r["model"], r["mode"]) for r in benches["eval"]["results"] if r.get("env_steps_per_s", 0) > 0}
    assert {m for m, _ in evaluated} >= set(MODELS)
    assert ("dmamba", "recurrent") in evaluated and ("dt", "recurrent") not in evaluated
    compiled = [r for r in benches["train-fp32-compile"]["results"] if "ms_per_step" in r]
    assert compiled and all(r["ms_per_step"] > 0 for r in compiled)

    markdown = (out / "gpu_check.md").read_text()
    assert "all steps passed" in markdown
    for model in MODELS:
        assert f"| {model} |" in markdown or f"| {model} (torch) |" in markdown
