"""Causal GPT backbone for the Decision Transformer (Chen et al. 2021).

The official DT uses HuggingFace GPT-2 with its position embedding removed (a learned timestep
embedding is added to the tokens instead, in TrajectoryModel). This is the same pre-LayerNorm block
stack written with `scaled_dot_product_attention`, so PyTorch picks its fused attention kernels.

Incremental inference keeps a per-layer key/value cache: `step` on token t equals the last position
of `forward` over tokens 0..t. It is exact for any number of tokens (there is no position embedding
inside the backbone); dropping the oldest tokens of a cache is not exact for more than one layer,
because the cached keys of later layers already saw them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decision_seq.models.backbones import register_backbone
from decision_seq.models.backbones.base import BackboneBase, check_depth

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, D = t.shape
        return t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2)  # (B, T, D) -> (B, nh, T, hs)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(self._split_heads(t) for t in self.qkv(x).split(x.shape[-1], dim=-1))

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, nh, T, hs = y.shape
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, nh * hs)))  # (B, T, D)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._heads(x)  # (B, nh, T, hs)
        p = self.attn_dropout if self.training else 0.0
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self._merge(y)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """x: (B, 1, D); appends this token's key/value to `cache` and attends over all of them."""
        q, k, v = self._heads(x)  # (B, nh, 1, hs)
        if cache.get("k") is not None:
            k = torch.cat([cache["k"], k], dim=2)  # (B, nh, t+1, hs)
            v = torch.cat([cache["v"], v], dim=2)
        cache["k"], cache["v"] = k, v
        return self._merge(F.scaled_dot_product_attention(q, k, v))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of an unpadded window from its projections: k, v (B, T, D), q (B, T, D) (causal)
        or (B, 1, D), the last query alone, which sees every key and needs no mask."""
        heads = [self._split_heads(t) for t in (q, k, v)]
        return self._merge(F.scaled_dot_product_attention(*heads, is_causal=q.shape[1] > 1))

    def window_qkv(self, h: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v projections of h (B, T, D); with `last_only` q for the last token only (1/3 less work)."""
        D = h.shape[-1]
        if not last_only:
            return self.qkv(h).split(D, dim=-1)
        W, b = self.qkv.weight, self.qkv.bias
        return (F.linear(h[:, -1:], W[:D], b[:D]), *F.linear(h, W[D:], b[D:]).split(D, dim=-1))


class MLP(nn.Module):
    def __init__(self, d_model: int, dropout: float, activation: str):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(_ACTIVATIONS)}")
        self.net = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            _ACTIVATIONS[activation](),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def inference(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` without dropout and with ReLU in place (no grad): one large temporary fewer."""
        fc, act, out = self.net[0], self.net[1], self.net[2]
        h = fc(x)
        return out(h.relu_() if isinstance(act, nn.ReLU) else act(h))


class Block(nn.Module):
    """GPT-2 pre-LN block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_head: int, dropout: float, activation: str):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, dropout, activation)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = x + self.attn.step(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))

    def forward_window(self, x: torch.Tensor, qkv: torch.Tensor | None, last_only: bool) -> torch.Tensor:
        """`forward` of an unpadded causal window, optionally from precomputed attention projections of
        ln_1(x), and optionally only for the last token (B, 1, D)."""
        if qkv is None:
            q, k, v = self.attn.window_qkv(self.ln_1(x), last_only)
        else:
            q, k, v = qkv.split(x.shape[-1], dim=-1)
            q = q[:, -1:] if last_only else q
        x = (x[:, -1:] if last_only else x) + self.attn.attend(q, k, v)
        return x + self.mlp.inference(self.ln_2(x))


@register_backbone("transformer")
class TransformerBackbone(BackboneBase):
    """Stack of causal GPT blocks and a final LayerNorm (GPT-2's ln_f), DT paper defaults.

    `step` keeps a KV cache, so it costs O(t) at token t: constant_time_step stays False."""

    def __init__(self, d_model: int, n_layer: int = 3, n_head: int = 1, dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        check_depth(n_layer)
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout, activation) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 initialization, as in the HuggingFace model the official DT uses.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)

    @staticmethod
    def attention_mask(mask: torch.Tensor) -> torch.Tensor:
        """(B, T) bool, True = real token -> (B, 1, T, T) bool, True = may attend.

        Causal, and keys at padded positions are hidden. A padded query still sees itself, so no row is
        fully masked (which would give NaN); padded outputs are never used.
        """
        B, T = mask.shape
        causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()  # (T, T)
        allowed = causal & mask[:, None, :]  # (B, T, T)
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=mask.device)
        return allowed[:, None]  # (B, 1, T, T)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        attn_mask = None if mask is None else self.attention_mask(mask)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_f(x)

    def init_state(self, batch_size: int, device=None, dtype=None) -> list[dict]:
        return [{"k": None, "v": None} for _ in self.blocks]

    def step(self, x_t: torch.Tensor, state: list[dict]) -> tuple[torch.Tensor, list[dict]]:
        x = x_t[:, None]  # (B, 1, D)
        for block, cache in zip(self.blocks, state, strict=True):
            x = block.step(x, cache)
        return self.ln_f(x)[:, 0], state

    # Window inference (evaluation): the same numbers as forward(x)[:, -1] on an unpadded window, with
    # the work that does not reach the last token's output skipped. The first layer's attention
    # projections depend on each token alone, so a caller that slides a window over an episode computes
    # them once per token (`token_features`) and passes them in; the last layer computes its MLP and
    # its query for the last token only. For the DT paper's 3 layers this is about 2/3 of the work.

    def token_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token features (..., 3D) of tokens (..., D): the first layer's q, k, v projections."""
        first = self.blocks[0]
        return first.attn.qkv(first.ln_1(x))

    def forward_last(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), an unpadded causal window; features (B, T, 3D) from `token_features(x)` or None
        -> the last token's output (B, D), equal to forward(x)[:, -1]."""
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block.forward_window(x, features if i == 0 else None, last_only=i == last)
        return self.ln_f(x)[:, -1]
