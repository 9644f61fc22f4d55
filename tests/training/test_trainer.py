"""Trainer pieces that need no data: AdamW's weight-decay groups over the real models."""

from __future__ import annotations

import pytest
import torch

from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import param_groups


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_no_weight_decay_on_norms_biases_embeddings_alog_d(backbone):
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=3, action_dim=2, embed_dim=16, max_ep_len=50, backbone=backbone, backbone_kwargs={"n_layer": 2}
    )
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    for n in decayed:
        assert not n.endswith("bias") and "embed_timestep" not in n and "ln" not in n, n
        assert not n.endswith(("A_log", ".D")), n
    assert "embed_state.weight" in decayed and "predict_action.0.weight" in decayed
    decay_ids = {id(p) for p in decay["params"]}
    for m in model.modules():
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.Embedding)):
            assert all(id(p) not in decay_ids for p in m.parameters()), m


@pytest.mark.parametrize("bf16", [True, False])
def test_bf16_autocast_really_runs_on_cpu(bf16, pendulum_dataset_id):
    """trainer.bf16=true must run the forward under bf16 autocast (Linear outputs in bf16, the loss in
    fp32, parameters fp32); false must not."""
    from decision_seq.data.episodes import load_episodes
    from decision_seq.data.sampler import SequenceSampler
    from decision_seq.training.trainer import Trainer

    torch.manual_seed(0)
    episodes = load_episodes(pendulum_dataset_id)
    sampler = SequenceSampler(episodes, context_len=4, batch_size=4, rtg_scale=100.0, max_ep_len=200, seed=0)
    model = TrajectoryModel(
        state_dim=episodes.state_dim,
        action_dim=episodes.action_dim,
        embed_dim=16,
        max_ep_len=200,
        backbone="mamba",
        backbone_kwargs={"n_layer": 1},
    )
    seen = []
    model.embed_state.register_forward_hook(
        lambda mod, inp, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
    )
    losses = []
    loss_fn = model.loss
    model.loss = lambda batch: losses.append(loss_fn(batch)) or losses[-1]
    Trainer(model, sampler, steps=2, warmup_steps=1, device="cpu", bf16=bf16, progress=False).fit()
    assert len(seen) == 2
    assert seen == [(bf16, torch.bfloat16 if bf16 else torch.float32)] * 2
    assert all(loss.dtype == torch.float32 for loss in losses)
    assert all(p.dtype == torch.float32 for p in model.parameters())


class _Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def loss(self, batch: dict) -> torch.Tensor:
        return ((self.w - batch["x"]) ** 2).mean()


class _Sampler:
    def sample(self) -> dict:
        return {"x": torch.zeros(3)}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_status_lines_without_a_live_bar(caplog):
    """progress off (or not a terminal): a plain line per due interval, and one at the end."""
    import logging

    from decision_seq.training.trainer import Trainer, status_line

    with caplog.at_level(logging.INFO, logger="decision_seq.training.trainer"):
        Trainer(
            _Quadratic(), _Sampler(), steps=20, log_every=5, warmup_steps=1, progress=False, status_every_sec=1e-9
        ).fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [ln.split(":")[0] for ln in lines] == [f"step {s}/20 ({5 * s}%)" for s in range(1, 21)]
    assert all("steps/s, ETA " in ln for ln in lines) and lines[-1].split("ETA ")[1].startswith("00:00:00")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="decision_seq.training.trainer"):
        Trainer(
            _Quadratic(), _Sampler(), steps=20, log_every=5, warmup_steps=1, progress=False, status_every_sec=3600
        ).fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 1 and lines[0].startswith("step 20/20 (100%): loss ")  # only the final line
    assert status_line(50, 100, 0.5, 10.0) == (
        "step 50/100 (50%): loss 0.5000, 10.0 steps/s, ETA 00:00:05 (training only, evaluations add to it)"
    )
    assert "ETA ?" in status_line(1, 100, 0.5, 0.0)
