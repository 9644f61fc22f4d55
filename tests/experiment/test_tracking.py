"""Experiment tracking: W&B never stops a run, and says one line about where its run is."""

from __future__ import annotations

import logging

from decision_seq.experiment.tracking import make_logger


def test_wandb_online_without_network_falls_back_to_offline(monkeypatch, tmp_path, caplog):
    import wandb

    modes = []

    class FakeRun:
        dir = str(tmp_path / "wandb" / "run" / "files")

    def fake_init(mode, **kwargs):
        modes.append(mode)
        if mode == "online":
            raise wandb.errors.CommError("network unreachable")
        return FakeRun()

    monkeypatch.setattr(wandb, "init", fake_init)
    with caplog.at_level(logging.WARNING):
        logger = make_logger("wandb", project="p", config={}, out_dir=tmp_path, mode="online")
    assert modes == ["online", "offline"] and logger.mode == "offline"
    assert caplog.text.count("logging offline instead") == 1


def test_wandb_offline_says_one_line_and_stays_quiet(tmp_path, caplog, capfd):
    with caplog.at_level(logging.INFO, logger="decision_seq"):
        logger = make_logger("wandb", project="p", config={"a": 1}, out_dir=tmp_path, mode="offline")
        logger.log({"train/loss": 1.0}, step=1)
        logger.finish()
    lines = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("W&B run (offline) in ") and "wandb sync" in lines[0]
    out, err = capfd.readouterr()
    assert "wandb:" not in out + err  # none of W&B's own banner, sync hints or history tables
