"""The paper presets resolve, per dataset, to the settings the official code ran (issue table in
docs/protocols.md): Decision Mamba's per-task embed dim and lr, its seeds and five targets; the DT
paper's three seeds and two targets; Decision ConvFormer's four targets and readme settings; the
`backbones` sweep over every model YAML; and `--dry-run` shows them without running anything."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from decision_seq.cli import main
from decision_seq.conf import model_yamls
from tests.helpers import compose_train

HOPPER = [1800, 3600, 7200, 36000, 72000]
HALFCHEETAH = [6000, 12000, 24000, 120000, 240000]
WALKER2D = [2500, 5000, 10000, 50000, 100000]
# The official gym/run_experiments.sh and gym/util/trainer.py: task -> (embed dim, lr, targets).
DMAMBA_OFFICIAL = {
    "hopper-medium": (256, 1e-4, HOPPER),
    "hopper-medium-replay": (256, 1e-4, HOPPER),
    "hopper-medium-expert": (128, 1e-3, HOPPER),
    "halfcheetah-medium": (128, 1e-3, HALFCHEETAH),
    "halfcheetah-medium-replay": (128, 1e-3, HALFCHEETAH),
    "halfcheetah-medium-expert": (128, 1e-3, HALFCHEETAH),
    "walker2d-medium": (128, 1e-4, WALKER2D),
    "walker2d-medium-replay": (128, 1e-3, WALKER2D),
    "walker2d-medium-expert": (128, 1e-3, WALKER2D),
}
DT_TARGETS = {"hopper": [3600, 1800], "halfcheetah": [12000, 6000], "walker2d": [5000, 2500]}


def _resolved(overrides: list[str]):
    cfg = compose_train(overrides)
    OmegaConf.resolve(cfg)
    return cfg


@pytest.mark.parametrize("prefix", ["", "d4rl-"])  # our rebuilds and the imported D4RL data
def test_dmamba_paper_per_task_settings(prefix):
    swept = compose_train(["experiment=dmamba-paper"], return_hydra=True).hydra.sweeper.params
    assert swept.seed == "12,23,34,45,51"
    assert sorted(swept.dataset.split(",")) == sorted(DMAMBA_OFFICIAL)
    for task, (embed, lr, targets) in DMAMBA_OFFICIAL.items():
        cfg = _resolved(["experiment=dmamba-paper", f"dataset={prefix}{task}"])
        assert cfg.dataset.task == task
        assert (cfg.model.net.embed_dim, cfg.trainer.lr, list(cfg.eval.targets)) == (embed, lr, targets), task
        assert cfg.model.name == "dmamba" and cfg.model.net.backbone_kwargs.n_layer == 3
        assert cfg.model.context_len == 20 and cfg.eval.episodes == 100


def test_dmamba_paper_falls_back_off_the_table_and_yields_to_the_command_line():
    cfg = _resolved(["experiment=dmamba-paper", "dataset=default"])  # not a D4RL task: the defaults
    assert (cfg.model.net.embed_dim, cfg.trainer.lr, list(cfg.eval.targets)) == (128, 1e-4, [-150, -400])
    cfg = _resolved(["experiment=dmamba-paper", "dataset=hopper-medium", "trainer.lr=3e-4"])
    assert cfg.trainer.lr == 3e-4 and cfg.model.net.embed_dim == 256


def test_dt_paper_protocol():
    swept = compose_train(["experiment=dt-paper"], return_hydra=True).hydra.sweeper.params
    assert swept.seed == "range(3)"
    for task in DMAMBA_OFFICIAL:
        cfg = _resolved(["experiment=dt-paper", f"dataset={task}"])
        assert list(cfg.eval.targets) == DT_TARGETS[task.split("-")[0]], task
        assert (cfg.model.net.embed_dim, cfg.trainer.lr, cfg.trainer.steps, cfg.eval.episodes) == (
            128,
            1e-4,
            100_000,
            100,
        )


def test_dry_run_prints_every_job_and_runs_nothing(capsys, tmp_path):
    main(["train", "-m", "experiment=dmamba-paper", "--dry-run", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    out = capsys.readouterr().out
    assert "9 configuration(s), 45 job(s); nothing was run" in out
    rows = [line for line in out.splitlines() if "dmamba" in line and "medium" in line]
    assert len(rows) == 9
    hopper = next(r for r in rows if "│ hopper-medium " in r)
    assert (
        "256" in hopper and "0.0001" in hopper and "1800,3600,7200,36000,72000" in hopper and "12,23,34,45,51" in hopper
    )
    assert not (tmp_path / "sweep").exists()


# The official DC code (gym/utils.py get_env_info): four targets per env; the readme's hopper-medium line.
DC_TARGETS = {
    "hopper": [3600, 7200, 36000, 72000],
    "halfcheetah": [12000, 24000, 120000, 240000],
    "walker2d": [5000, 10000, 50000, 100000],
}


def test_dc_paper_protocol():
    swept = compose_train(["experiment=dc-paper"], return_hydra=True).hydra.sweeper.params
    assert swept.seed == "range(5)"
    assert sorted(swept.dataset.split(",")) == sorted(DMAMBA_OFFICIAL)
    for task in DMAMBA_OFFICIAL:
        cfg = _resolved(["experiment=dc-paper", f"dataset={task}"])
        assert cfg.model.name == "dc" and cfg.model.net.backbone_kwargs.window == 6
        assert list(cfg.eval.targets) == DC_TARGETS[task.split("-")[0]], task
        expected = (8, 256, 1e-4) if task == "hopper-medium" else (20, 128, 1e-3)
        assert (cfg.model.context_len, cfg.model.net.embed_dim, cfg.trainer.lr) == expected, task
        assert (cfg.trainer.steps, cfg.trainer.warmup_steps, cfg.eval.episodes) == (100_000, 10_000, 100)


def test_backbones_preset_sweeps_every_model_yaml_under_one_optimizer():
    swept = compose_train(["experiment=backbones"], return_hydra=True).hydra.sweeper.params
    every_model = list(model_yamls())
    assert sorted(swept.model.split(",")) == every_model  # a new model YAML must join the sweep
    assert sorted(swept.dataset.split(",")) == sorted(DMAMBA_OFFICIAL) and swept.seed == "range(5)"
    for model in every_model:
        cfg = _resolved(["experiment=backbones", f"model={model}", "dataset=hopper-medium"])
        assert (cfg.trainer.lr, cfg.trainer.steps, cfg.eval.episodes) == (1e-4, 100_000, 100), model
