"""Every config group composes, and every model config instantiates with runtime sizes injected."""

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides):
    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize("group", ["model", "dataset", "trainer", "logger", "experiment"])
def test_every_option_composes(group):
    assert options(group), f"conf/{group} is empty"
    for opt in options(group):
        cfg = _compose([f"{group}={opt}"])
        OmegaConf.resolve(cfg)
        assert cfg.model.name and cfg.dataset.id and cfg.trainer.steps > 0


@pytest.mark.parametrize("model", options("model"))
def test_model_configs_instantiate(model):
    cfg = _compose([f"model={model}"])
    net = hydra.utils.instantiate(cfg.model.net, state_dim=3, action_dim=1, max_ep_len=200, _convert_="all")
    assert sum(p.numel() for p in net.parameters()) > 0
    assert net.backbone_name == cfg.model.net.backbone


def test_dataset_entries_match_remote_mujoco_ids():
    ids = {OmegaConf.load(CONF / "dataset" / f"{d}.yaml").id for d in options("dataset")}  # composing: test above
    for env in ("halfcheetah", "hopper", "walker2d"):
        for level in ("simple", "medium", "expert"):
            assert f"mujoco/{env}/{level}-v0" in ids


def test_unknown_option_is_rejected():
    with pytest.raises(Exception, match=r"Available options in 'model':\s+" + r"\s+".join(options("model"))):
        _compose(["model=nope"])


def test_eval_config_requires_checkpoint():
    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        cfg = compose(config_name="eval")
    assert OmegaConf.is_missing(cfg, "checkpoint")
