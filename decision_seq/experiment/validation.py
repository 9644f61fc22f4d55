"""One validation pass over a composed config, before any dataset is loaded or model built.

Hydra and the typed schema (`experiment.schema`) already refuse wrong types and unknown keys; this pass
checks every value with a valid range, so a bad value costs seconds and one line, never a training run:
`ConfigError("trainer.steps=-1: must be an integer >= 1")`. The backbone's own arguments are checked
by building the backbone on PyTorch's meta device (no memory, no arithmetic), so each backbone states
its own rules once, in its constructor (e.g. the transformer's embed_dim divisible by n_head).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from decision_seq.evaluation.policy import DISCRETE_ACTIONS, EVAL_MODES

LOGGER_KINDS = ("wandb", "none")
WANDB_MODES = ("online", "offline", "disabled")


class ConfigError(ValueError):
    """A config value outside its valid range: one line naming the key, the value and what is valid."""


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class _Checker:
    """Collects `key=value: what is valid` messages."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, key: str, value: Any, valid: str) -> None:
        self.errors.append(f"{key}={_show(value)}: {valid}")

    def int_at_least(self, key: str, value: Any, low: int, note: str = "") -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(key, value, f"must be an integer >= {low}{note}")

    def optional_int_at_least(self, key: str, value: Any, low: int, note: str) -> None:
        if value is not None:
            self.int_at_least(key, value, low, note)

    def number(
        self,
        key: str,
        value: Any,
        *,
        low: float,
        low_open: bool,
        high: float | None = None,
        high_open: bool = True,
        note: str = "",
    ) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            rng = f"{'>' if low_open else '>='} {low:g}"
            if high is not None:
                rng += f" and {'<' if high_open else '<='} {high:g}"
            self.fail(key, value, f"must be a finite number {rng}{note}")

    def choice(self, key: str, value: Any, choices: Iterable[str]) -> None:
        choices = tuple(choices)
        if value not in choices:
            self.fail(key, value, f"valid values: {', '.join(choices)}")

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigError("; ".join(self.errors))


def _targets(c: _Checker, key: str, value: Any) -> None:
    """Return targets: null (derive from the dataset) or a non-empty list of finite numbers."""
    if value is None:
        return
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value)
    if not isinstance(value, list) or not value:
        c.fail(
            key,
            value,
            "give a non-empty list of target returns, e.g. [3600,1800], or null to derive them "
            "from the dataset's returns",
        )
        return
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            c.fail(key, value, f"every target must be a finite number; {_show(v)} is not")
            return


def _device(c: _Checker, key: str, value: Any) -> None:
    from decision_seq.training.trainer import device_problem

    problem = device_problem(value)
    if problem is not None:
        c.fail(key, value, problem)


def _signals(c: _Checker, key: str, value: Any) -> None:
    """Each entry is a signal the trainer can install a handler for (its own parser decides)."""
    from decision_seq.training.trainer import signal_numbers

    for name in value:
        try:
            if isinstance(name, bool):  # YAML's true/false would pass as signal numbers 1/0
                raise ValueError(name)
            signal_numbers([name])
        except ValueError:
            c.fail(key, value, f"{_show(name)} is not a signal; valid e.g. SIGTERM, SIGINT, SIGUSR1, SIGUSR2")
            return


def _schedule(c: _Checker, t: DictConfig) -> None:
    """lr_schedule and its token counts (the trainer's own rule, `schedule_problem`)."""
    from decision_seq.training.trainer import schedule_problem

    problem = schedule_problem(t.lr_schedule, t.warmup_tokens, t.final_tokens)
    if problem is not None:
        c.errors.append(problem)


def _resume(c: _Checker, key: str, value: Any) -> None:
    """false / true / a run dir or .pt file that exists (true is checked by the recipe, in the run dir)."""
    if value in (False, True, None, "false", "true"):
        return
    if not Path(str(value)).exists():
        c.fail(key, value, "no such run dir or checkpoint file; valid: false, true, or an existing run dir / .pt path")


def check_backbone(c: _Checker, net: DictConfig, eval_mode: str | None) -> None:
    """The backbone exists, its arguments are its constructor's and have valid values, and it supports
    the evaluation mode. Built on the meta device: the constructor's own checks run, nothing is allocated."""
    import torch

    from decision_seq.models.backbones import available_backbones, get_backbone_class

    name = net.backbone
    if name not in available_backbones():
        c.fail("model.net.backbone", name, f"valid backbones: {', '.join(available_backbones())}")
        return
    cls = get_backbone_class(name)
    kwargs = OmegaConf.to_container(net.backbone_kwargs, resolve=True) or {}
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if p not in ("self", "d_model", "dropout")]
    unknown = [k for k in kwargs if k not in params or k in ("d_model", "dropout")]
    if unknown:
        c.fail(
            f"model.net.backbone_kwargs.{unknown[0]}",
            kwargs[unknown[0]],
            f"not an argument of backbone {name!r}; valid: {', '.join(accepted)}",
        )
        return
    try:
        with torch.device("meta"):
            cls(d_model=net.embed_dim, dropout=net.dropout, **kwargs)
    except (ValueError, TypeError, RuntimeError) as err:
        c.errors.append(f"model.net.backbone_kwargs ({name} backbone, embed_dim={net.embed_dim}): {err}")
        return
    if eval_mode == "recurrent" and not cls.constant_time_step:
        c.fail(
            "eval.mode",
            eval_mode,
            f"backbone {name!r} has no O(1) recurrent step; use eval.mode=window "
            f"(recurrent works with: {', '.join(_recurrent_backbones())})",
        )


