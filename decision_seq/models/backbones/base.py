"""The backbone contract: the `Backbone` Protocol and `BackboneBase`, the defaults of its optional part.

A backbone is the sequence mixer of TrajectoryModel (models/trajectory.py): it maps the interleaved
token embeddings (B, T, D) of Decision Transformer / Decision Mamba to hidden states (B, T, D),
causally, and runs token by token for evaluation. Every member of `Backbone` is part of the contract;
the registry (`register_backbone`) refuses a class that lacks one, so evaluation (evaluation/policy.py)
calls them directly instead of probing with `hasattr`.

Required of every backbone (BackboneBase has no default for them):
    forward(x (B, T, D), mask (B, T) bool | None) -> (B, T, D)   causal; mask True = real token, windows
                                                                 are left-padded; padding never changes
                                                                 the outputs of real tokens
    init_state(batch_size, device, dtype) -> state               the state before the first token
    step(x_t (B, D), state) -> (y_t (B, D), state)               y_t == forward(x_0..x_t)[:, -1]

Optional capabilities, with BackboneBase's defaults:
    constant_time_step: bool       True when `step` costs O(1) per token whatever came before (a
                                   recurrent backbone such as Mamba); only those run evaluation's
                                   "recurrent" mode. Default False (a KV cache grows with the episode).
    forward_last(x, features) -> (B, D)
                                   forward(x)[:, -1] of an unpadded window x (B, T, D), free to skip the
                                   work that does not reach the last token. Default: exactly that.
    token_features(x (..., D)) -> (..., F) | None
                                   per-token work that forward_last can reuse when a caller slides a
                                   window over an episode (features of every token are computed once).
                                   Default None: nothing to reuse, forward_last gets features=None.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Backbone(Protocol):
    """A causal sequence backbone (B, T, D) -> (B, T, D) with incremental inference; see the module docstring."""

    constant_time_step: ClassVar[bool]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor: ...

    def init_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Any: ...

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def forward_last(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor: ...

    def token_features(self, x: torch.Tensor) -> torch.Tensor | None: ...


# Every member the Protocol declares, read off the Protocol itself so the two cannot drift apart.
BACKBONE_MEMBERS: tuple[str, ...] = tuple(
    sorted(
        {*Backbone.__annotations__, *(n for n, v in vars(Backbone).items() if callable(v) and not n.startswith("_"))}
    )
)


class BackboneBase(nn.Module):
    """nn.Module base of a backbone: the defaults of the optional capabilities. Subclasses define
    `forward`, `init_state` and `step`."""

    constant_time_step: ClassVar[bool] = False

    def forward_last(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The last token's output (B, D) of an unpadded window x (B, T, D): forward(x)[:, -1]."""
        return self(x)[:, -1]

    def token_features(self, x: torch.Tensor) -> torch.Tensor | None:
        """No per-token work for `forward_last` to reuse."""
        return None


def missing_members(cls: type) -> list[str]:
    """The Backbone members `cls` lacks (nn.Module's placeholder `forward` counts as missing)."""
    missing = []
    for name in BACKBONE_MEMBERS:
        value = getattr(cls, name, None)
        if value is None or value is getattr(nn.Module, name, None):
            missing.append(name)
    return missing


def check_depth(n_layer: int) -> None:
    """Every backbone stacks n_layer >= 1 blocks (0 would build a model that fails at its first forward)."""
    if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
        raise ValueError(f"n_layer must be an integer >= 1, got {n_layer!r}")
