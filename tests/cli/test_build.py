"""decision_seq.cli.build: the `datasets build` arguments, and a tiny build from the command line that
`decision-seq train` then trains on."""

from __future__ import annotations

import argparse

import pytest

from decision_seq.cli.build import add_build_arguments, run_build
from decision_seq.datasets.naming import LEVELS
from decision_seq.datasets.sac.config import BuildConfig, parse_levels
from tests.helpers import TINY, cli, read_results

ENV = "Pendulum-v1"
NS = "test-build-cli"
# Tiny budget: 200 SAC updates, 3 snapshots; Pendulum episodes are 200 steps, so 400 steps = 2 episodes.
TINY_FLAGS = [
    "--train-steps",
    "300",
    "--steps-per-level",
    "400",
    "--snapshot-every",
    "100",
    "--eval-episodes",
    "1",
    "--reference-episodes",
    "1",
    "--learning-starts",
    "100",
    "--seed",
    "0",
    "--namespace",
    NS,
    "--no-progress",
]


def test_build_arguments_defaults():
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    args = parser.parse_args(["Hopper-v5"])
    assert args.env == "Hopper-v5" and parse_levels(args.levels) == list(LEVELS)
    defaults = BuildConfig()
    assert (args.train_steps, args.steps_per_level, args.snapshot_every, args.seed, args.namespace) == (
        defaults.train_steps,
        defaults.steps_per_level,
        defaults.snapshot_every,
        0,
        "decision-seq",
    )
    assert args.work_dir is None and not args.overwrite and not args.no_progress


@pytest.mark.slow  # ~16 s: a SAC build, then a training run on it
def test_run_build_then_train_cli(tmp_path, fresh_minari_root, capsys):
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    args = parser.parse_args([ENV, "--levels", "medium", *TINY_FLAGS, "--work-dir", str(tmp_path / "work")])
    assert run_build(args) == 0
    out = capsys.readouterr().out
    dataset_id = f"{NS}/pendulum/medium-v0"
    assert dataset_id in out and "normalized" in out
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_build(args)

    run = tmp_path / "train"
    cli(
        "train",
        f"dataset.id={dataset_id}",
        "dataset.name=factory",
        "dataset.targets=null",
        "trainer.steps=10",
        "eval.every=0",
        "eval.episodes=1",
        "logger=none",
        *[o for o in TINY if not o.startswith(("eval.episodes=", "eval.targets="))],
        f"hydra.run.dir={run}",
    )
    results = read_results(run)
    assert results["status"] == "completed" and results["dataset"]["id"] == dataset_id
    assert results["dataset"]["steps"] == 400
