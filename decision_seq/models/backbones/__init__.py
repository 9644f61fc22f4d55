"""Backbone registry: name -> class. The contract every backbone satisfies is `Backbone` (base.py).

Adding a backbone is one module in this package (a `BackboneBase` subclass decorated with
`@register_backbone("name")`) plus one YAML file under conf/model/; modules here are imported
automatically, and the registry-wide contract tests (tests/models/test_backbones.py) pick it up.
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from decision_seq.models.backbones.base import BACKBONE_MEMBERS, Backbone, BackboneBase, missing_members

__all__ = [
    "Backbone",
    "BackboneBase",
    "available_backbones",
    "build_backbone",
    "get_backbone_class",
    "register_backbone",
]

_REGISTRY: dict[str, type[nn.Module]] = {}
_discovered = False


def register_backbone(name: str):
    """Class decorator adding a backbone to the registry under `name`; refuses a class that is not an
    nn.Module or lacks a member of the `Backbone` Protocol."""

    def wrap(cls):
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"backbone {name!r}: {cls!r} is not an nn.Module class (subclass BackboneBase)")
        missing = missing_members(cls)
        if missing:
            raise TypeError(
                f"backbone {name!r} ({cls.__qualname__}) does not satisfy the Backbone protocol: missing "
                f"{', '.join(missing)} (members: {', '.join(BACKBONE_MEMBERS)}; BackboneBase gives the optional ones)"
            )
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
    """Names of every registered backbone, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_backbone_class(name: str) -> type[nn.Module]:
    """The class registered as `name`; an unknown name raises an error listing the valid ones."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(available_backbones())}") from None


def build_backbone(name: str, d_model: int, **kwargs) -> nn.Module:
    """Instantiate backbone `name` (a `Backbone`) with model width `d_model` and its own keyword arguments."""
    return get_backbone_class(name)(d_model=d_model, **kwargs)
