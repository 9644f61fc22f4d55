"""Learning-rate schedules: the default `constant` (DT MuJoCo: linear warmup by steps, then constant) and the
opt-in `cosine_tokens` (DT Atari / minGPT: warmup and cosine by action tokens), its token counter in
checkpoints so a resumed run continues the same learning-rate sequence, and its invalid settings."""

from __future__ import annotations

import math

import pytest
import torch

from decision_seq.experiment.validation import ConfigError, validate_train_config
from decision_seq.training.checkpoint import load_checkpoint
from decision_seq.training.trainer import Trainer, token_lr_multiplier
from tests.helpers import compose_train


class _Model(torch.nn.Module):
    """A quadratic whose loss records the learning rate each update runs with."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.optimizer = None
        self.lrs: list[float] = []

    def loss(self, batch: dict) -> torch.Tensor:
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        return ((self.w - batch["x"]) ** 2).mean()


class _Sampler:
    """Batches whose masks hold `counts[i]` real steps (out of 6), in order; its position is its state."""

    def __init__(self, counts):
        self.counts, self.i = counts, 0

    def sample(self) -> dict:
        mask = torch.zeros(2, 3, dtype=torch.bool)  # (B, K)
        mask.view(-1)[: self.counts[self.i]] = True
        self.i += 1
        return {"x": torch.full((3,), float(self.i)), "mask": mask}

    def state_dict(self) -> dict:
        return {"i": self.i}

    def load_state_dict(self, state: dict) -> None:
        self.i = int(state["i"])


def _trainer(counts, steps, **kwargs) -> tuple[Trainer, _Model]:
    model = _Model()
    trainer = Trainer(model, _Sampler(counts), steps=steps, lr=1.0, progress=False, log_every=1000, **kwargs)
    model.optimizer = trainer.optimizer
    return trainer, model


def test_token_multiplier_exact_values():
    # warmup 100 tokens, cosine over 100..300, floor 0.1, capped past 300
    got = [token_lr_multiplier(t, 100, 300) for t in (0, 25, 50, 100, 200, 250, 280, 300, 10_000)]
    quarter = (2 - math.sqrt(2)) / 4  # 0.5 * (1 + cos(3pi/4))
    assert got == pytest.approx([0.0, 0.25, 0.5, 1.0, 0.5, quarter, 0.1, 0.1, 0.1], rel=1e-12, abs=1e-15)
    assert token_lr_multiplier(280, 100, 300) == 0.1  # 0.5 * (1 + cos(0.9 pi)) = 0.024 is floored
    assert token_lr_multiplier(0, 0, 10) == 1.0  # no warmup: the cosine starts at once, at the full lr


def test_cosine_tokens_follows_the_counted_action_targets():
    """Update n runs at lr x multiplier(tokens of updates 1..n-1), tokens = real (mask) steps per batch."""
    counts = [2, 2, 4, 4, 3, 6]
    trainer, model = _trainer(counts, 6, lr_schedule="cosine_tokens", warmup_tokens=4, final_tokens=12, warmup_steps=99)
    trainer.fit()
    # tokens before each update: 0, 2, 4, 8, 12, 15 -> warmup 0 and 0.5, cosine at progress 0, 0.5, 1, capped
    assert model.lrs == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.1, 0.1], abs=1e-15)
    assert trainer.tokens == sum(counts)


def test_constant_schedule_is_unchanged_and_counts_nothing():
    trainer, model = _trainer([6] * 6, 6, warmup_steps=4)
    trainer.fit()
    assert model.lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert trainer.tokens == 0


def test_resume_continues_the_same_lr_sequence(tmp_path):
    counts = [2, 2, 4, 4, 3, 6, 1, 5]
    kwargs = {"lr_schedule": "cosine_tokens", "warmup_tokens": 4, "final_tokens": 20}
    full, full_model = _trainer(counts, 8, **kwargs)
    full.fit()

    first, _ = _trainer(counts, 8, checkpoint_every=4, checkpoint_dir=tmp_path, keep_checkpoints=10, **kwargs)
    first.steps = 4  # stop after the checkpoint at step 4, as a preempted run would
    first.fit()
    ckpt = load_checkpoint(tmp_path / "step_00000004.pt")
    assert ckpt["tokens"] == 12

    resumed, resumed_model = _trainer(counts, 8, **kwargs)
    resumed.load_state_dict(ckpt)
    resumed.fit()
    assert resumed_model.lrs == full_model.lrs[4:]  # bit-identical, not approximately
    assert torch.equal(resumed_model.w, full_model.w) and resumed.tokens == full.tokens == sum(counts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_schedule": "cosine"}, "trainer.lr_schedule=cosine: valid values: constant, cosine_tokens"),
        ({"warmup_tokens": -1}, "trainer.warmup_tokens=-1: must be an integer >= 0"),
        (
            {"lr_schedule": "cosine_tokens", "warmup_tokens": 10, "final_tokens": 10},
            "trainer.final_tokens=10: must be > trainer.warmup_tokens=10",
        ),
    ],
)
def test_invalid_schedule_settings_are_one_line(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        _trainer([1], 1, **kwargs)
    overrides = [f"trainer.{k}={v}" for k, v in kwargs.items()]
    with pytest.raises(ConfigError) as err:
        validate_train_config(compose_train(overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
