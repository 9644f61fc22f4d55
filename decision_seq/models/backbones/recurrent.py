"""Recurrent backbones for Decision LSTM (Siebenborn et al. 2022, "How Crucial is Transformer in Decision
Transformer?", arXiv 2211.14655) and its GRU twin.

The Decision Transformer token scheme (R, s, a per step, models/trajectory.py) is fed to torch's own
stacked nn.LSTM / nn.GRU (hidden size = d_model) in place of the transformer; the action is read off
the state token's output as in DT. `step` carries the recurrent state token by token, O(1) per token.

Left padding is made invisible by moving it to the right: each row is rolled left by its padding length,
so its real tokens start at position 0 and meet the zero initial state, the RNN runs, and the outputs
are rolled back. A causal RNN never lets the (now trailing) padding reach a real token's output.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from decision_seq.models.backbones import register_backbone
from decision_seq.models.backbones.base import BackboneBase, check_depth


def roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each row of x (B, T, D) left by shifts (B,): out[b, i] = x[b, (i + shifts[b]) % T]."""
    B, T, D = x.shape
    index = (torch.arange(T, device=x.device)[None, :] + shifts[:, None]).remainder(T)  # (B, T)
    return x.gather(1, index[:, :, None].expand(B, T, D))  # (B, T, D)


class RecurrentBackbone(BackboneBase):
    """A stacked torch RNN (`rnn_class`) over the token sequence: (B, T, D) -> (B, T, D).

    dropout: torch's dropout between stacked layers (none with n_layer = 1, where torch would only warn).
    The paper replaces DT's transformer by an LSTM "keeping the other parts unchanged"; its layer count and
    hidden size are not established here, so the default depth is DT's 3 layers and the hidden size is the
    embedding width (an unverified choice); the top layer's output goes straight to the action head.
    """

    rnn_class: ClassVar[type[nn.RNNBase]]
    constant_time_step = True  # the state is the RNN's (n_layer, B, D) hidden (and cell) state

    def __init__(self, d_model: int, dropout: float = 0.1, n_layer: int = 3):
        super().__init__()
        check_depth(n_layer)
        self.d_model, self.n_layer = d_model, n_layer
        self.rnn = self.rnn_class(
            d_model, d_model, num_layers=n_layer, batch_first=True, dropout=dropout if n_layer > 1 else 0.0
        )

    def _run(self, x: torch.Tensor, state=None):
        """self.rnn(x, state). On the CPU under bf16 autocast the RNN runs in fp32, outside autocast: torch's
        oneDNN LSTM has no bf16 kernel there (it fails to build its primitive), and nn.GRU already runs in
        fp32 under CPU autocast; on CUDA autocast runs both in bf16 as usual."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                if state is not None:
                    state = tuple(s.float() for s in state) if isinstance(state, tuple) else state.float()
                return self.rnn(x.float(), state)
        return self.rnn(x, state)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, T) bool (True = real token; windows are left-padded) -> (B, T, D)."""
        if mask is None:
            return self._run(x)[0]
        pad = (~mask.to(torch.bool)).sum(1)  # (B,) padding length of each row
        y = self._run(roll_rows(x, pad))[0]  # (B, T, D): real tokens first, padding after them
        return roll_rows(y, -pad)  # back in place; outputs at padded positions are meaningless

    def init_state(self, batch_size: int, device=None, dtype=None):
        ref = self.rnn.weight_ih_l0
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        return torch.zeros(self.n_layer, batch_size, self.d_model, device=device, dtype=dtype)  # (L, B, D)

    def step(self, x_t: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        """One token x_t (B, D) -> (y_t (B, D), state); equals forward's last position over all tokens fed."""
        y, state = self._run(x_t[:, None], state)  # (B, 1, D)
        return y[:, 0], state


@register_backbone("lstm")
class LSTMBackbone(RecurrentBackbone):
    """Decision LSTM: stacked nn.LSTM; the state is (h, c), each (n_layer, B, D)."""

    rnn_class = nn.LSTM

    def init_state(self, batch_size: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        h = super().init_state(batch_size, device, dtype)
        return h, torch.zeros_like(h)


@register_backbone("gru")
class GRUBackbone(RecurrentBackbone):
    """The GRU variant: stacked nn.GRU; the state is h (n_layer, B, D)."""

    rnn_class = nn.GRU
