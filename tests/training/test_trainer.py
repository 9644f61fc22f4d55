"""Trainer pieces that need no data: AdamW's weight-decay groups over the real models."""

from __future__ import annotations

import pytest
import torch

from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import param_groups


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_no_weight_decay_on_norms_biases_embeddings_alog_d(backbone):
    torch.manual_seed(0)
    model = TrajectoryModel(state_dim=3, action_dim=2, embed_dim=16, max_ep_len=50, backbone=backbone,
                            backbone_kwargs={"n_layer": 2})
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
