"""Token encoders of TrajectoryModel: observations and actions -> embeddings (..., D).

The observation encoder is chosen from the observation shape. Vector observations (S,) get the linear
embedding of the Decision Transformer (Chen et al. 2021); image observations (the DT Atari code's
Nature-DQN convs over stacked 84x84 frames) arrive with the Atari datasets, and until then any other
shape is a clear error. Actions: discrete ones are embedded by index, as in the DT Atari code;
continuous ones linearly, as in its MuJoCo code.

Each encoder is a plain module that TrajectoryModel stores under its historical attribute name
(`embed_state`, `embed_action`), so state_dict keys and checkpoints are those of the single-file model.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def observation_encoder(obs_shape: Sequence[int], embed_dim: int) -> nn.Module:
    """Encoder of observations of shape `obs_shape` (without batch / time dims) -> (..., embed_dim)."""
    shape = tuple(int(n) for n in obs_shape)
    if len(shape) == 1 and shape[0] >= 1:
        return nn.Linear(shape[0], embed_dim)  # (..., S) -> (..., D)
    raise ValueError(
        f"no observation encoder for observations of shape {shape}: only vector observations (S,) "
        "are supported (image encoders come with the Atari datasets)"
    )


def action_encoder(action_dim: int, discrete: bool, embed_dim: int) -> nn.Module:
    """Encoder of actions: (...,) int indices when `discrete` (action_dim choices), else (..., action_dim)."""
    return nn.Embedding(action_dim, embed_dim) if discrete else nn.Linear(action_dim, embed_dim)
