"""Decision ConvFormer backbone (Kim et al., ICLR 2024, arXiv 2310.03022): a MetaFormer whose token
mixer is a causal depthwise convolution over the interleaved R, s, a token sequence.

Each block is x + Conv(LN(x)), then x + MLP(LN(x)) with MLP = Linear(4D)-GELU-Linear(D)-Dropout, and a
final LayerNorm follows the stack, as in the official code (gym/models/decision_convformer.py). The
mixer holds three depthwise filters of `window` taps (one per token kind: return, state, action); the
output at a token is the filter of that token's kind applied to the last `window` tokens of every kind.

Incremental inference keeps, per layer, a rolling buffer of the last `window` mixer inputs: `step` is
O(window) per token whatever came before, so `constant_time_step` holds. The last output of a window
depends only on its last n_layer * (window - 1) + 1 tokens, which is all `forward_last` computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decision_seq.models.backbones import register_backbone
from decision_seq.models.backbones.base import BackboneBase, check_depth

N_KINDS = 3  # return, state, action: TokenKind's order in models/trajectory.py


def token_kinds(T: int, first: torch.Tensor | int, device: torch.device | None = None) -> torch.Tensor:
    """Kind (0 = return, 1 = state, 2 = action) of each of T positions, counted from the position `first`
    of the first real token, which is always a return token ((B,) tensor or int) -> (B, T) or (1, T) long.

    Counted from the first real token, not from position 0, so a left-padded row and the same row unpadded
    give each real token the same filter whatever the padding length (TrajectoryModel pads whole steps, so
    there the two counts agree; the backbone contract pads by single tokens)."""
    pos = torch.arange(T, device=device)  # (T,)
    first = torch.as_tensor(first, device=device).reshape(-1, 1)  # (B, 1) or (1, 1)
    return (pos[None, :] - first).remainder(N_KINDS)  # (B, T)


class CausalKindConv(nn.Module):
    """Causal depthwise convolution with one filter per token kind: (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, window: int):
        super().__init__()
        self.d_model, self.window = d_model, window
        # Three nn.Conv1d as in the official code (rtg_conv1d, obs_conv1d, act_conv1d), in TokenKind order;
        # they keep PyTorch's Conv1d init (the official GPT-2 init touches Linear/Embedding/LayerNorm only).
        self.filters = nn.ModuleList(nn.Conv1d(d_model, d_model, window, groups=d_model) for _ in range(N_KINDS))

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filters stacked by kind: weight (N_KINDS, D, W), bias (N_KINDS, D)."""
        weight = torch.stack([f.weight[:, 0] for f in self.filters])  # (3, D, W)
        return weight, torch.stack([f.bias for f in self.filters])  # (3, D, W), (3, D)

    def forward(self, x: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), kinds (B or 1, T) long -> (B, T, D)."""
        # Windows of the last W tokens times the filter of each position's kind. Written with unfold
        # rather than F.conv1d, whose grouped float64 path on CPU is far slower (the tests run in float64).
        xp = F.pad(x, (0, 0, self.window - 1, 0))  # (B, W-1+T, D): zeros before the first token
        windows = xp.unfold(1, self.window, 1)  # (B, T, D, W)
        weight, bias = self._stacked()
        return (windows * weight[kinds]).sum(-1) + bias[kinds]  # (B, T, D)

    def last(self, x: torch.Tensor, kind: int) -> torch.Tensor:
        """Output at the last position only: x (B, T, D), the last token of kind `kind` -> (B, D)."""
        W = self.window
        f = self.filters[kind]
        window = x[:, -W:]  # (B, <=W, D)
        taps = f.weight[:, 0, W - window.shape[1] :].transpose(0, 1)  # (<=W, D): the taps that see tokens
        return (window * taps).sum(1) + f.bias  # (B, D)


