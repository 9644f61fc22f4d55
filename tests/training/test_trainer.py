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
