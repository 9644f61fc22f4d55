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


@pytest.fixture(scope="module")
def tiny_breakout(minari_root) -> str:
    """A 120-step Breakout set of random play, built locally (no agent): image observations, 4 actions."""
    pytest.importorskip("ale_py", reason="Atari needs the atari extra: pip install 'decision-seq[atari]'")
    pytest.importorskip("cv2", reason="gymnasium's AtariPreprocessing needs opencv (the atari extra)")
    from decision_seq.datasets.atari_build import build_atari

    ds = build_atari("Breakout", agent_steps=0, steps=120, random_prob=1.0, seed=0, level="contract", progress=False)
    return ds.id


@pytest.mark.parametrize("backbone", available_backbones())
def test_trains_and_evaluates_on_atari_frames(backbone, tiny_breakout, tmp_path, restore_logging):
    """Every backbone on image observations and discrete actions (the Nature-DQN encoder, cross-entropy),
    evaluated in the ALE with sampled actions; scores gamer-normalized from the dataset's reference scores."""
    run = tmp_path / "run"
    args = [f"model={model_yaml_for(backbone)}", f"dataset.id={tiny_breakout}", "dataset.targets=[5]"]
    args += ["dataset.rtg_scale=1", "model.context_len=3", "model.net.embed_dim=16", "trainer.steps=2"]
    args += ["trainer.batch_size=2", "trainer.warmup_steps=1", "trainer.progress=false", "trainer.device=cpu"]
    args += ["eval.episodes=1", "eval.discrete_action=sample", "eval.max_steps=30", "logger=none"]
    main(["train", *args, f"hydra.run.dir={run}"])
    res = read_results(run)
    [result] = res["evaluations"][-1]["results"]
    assert res["status"] == "completed" and res["backbone"] == backbone
    assert res["protocol"]["eval_env"] == "ALE/Breakout-v5" and res["protocol"]["discrete_action"] == "sample"
    assert 1 <= result["lengths"][0] <= 30
    # gamer normalization: 100 x (return - random 2) / (gamer 30 - random 2)
    assert result["mean_normalized"] == pytest.approx(100 * (result["mean_return"] - 2.0) / 28.0)
