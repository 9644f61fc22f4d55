"""The Backbone contract through the real entry point, for every registered backbone: each one has a model
YAML under conf/model/, trains a few steps and evaluates through `decision-seq train`, and a run resumed
from a mid-run checkpoint ends with exactly the weights of the uninterrupted run (so everything the backbone
trains with lives in its state_dict and the checkpoint).

In process (`decision_seq.cli.main`), which is several times faster than a subprocess per run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from decision_seq.cli import main
from decision_seq.conf import model_yamls
from decision_seq.models.backbones import available_backbones
from tests.helpers import TINY, read_results


def model_yaml_for(backbone: str) -> str | None:
    """The first model YAML (by name) whose network uses `backbone`."""
    for name, path in model_yamls().items():
        if OmegaConf.load(path).net.backbone == backbone:
            return name
    return None


def _train(run: Path, model: str, *extra: str) -> None:
    # one target, one episode: each run ends with a 200-step Pendulum evaluation
    args = [f"model={model}", "seed=1", "logger=none", f"hydra.run.dir={run}", *TINY, "eval.targets=[-150]"]
    main(["train", *args, "eval.episodes=1", *extra])


@pytest.mark.parametrize("backbone", available_backbones())
def test_trains_evaluates_and_resumes_exactly(backbone, pendulum_dataset_id, tmp_path, restore_logging):
    model = model_yaml_for(backbone)
    assert model is not None, f"backbone {backbone!r} has no model YAML under conf/model/"
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(straight, model, "trainer.steps=4", "trainer.checkpoint_every=2", "eval.every=4")
    res = read_results(straight)
    assert res["status"] == "completed" and res["backbone"] == backbone and res["steps"] == 4
    [evaluation] = res["evaluations"]
    assert evaluation["step"] == 4 and all(math.isfinite(r["mean_normalized"]) for r in evaluation["results"])

    mid = straight / "checkpoints" / "step_00000002.pt"
    _train(resumed, model, "trainer.steps=4", "trainer.checkpoint_every=2", "eval.every=0", f"trainer.resume={mid}")
    assert read_results(resumed)["steps"] == 4
    want = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    got = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=f"{backbone}: {name} differs")
