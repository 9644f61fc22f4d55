"""Helpers shared by the tests: the real `decision-seq` entry point in a subprocess, tiny configs, results.

Import as `from tests.helpers import cli, TINY, read_results, compose_train`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Overrides that shrink a training run to seconds on the built-in Pendulum dataset.
TINY = [
    "model.context_len=5",
    "model.net.embed_dim=16",
    "model.net.backbone_kwargs.n_layer=1",
    "trainer.batch_size=8",
    "trainer.warmup_steps=5",
    "trainer.log_every=5",
    "trainer.progress=false",
    "eval.episodes=2",
    "eval.targets=[-150,-600]",
    "trainer.device=cpu",
    "trainer.num_threads=1",
]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a `decision-seq` subprocess gets: W&B offline and quiet, full Hydra errors."""
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1", **extra}


def cli(*args: str, timeout: float = 300, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `decision-seq ARGS...` (as `python -m decision_seq`); with check=True a non-zero exit fails the test
    with the command's output."""
    proc = subprocess.run(
        [sys.executable, "-m", "decision_seq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"decision-seq {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def main_in_process(*args: str) -> int:
    """`decision-seq ARGS` in this process, Hydra included (seconds faster than `cli`'s subprocess): its exit
    code. Output goes to the test's capture (capsys); use with the `restore_logging` fixture."""
    from decision_seq.cli import main

    try:
        main(list(args))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    return 0


def read_results(run_dir: Path, name: str = "results.json") -> dict:
    return json.loads((Path(run_dir) / name).read_text())


def compose_train(overrides: list[str] | None = None, config_name: str = "train", return_hydra: bool = False):
    """The composed train (or eval) config, as `decision-seq train` composes it, without running anything
    (with Hydra's own node when `return_hydra`, e.g. for a preset's sweeper params)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []), return_hydra_config=return_hydra)