def _recurrent_backbones() -> list[str]:
    from decision_seq.models.backbones import available_backbones, get_backbone_class

    return [b for b in available_backbones() if get_backbone_class(b).constant_time_step]


def _eval_section(c: _Checker, ev: DictConfig) -> None:
    c.int_at_least("eval.episodes", ev.episodes, 1, " (episodes per target)")
    c.optional_int_at_least("eval.num_envs", ev.num_envs, 1, " or null (all episodes at once)")
    c.optional_int_at_least("eval.max_steps", ev.max_steps, 1, " or null (the env's own episode limit)")
    c.choice("eval.mode", ev.mode, EVAL_MODES)
    c.choice("eval.discrete_action", ev.discrete_action, DISCRETE_ACTIONS)


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming every value of a composed `decision-seq train` config outside its range."""
    c = _Checker()
    c.int_at_least("seed", cfg.seed, 0)

    t = cfg.trainer
    c.int_at_least("trainer.steps", t.steps, 1)
    c.int_at_least("trainer.batch_size", t.batch_size, 1)
    c.number("trainer.lr", t.lr, low=0, low_open=True)
    c.number("trainer.weight_decay", t.weight_decay, low=0, low_open=False)
    if len(t.betas) != 2:
        c.fail("trainer.betas", t.betas, "give two numbers in [0, 1), e.g. [0.9,0.999]")
    else:
        for i, beta in enumerate(t.betas):
            c.number(f"trainer.betas[{i}]", beta, low=0, low_open=False, high=1)
    c.int_at_least("trainer.warmup_steps", t.warmup_steps, 0)
    _schedule(c, t)
    c.number("trainer.grad_clip", t.grad_clip, low=0, low_open=True, note=" (the DT paper uses 0.25)")
    _device(c, "trainer.device", t.device)
    c.optional_int_at_least("trainer.num_threads", t.num_threads, 1, " or null (torch's default)")
    c.int_at_least("trainer.log_every", t.log_every, 1)
    c.number("trainer.status_every_sec", t.status_every_sec, low=0, low_open=True)
    c.int_at_least("trainer.checkpoint_every", t.checkpoint_every, 0, " (0 = only at the end)")
    c.int_at_least("trainer.keep_checkpoints", t.keep_checkpoints, 0)
    _signals(c, "trainer.stop_signals", t.stop_signals)
    _resume(c, "trainer.resume", t.resume)

    m = cfg.model
    c.int_at_least("model.context_len", m.context_len, 1, " (timesteps per window)")
    c.int_at_least("model.net.embed_dim", m.net.embed_dim, 1)
    c.number("model.net.dropout", m.net.dropout, low=0, low_open=False, high=1)

    d = cfg.dataset
    if not isinstance(d.id, str) or d.id.count("/") > 2 or not d.id.strip():
        c.fail(
            "dataset.id",
            d.id,
            "a Minari dataset id such as decision-seq/pendulum/mixed-v0 (see decision-seq datasets list)",
        )
    c.number("dataset.rtg_scale", d.rtg_scale, low=0, low_open=True, note=" (returns-to-go are divided by it)")
    _targets(c, "dataset.targets", d.targets)
    if d.top_fraction is not None:
        c.number(
            "dataset.top_fraction",
            d.top_fraction,
            low=0,
            low_open=True,
            high=1,
            high_open=False,
            note=" (the share of steps of the best episodes to train on; null = all)",
        )
    eval_targets_raw = OmegaConf.to_container(cfg.eval, resolve=False).get("targets")
    if eval_targets_raw != "${dataset.targets}":  # set on its own: check it under its own key
        _targets(c, "eval.targets", cfg.eval.targets)

    _eval_section(c, cfg.eval)
    c.int_at_least("eval.every", cfg.eval.every, 0, " (0 = only at the end)")

    c.choice("logger.kind", cfg.logger.kind, LOGGER_KINDS)
    if cfg.logger.get("mode") is not None:
        c.choice("logger.mode", cfg.logger.mode, WANDB_MODES)

    if not c.errors:  # the backbone check needs sane sizes
        check_backbone(c, m.net, cfg.eval.mode)
    c.raise_if_any()


def validate_eval_config(cfg: DictConfig) -> None:
    """Raise ConfigError for a composed `decision-seq eval` config outside its ranges."""
    c = _Checker()
    c.int_at_least("seed", cfg.seed, 0)
    _device(c, "device", cfg.device)
    if not Path(str(cfg.checkpoint)).exists():
        c.fail(
            "checkpoint",
            cfg.checkpoint,
            "no such file or run dir; give a .pt written by decision-seq train or its run dir",
        )
    _targets(c, "eval.targets", cfg.eval.targets)
    _eval_section(c, cfg.eval)
    c.raise_if_any()


VALIDATORS: dict[str, Callable[[DictConfig], None]] = {"train": validate_train_config, "eval": validate_eval_config}
