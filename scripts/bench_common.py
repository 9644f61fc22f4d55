"""What scripts/bench_train.py and scripts/bench_eval.py share: the paper configs of every backbone (read from
conf/model/*.yaml), the `--backbones` and `--path` selections, the JSON / Markdown writers, and the
synthetic Hopper-shaped data (scripts/profile_step.py uses it too).

A "row" of a benchmark is one model YAML (dt, dmamba, dmamba2, dc, dlstm, dgru, rvs, bc) and, for the Mamba
mixers, one path: "kernel" (mamba_ssm's CUDA / Triton kernels, use_kernels=True) or "torch" (our pure-PyTorch
code, use_kernels=False). A registered backbone that no YAML names gets a row with its constructor defaults.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from decision_seq.conf import model_yamls
from decision_seq.data.episodes import episodes_from_arrays
from decision_seq.models.backbones import available_backbones
from decision_seq.models.ops.kernels import load_kernels, load_ssd_kernels

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_MODEL = "dt"  # every ratio is relative to this row (1.00x)
# Mixers with a kernel path and a PyTorch path, and the loader that says whether the kernels import.
KERNEL_LOADERS = {"mamba": load_kernels, "mamba2": load_ssd_kernels}
PATHS = ("kernel", "torch", "both")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
S, A = 11, 3  # Hopper's observation and action sizes


def synthetic_episodes(n_episodes: int, length: int, seed: int = 0):
    """Random Hopper-shaped episodes (S=11, A=3): what a training step costs does not depend on the data."""
    rng = np.random.default_rng(seed)
    return episodes_from_arrays(
        [rng.standard_normal((length + 1, S)).astype(np.float32) for _ in range(n_episodes)],
        [rng.uniform(-1, 1, (length, A)).astype(np.float32) for _ in range(n_episodes)],
        [rng.standard_normal(length).astype(np.float32) for _ in range(n_episodes)],
        action_low=-np.ones(A, np.float32),
        action_high=np.ones(A, np.float32),
        dataset_id="synthetic",
    )


@dataclass
class PaperConfig:
    """One model YAML: its name, backbone, K and the TrajectoryModel keyword arguments under `net`."""

    name: str
    backbone: str
    context_len: int
    net: dict = field(default_factory=dict)


@dataclass
class Row:
    """One benchmark candidate: a paper config on one mixer path ("-" where the backbone has one path)."""

    config: PaperConfig
    path: str = "-"
    skip: str | None = None  # why it cannot run here, or None

    @property
    def label(self) -> str:
        return self.config.name if self.path == "-" else f"{self.config.name} ({self.path})"

    def net_kwargs(self) -> dict:
        net = dict(self.config.net)
        if self.path != "-":
            net["backbone_kwargs"] = {**net.get("backbone_kwargs", {}), "use_kernels": self.path == "kernel"}
        return net


def preset_model_overrides(preset: str | None) -> dict:
    """The `model:` block of conf/experiment/<preset>.yaml (e.g. demo: embed 64, 1 layer), {} for None."""
    if preset is None:
        return {}
    path = model_yamls()[REFERENCE_MODEL].parents[1] / "experiment" / f"{preset}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"--preset: no experiment preset {preset!r}; valid: {', '.join(valid)}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False).get("model", {})


def paper_configs(preset: str | None = None) -> list[PaperConfig]:
    """Every model YAML (the reference first, then by backbone and name), plus a default-sized config for
    each registered backbone no YAML uses; with `preset`, each YAML with that experiment preset's model
    overrides applied, as `decision-seq train experiment=<preset> model=<name>` composes them."""
    overrides = preset_model_overrides(preset)
    configs = []
    for name, path in model_yamls().items():
        cfg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(path), overrides), resolve=True)
        net = {k: v for k, v in cfg["net"].items() if k != "_target_"}
        configs.append(PaperConfig(cfg.get("name", name), net["backbone"], int(cfg["context_len"]), net))
    covered = {c.backbone for c in configs}
    configs += [PaperConfig(b, b, 20, {"backbone": b}) for b in available_backbones() if b not in covered]
    return sorted(configs, key=lambda c: (c.name != REFERENCE_MODEL, c.backbone, c.name))


def _names(configs: list[PaperConfig], spec: str, option: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    valid = sorted({c.backbone for c in configs} | {c.name for c in configs})
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SystemExit(f"{option}: unknown name(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(valid)}")
    return names


def select_configs(configs: list[PaperConfig], spec: str | None, exclude: str | None = None) -> list[PaperConfig]:
    """`spec` and `exclude` are comma lists of backbone names (every YAML of that backbone) or model names;
    spec None = all."""
    if spec:
        wanted = _names(configs, spec, "--backbones")
        configs = [c for c in configs if c.backbone in wanted or c.name in wanted]
    if exclude:
        dropped = _names(configs, exclude, "--exclude")
        configs = [c for c in configs if c.backbone not in dropped and c.name not in dropped]
    return configs


def exit_status(results: list[dict]) -> int:
    """1 when a row that should have run failed (skipped rows do not count), else 0."""
    return int(any(not r.get("error", "skipped").startswith("skipped") for r in results))


def expand_paths(configs: list[PaperConfig], path: str, device: torch.device) -> list[Row]:
    """One row per config, two (kernel, torch) for the Mamba mixers under --path both; a kernel row is
    marked skipped where the kernels do not import or the device is not CUDA."""
    rows = []
    for cfg in configs:
        loader = KERNEL_LOADERS.get(cfg.backbone)
        if loader is None:
            rows.append(Row(cfg))
            continue
        for p in ("kernel", "torch") if path == "both" else (path,):
            skip = None
            if p == "kernel" and device.type != "cuda":
                skip = f"kernel path needs CUDA (device is {device})"
            elif p == "kernel" and loader() is None:
                skip = f"mamba_ssm kernels for {cfg.backbone} do not import (build them: scripts/build_mamba_ssm.sh)"
            rows.append(Row(cfg, p, skip))
    return rows


def environment(device: torch.device) -> dict:
    """What the numbers were measured on."""
    try:
        git = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "git": git or None,
        "mamba_kernels": load_kernels() is not None,
        "mamba2_kernels": load_ssd_kernels() is not None,
    }


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, markdown: str, json_path: str | None, md_path: str | None) -> None:
    for path, text in ((json_path, json.dumps(result, indent=2) + "\n"), (md_path, markdown)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
