"""Feed-forward baselines as a backbone: RvS-R (Emmons et al. 2021, arXiv 2112.10751) and behavior cloning.

RvS-R is an MLP on the current state and the return-to-go. In the token scheme of models/trajectory.py
(R_t, s_t, a_t per step) that is an MLP on each token and the token before it: at the state token s_t it
sees exactly (R_t, s_t), and the action head reads a_t off s_t's output as for every backbone. Each
output depends on two tokens only, so the backbone is causal by construction and its `step` keeps one
token. With condition_on_return=False the previous token is dropped: an MLP on s_t alone, i.e. BC.

Departures from RvS: the inputs are TrajectoryModel's token embeddings (a linear embedding of the state
and of the return, plus a learned timestep embedding, then LayerNorm) rather than the raw vectors, and
the MLP's last layer maps to d_model, followed by the model's action head Linear(d_model, A): two linear
maps in a row, equivalent to RvS's single output layer whenever d_model >= A.
"""

from __future__ import annotations

import torch
from torch import nn

from decision_seq.models.backbones import register_backbone
from decision_seq.models.backbones.base import BackboneBase, check_depth


@register_backbone("mlp")
class MLPBackbone(BackboneBase):
    """y_t = MLP([x_{t-1}, x_t]) (x_{-1} = 0), or MLP(x_t) without return conditioning: (B, T, D) -> (B, T, D).

    n_layer hidden layers of `hidden` units with ReLU and dropout after each (RvS: 2 x 1024).
    """

    constant_time_step = True  # `step` keeps the previous token only

    def __init__(
        self,
        d_model: int,
        dropout: float = 0.0,
        n_layer: int = 2,
        hidden: int = 1024,
        condition_on_return: bool = True,
    ):
        super().__init__()
        check_depth(n_layer)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden (units per hidden layer) must be an integer >= 1, got {hidden!r}")
        if not isinstance(condition_on_return, bool):
            raise ValueError(f"condition_on_return must be true or false, got {condition_on_return!r}")
        self.d_model, self.condition_on_return = d_model, condition_on_return
        layers: list[nn.Module] = []
        width = 2 * d_model if condition_on_return else d_model
        for _ in range(n_layer):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, d_model))
        self.net = nn.Sequential(*layers)

    def _inputs(self, prev: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Previous and current tokens (..., D) each -> the MLP's input (..., 2D) or (..., D)."""
        return torch.cat([prev, x], dim=-1) if self.condition_on_return else x

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, T) bool (True = real token; windows are left-padded) -> (B, T, D)."""
        if not self.condition_on_return:
            return self.net(x)
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # (B, T, D): x_{t-1}, zero at t = 0
        if mask is not None:
            # The first real token's predecessor is padding: zero it, as at the start of an unpadded sequence.
            prev_real = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], dim=1).to(torch.bool)  # (B, T)
            prev = prev.masked_fill(~prev_real[:, :, None], 0.0)
        return self.net(self._inputs(prev, x))

    def forward_last(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The last token's output (B, D) of an unpadded window x (B, T, D): the MLP on its last two tokens."""
        prev = x[:, -2] if x.shape[1] > 1 else torch.zeros_like(x[:, -1])  # (B, D)
        return self.net(self._inputs(prev, x[:, -1]))

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        """The previous token (B, D): zeros before the first."""
        ref = self.net[0].weight
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        return torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token x_t (B, D) -> (y_t (B, D), x_t as the next step's previous token)."""
        return self.net(self._inputs(state, x_t)), x_t
