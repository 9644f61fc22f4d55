"""Atari-shaped data through the shared trainer: stacked uint8 frames, discrete actions, cross-entropy, for
each backbone; and how evaluation picks a discrete action (eval.discrete_action)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from decision_seq.data.episodes import episodes_from_arrays
from decision_seq.data.sampler import SequenceSampler
from decision_seq.evaluation.policy import SequencePolicy, choose_discrete
from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import Trainer

BACKBONE_KW = {"transformer": {"n_layer": 1, "n_head": 2}, "mamba": {"n_layer": 1, "d_state": 4}}


class _Metrics:
    def __init__(self):
        self.records = []

    def log(self, metrics, step):
        self.records.append((step, dict(metrics)))


def _frames_dataset():
    rng = np.random.default_rng(0)
    lengths = (6, 9, 4)
    return episodes_from_arrays(
        [rng.integers(0, 256, (T + 1, 84, 84), dtype=np.uint8) for T in lengths],
        [rng.integers(0, 4, T) for T in lengths],
        [rng.choice([0.0, 1.0], T) for T in lengths],
        discrete=True,
        action_dim=4,
    )


def _model(episodes, backbone):
    torch.manual_seed(0)
    return TrajectoryModel(
        state_dim=episodes.state_dim,
        obs_shape=episodes.obs_shape,
        action_dim=episodes.action_dim,
        discrete=True,
        embed_dim=16,
        max_ep_len=16,
        dropout=0.0,
        backbone=backbone,
        backbone_kwargs=BACKBONE_KW[backbone],
    )


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_one_training_step_on_frames_and_discrete_actions(backbone):
    episodes = _frames_dataset()
    model = _model(episodes, backbone)
    before = copy.deepcopy(model)
    sampler = SequenceSampler(episodes, context_len=4, batch_size=3, rtg_scale=1.0, max_ep_len=16, seed=1)
    # the loss the first step must report: cross-entropy of the untouched model on the sampler's first batch
    batch = SequenceSampler(episodes, context_len=4, batch_size=3, rtg_scale=1.0, max_ep_len=16, seed=1).sample()
    logits = before(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"], batch["mask"])
    expected = torch.nn.functional.cross_entropy(logits[batch["mask"]], batch["actions"][batch["mask"]])
    metrics = _Metrics()
    trainer = Trainer(model, sampler, steps=1, lr=1e-3, warmup_steps=1, log_every=1, logger=metrics, progress=False)
    trainer.fit()
    step, first = metrics.records[0]
    assert step == 1 and first["train/loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(model.embed_state.convs[0].weight, before.embed_state.convs[0].weight)  # convs learn
    assert not torch.equal(model.embed_action.weight, before.embed_action.weight)


def test_choose_discrete_argmax_and_sample():
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, -1.0, 0.0]])
    assert choose_discrete(logits, "argmax").tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    draws = choose_discrete(logits.repeat(4000, 1), "sample", g).view(4000, 2)  # 4000 draws per row
    freq = torch.stack([(draws == a).float().mean(0) for a in range(3)], dim=1)  # (2, 3)
    torch.testing.assert_close(freq, torch.softmax(logits, -1), atol=0.03, rtol=0)
    a = choose_discrete(logits, "sample", torch.Generator().manual_seed(3))
    assert torch.equal(a, choose_discrete(logits, "sample", torch.Generator().manual_seed(3)))  # seeded


def test_policy_samples_reproducibly_and_rejects_unknown_choice():
    episodes = _frames_dataset()
    model = _model(episodes, "transformer").eval()
    frames = torch.from_numpy(episodes.observations[:4]).unsqueeze(0).expand(8, 4, 84, 84)  # (B, 4, 84, 84)
    rtg = torch.ones(8, 1)

    def actions(**kw):
        policy = SequencePolicy(model, batch_size=8, context_len=4, max_steps=5, **kw)
        return torch.stack([policy.act(frames, rtg) for _ in range(3)])  # (3, B)

    greedy = actions(discrete_action="argmax")
    assert (greedy == greedy[:, :1]).all()  # same input, same argmax in every row
    assert torch.equal(actions(discrete_action="sample", seed=4), actions(discrete_action="sample", seed=4))
    with pytest.raises(ValueError, match="eval.discrete_action='greedy' is not available; valid: sample, argmax"):
        actions(discrete_action="greedy")


def test_discrete_action_is_validated():
    from decision_seq.experiment.validation import ConfigError, validate_train_config
    from tests.helpers import compose_train

    cfg = compose_train(["logger=none", "trainer.device=cpu"])
    assert cfg.eval.discrete_action == "argmax"  # greedy by default; the Atari presets sample, as the DT code
    cfg.eval.discrete_action = "greedy"
    with pytest.raises(ConfigError, match="eval.discrete_action=greedy: valid values: sample, argmax"):
        validate_train_config(cfg)
