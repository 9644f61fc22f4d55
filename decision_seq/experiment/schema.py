"""Typed schema of the Hydra configs: dataclasses registered in Hydra's ConfigStore.

The YAML files under conf/ hold every default value; these dataclasses hold only the types (most
fields are MISSING here), so Hydra refuses a wrongly typed override (`dataset.targets=[abc]`,
`trainer.steps=many`) with the key named, and an unknown key (`trainer.stepz=5`). Value ranges are
checked afterwards, once, by `decision_seq.experiment.validation`.

`train.yaml` and `eval.yaml` put `train_schema` / `eval_schema` first in their defaults lists;
`register_configs()` runs when the config package `decision_seq.conf` is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class NetConfig:
    """Constructor arguments of the trajectory model (sizes read from the dataset are added at run time)."""

    _target_: str = MISSING
    embed_dim: int = MISSING
    dropout: float = MISSING
    backbone: str = MISSING
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # checked against the backbone's signature


@dataclass
class ModelConfig:
    name: str = MISSING
    context_len: int = MISSING
    net: NetConfig = field(default_factory=NetConfig)


@dataclass
class DatasetConfig:
    name: str = MISSING
    id: str = MISSING
    task: str | None = None  # the D4RL task (hopper-medium, ...) a dataset reproduces; null for others
    download: bool = False
    targets: list[float] | None = None
    rtg_scale: float = MISSING
    top_fraction: float | None = None  # filtered %BC: train on the best episodes holding this share of the steps


@dataclass
class TrainerConfig:
    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    betas: list[float] = MISSING
    warmup_steps: int = MISSING
    lr_schedule: str = MISSING  # constant | cosine_tokens
    warmup_tokens: int = MISSING
    final_tokens: int = MISSING
    grad_clip: float = MISSING
    device: str = MISSING
    bf16: bool = MISSING
    compile: bool = MISSING
    num_threads: int | None = None
    log_every: int = MISSING
    checkpoint_every: int = MISSING
    keep_checkpoints: int = MISSING
    resume: Any = False  # false | true | a run dir or .pt path
    progress: bool = MISSING
    status_every_sec: float = MISSING
    skip_nonfinite: bool = MISSING
    stop_signals: list[Any] = MISSING  # names (SIGTERM) or numbers


@dataclass
class LoggerConfig:
    kind: str = MISSING
    project: str | None = None
    entity: str | None = None
    mode: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    targets: list[float] | None = None
    episodes: int = MISSING
    num_envs: int | None = None
    max_steps: int | None = None  # cap on an evaluation episode's steps; None = the env's own limit
    mode: str = MISSING
    discrete_action: str = MISSING  # sample | argmax: how discrete actions are picked from the logits
    progress: bool = MISSING


@dataclass
class TrainEvalConfig(EvalConfig):
    # Any, not list[float] | None: train.yaml sets it to the interpolation ${dataset.targets}, which OmegaConf
    # cannot merge into a typed list. The validation pass checks its values.
    targets: Any = None
    every: int = MISSING


@dataclass
class TrainConfig:
    seed: int = MISSING
    # Per-task settings of a protocol (e.g. experiment=dmamba-paper): task -> {setting: value}, read by
    # interpolations such as ${oc.select:"per_task.${dataset.task}.lr",1e-4} so a sweep resolves them per job.
    per_task: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)


@dataclass
class EvalDatasetConfig:
    download: bool = False


@dataclass
class EvalAppConfig:
    checkpoint: str = MISSING
    seed: int = MISSING
    device: str = MISSING
    dataset: EvalDatasetConfig = field(default_factory=EvalDatasetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalAppConfig)