class ConvFormerBlock(nn.Module):
    """MetaFormer block of the official code: x + Conv(LN(x)), then x + MLP(LN(x)); no dropout after the mixer."""

    def __init__(self, d_model: int, window: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.conv = CausalKindConv(d_model, window)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, kinds: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D), kinds (B or 1, T), pad (B, T, 1) bool (True = padding) or None -> (B, T, D)."""
        h = self.ln_1(x)
        if pad is not None:
            # Departure from the official code, which lets padding tokens into the convolution: padded mixer
            # inputs are zeroed, which is what the causal zero padding shows an unpadded sequence, so real
            # outputs equal those of the unpadded sequence whatever the padding holds.
            h = h.masked_fill(pad, 0.0)
        x = x + self.conv(h, kinds)
        return x + self.mlp(self.ln_2(x))

    def step(self, x: torch.Tensor, kind: int, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token x (B, D) of kind `kind`; buffer (B, W, D) holds the last W mixer inputs (zeros before
        the first token) -> (y (B, D), the buffer shifted by this token's input)."""
        buffer = torch.cat([buffer[:, 1:], self.ln_1(x)[:, None]], dim=1)  # (B, W, D)
        x = x + self.conv.last(buffer, kind)
        return x + self.mlp(self.ln_2(x)), buffer


@register_backbone("conv")
class ConvFormerBackbone(BackboneBase):
    """Stack of Decision ConvFormer blocks and a final LayerNorm; defaults of the official gym code
    (3 layers, window 6)."""

    constant_time_step = True  # `step` keeps a fixed buffer of the last `window` tokens per layer

    def __init__(self, d_model: int, dropout: float = 0.1, n_layer: int = 3, window: int = 6):
        super().__init__()
        check_depth(n_layer)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window (convolution taps over tokens) must be an integer >= 1, got {window!r}")
        self.d_model, self.window = d_model, window
        self.blocks = nn.ModuleList(ConvFormerBlock(d_model, window, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        # GPT-2 init of the Linear layers, as the official code's GPT2PreTrainedModel._init_weights.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def receptive_field(self) -> int:
        """Tokens that reach an output: n_layer * (window - 1) + 1."""
        return len(self.blocks) * (self.window - 1) + 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, T) bool (True = real token; windows are left-padded) -> (B, T, D)."""
        T = x.shape[1]
        if mask is None:
            kinds, pad = token_kinds(T, 0, x.device), None  # (1, T)
        else:
            pad = ~mask.to(torch.bool)  # (B, T)
            kinds = token_kinds(T, pad.sum(1), x.device)  # (B, T): the first real token is a return token
            pad = pad[:, :, None]  # (B, T, 1)
        for block in self.blocks:
            x = block(x, kinds, pad)
        return self.ln_f(x)

    def forward_last(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The last token's output (B, D) of an unpadded window x (B, T, D), equal to forward(x)[:, -1]:
        only the last `receptive_field` tokens enter, and the last block runs for the last token only."""
        T = x.shape[1]
        start = max(0, T - self.receptive_field)
        x = x[:, start:]  # (B, T', D); outputs near its left edge are wrong but never reach the last one
        kinds = token_kinds(x.shape[1], -start, x.device)  # kinds of the uncropped window
        for block in self.blocks[:-1]:
            x = block(x, kinds, None)
        last = self.blocks[-1]
        y = x[:, -1] + last.conv.last(last.ln_1(x[:, -self.window :]), (T - 1) % N_KINDS)  # (B, D)
        return self.ln_f(y + last.mlp(last.ln_2(y)))

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        """Per-layer zero buffers (B, window, D) of mixer inputs, and the count of tokens fed."""
        ref = self.ln_f.weight
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        buffers = [torch.zeros(batch_size, self.window, self.d_model, device=device, dtype=dtype) for _ in self.blocks]
        return {"buffers": buffers, "t": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One token x_t (B, D) -> (y_t (B, D), state); equals forward's last position over all tokens fed."""
        kind = state["t"] % N_KINDS
        buffers = []
        for block, buffer in zip(self.blocks, state["buffers"], strict=True):
            x_t, buffer = block.step(x_t, kind, buffer)
            buffers.append(buffer)
        return self.ln_f(x_t), {"buffers": buffers, "t": state["t"] + 1}
