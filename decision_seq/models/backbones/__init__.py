"""Backbone registry: name -> class.

A backbone maps token embeddings (B, T, D) to hidden states (B, T, D), causally, and supports
incremental inference:

    forward(x: (B, T, D), mask: (B, T) bool | None) -> (B, T, D)   # mask True = real token
    init_state(batch_size, device, dtype) -> state
    step(x_t: (B, D), state) -> (y_t: (B, D), state)
    constant_time_step: bool class attribute, True when `step` costs O(1) per token (a recurrent
        backbone such as Mamba): only those run evaluation's "recurrent" mode

Optional, for evaluation's window mode (evaluation/policy.py):

    forward_last(x: (B, T, D), features | None) -> (B, D)   # == forward(x)[:, -1], unpadded window
    token_features(x: (..., D)) -> features                  # per-token work forward_last can reuse

Adding a backbone is one module in this package (decorate its class with `@register_backbone("name")`)
plus one YAML file under conf/model/; modules here are imported automatically.
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}
_discovered = False


def register_backbone(name: str):
    """Class decorator adding a backbone to the registry under `name`."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"backbone name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    global _discovered
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _discovered = True


def available_backbones() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_backbone_class(name: str) -> type[nn.Module]:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(_REGISTRY))}") from None


def build_backbone(name: str, d_model: int, **kwargs) -> nn.Module:
    """Instantiate backbone `name` with model width `d_model` and its own keyword arguments."""
    return get_backbone_class(name)(d_model=d_model, **kwargs)
