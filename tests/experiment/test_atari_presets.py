"""The Atari presets resolve, per game, to what the official code ran (docs/atari.md): the DT paper's
targets and contexts (kzl/decision-transformer atari/run.sh, mingpt/trainer_atari.py), its optimizer and
token schedule (run_dt_atari.py), Decision Mamba's batch 256 and 10 epochs (atari/train_atari.py), the
seeds 123, 231, 312; and `--dry-run` lists the 12 jobs of each without running anything."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from decision_seq.cli import main
from decision_seq.datasets.naming import dqn_replay_id
from decision_seq.experiment.validation import validate_train_config
from tests.helpers import compose_train

# game -> (DT paper target, context K, DT batch)
OFFICIAL = {"Breakout": (90, 30, 128), "Qbert": (14000, 30, 128), "Pong": (20, 50, 512), "Seaquest": (1150, 30, 128)}
DATASETS = "atari-breakout,atari-qbert,atari-pong,atari-seaquest"


def _resolved(overrides: list[str]):
    cfg = compose_train(overrides)
    OmegaConf.resolve(cfg)
    return cfg


def _epoch_steps(K: int, batch: int) -> int:
    """Updates per epoch of the official DataLoader: ceil((500k - 3K) / batch)."""
    return -(-(500_000 - 3 * K) // batch)


@pytest.mark.parametrize(("preset", "model", "epochs"), [("dt-atari", "dt", 5), ("dmamba-atari", "dmamba", 10)])
def test_atari_presets_per_game(preset, model, epochs):
    swept = compose_train([f"experiment={preset}"], return_hydra=True).hydra.sweeper.params
    assert swept.seed == "123,231,312" and swept.dataset == DATASETS
    for game, (target, K, dt_batch) in OFFICIAL.items():
        cfg = _resolved([f"experiment={preset}", f"dataset=atari-{game.lower()}"])
        batch = dt_batch if model == "dt" else 256
        assert cfg.dataset.id == dqn_replay_id(game) and cfg.dataset.task == game.lower()
        assert list(cfg.eval.targets) == [target] and cfg.dataset.rtg_scale == 1, game
        assert cfg.model.name == model and cfg.model.context_len == K, game
        net = cfg.model.net
        assert (net.embed_dim, net.dropout, net.backbone_kwargs.n_layer) == (128, 0.1, 6)
        if model == "dt":
            assert (net.backbone_kwargs.n_head, net.backbone_kwargs.activation) == (8, "gelu")
        t = cfg.trainer
        assert (t.batch_size, t.lr, list(t.betas), t.weight_decay, t.grad_clip) == (batch, 6e-4, [0.9, 0.95], 0.1, 1.0)
        final_tokens = 2 * (500_000 - 3 * K) * 3 * K  # 2 x len(dataset) x block size
        assert (t.lr_schedule, t.warmup_tokens, t.final_tokens) == ("cosine_tokens", 512 * 20, final_tokens)
        assert t.steps == epochs * _epoch_steps(K, batch), game
        assert cfg.eval.every == _epoch_steps(K, batch)  # one evaluation per epoch
        assert (cfg.eval.episodes, cfg.eval.discrete_action, cfg.eval.mode) == (10, "sample", "window")
        validate_train_config(cfg)  # every value in range (the dataset is not needed for this)


def test_command_line_wins_over_the_preset():
    cfg = _resolved(["experiment=dt-atari", "dataset=atari-pong", "model.context_len=20", "trainer.batch_size=64"])
    assert (cfg.model.context_len, cfg.trainer.batch_size, cfg.trainer.steps) == (20, 64, 4885)


@pytest.mark.parametrize("preset", ["dt-atari", "dmamba-atari"])
def test_dry_run_lists_the_twelve_jobs(preset, capsys, tmp_path):
    main(["train", "-m", f"experiment={preset}", "--dry-run", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    out = capsys.readouterr().out
    assert "4 configuration(s), 12 job(s); nothing was run" in out
    assert all(f"atari-{g.lower()}" in out for g in OFFICIAL) and "123,231,312" in out
    assert not (tmp_path / "sweep").exists()
