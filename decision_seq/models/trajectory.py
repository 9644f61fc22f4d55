"""TrajectoryModel: the Decision Transformer token scheme around a swappable sequence backbone.

Follows Chen et al. 2021 (Decision Transformer) and Ota 2024 (Decision Mamba): each timestep t gives
three tokens (return-to-go R_t, state s_t, action a_t), interleaved as R_1, s_1, a_1, R_2, ... so a
context of K steps is 3K tokens. A learned timestep embedding is added to all three token types,
one LayerNorm follows the embeddings, and the action a_t is predicted from the hidden state of the
state token s_t. The backbone (registry and contract in `models.backbones`) does the sequence mixing; the
observation and action encoders are in `models.encoders`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum

import torch
from torch import nn

from decision_seq.models.backbones import build_backbone
from decision_seq.models.encoders import action_encoder, observation_encoder


class TokenKind(IntEnum):
    """The three tokens of a timestep; the value is the token's place in the interleaved order R_t, s_t, a_t."""

    RETURN = 0
    STATE = 1
    ACTION = 2


class TrajectoryModel(nn.Module):
    def __init__(
        self,
        *,
        state_dim: int,
        action_dim: int,
        discrete: bool = False,
        embed_dim: int = 128,
        max_ep_len: int = 1000,
        dropout: float = 0.1,
        backbone: str = "transformer",
        backbone_kwargs: dict | None = None,
        action_low: list[float] | None = None,
        action_high: list[float] | None = None,
        obs_shape: Sequence[int] | None = None,
    ):
        """`obs_shape`: one step's observation shape when it is not the vector (state_dim,), e.g. (84, 84)
        for Atari frames (then state_dim must be its size, 7056, and states arrive as (B, K, 4, 84, 84))."""
        super().__init__()
        self.obs_shape = (state_dim,) if obs_shape is None else tuple(int(n) for n in obs_shape)
        if math.prod(self.obs_shape) != state_dim:
            raise ValueError(f"state_dim={state_dim} is not the size of obs_shape={self.obs_shape}")
        self.state_dim, self.action_dim, self.discrete = state_dim, action_dim, discrete
        self.embed_dim, self.max_ep_len = embed_dim, max_ep_len
        self.backbone_name = backbone

        # Departures from the DT Atari code, which keeps its own token scheme: the same tokens serve every
        # domain here, so Atari gets the MuJoCo code's per-step timestep embedding (not Atari's global +
        # local position embeddings), a return embedding without tanh, and the LayerNorm below.
        self.embed_timestep = nn.Embedding(max_ep_len, embed_dim)
        self.embed_return = nn.Linear(1, embed_dim)
        # The creation order (timestep, return, state, action) fixes which initial weights a seed draws: keep it.
        self.embed_state = observation_encoder(self.obs_shape, embed_dim)
        self.embed_action = action_encoder(action_dim, discrete, embed_dim)
        self.embed_ln = nn.LayerNorm(embed_dim)
        self.embed_drop = nn.Dropout(dropout)  # GPT-2's embedding dropout in the official DT
        self.backbone = build_backbone(backbone, d_model=embed_dim, dropout=dropout, **(backbone_kwargs or {}))
        if discrete:
            self.predict_action = nn.Linear(embed_dim, action_dim)  # logits (the DT Atari head has no bias)
        else:
            self.predict_action = nn.Sequential(nn.Linear(embed_dim, action_dim), nn.Tanh())
            # Departure from the official DT, which assumes actions in [-1, 1]: the tanh output is mapped
            # affinely onto the action space's bounds (identity for [-1, 1] boxes such as MuJoCo's).
            low = torch.as_tensor(action_low if action_low is not None else [-1.0] * action_dim, dtype=torch.float32)
            high = torch.as_tensor(action_high if action_high is not None else [1.0] * action_dim, dtype=torch.float32)
            if low.shape != (action_dim,) or high.shape != (action_dim,) or not bool((high > low).all()):
                raise ValueError(
                    f"action bounds must be {action_dim} finite pairs with high > low; "
                    f"got {low.tolist()} / {high.tolist()}"
                )
            self.register_buffer("action_scale", (high - low) / 2)
            self.register_buffer("action_bias", (high + low) / 2)

    def embed(self, states, actions, returns_to_go, timesteps) -> torch.Tensor:
        """Interleaved token embeddings (B, 3K, D) for K steps."""
        B, K = states.shape[:2]
        time = self.embed_timestep(timesteps.clamp(max=self.max_ep_len - 1))  # (B, K, D)
        r = self.embed_return(returns_to_go) + time
        s = self.embed_state(states) + time
        a = self.embed_action(actions) + time
        tokens = torch.stack((r, s, a), dim=2).reshape(B, 3 * K, self.embed_dim)  # (B, 3K, D), TokenKind order
        return self.embed_drop(self.embed_ln(tokens))

    def embed_token(self, kind: TokenKind, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """One token of one step, as `embed` makes it, for incremental inference: x (B, 1) for RETURN,
        (B, S) or (B, 4, 84, 84) for STATE, (B, A) or (B,) int (discrete) for ACTION; timesteps (B,) -> (B, D)."""
        layer = (self.embed_return, self.embed_state, self.embed_action)[TokenKind(kind)]
        time = self.embed_timestep(timesteps.clamp(max=self.max_ep_len - 1))  # (B, D)
        return self.embed_drop(self.embed_ln(layer(x) + time))

    def head(self, h_state: torch.Tensor) -> torch.Tensor:
        """Hidden states of state tokens (..., D) -> actions (..., A) or logits (..., n)."""
        out = self.predict_action(h_state)
        return out if self.discrete else out * self.action_scale + self.action_bias

    def forward(self, states, actions, returns_to_go, timesteps, mask=None) -> torch.Tensor:
        """states (B, K, S) or stacked frames (B, K, 4, 84, 84), actions (B, K, A) or (B, K) int, returns_to_go
        (B, K, 1), timesteps (B, K), mask (B, K) bool (True = real step) -> action predictions (B, K, A) or
        logits (B, K, n)."""
        B, K = states.shape[:2]
        x = self.embed(states, actions, returns_to_go, timesteps)
        token_mask = None if mask is None else mask.repeat_interleave(3, dim=1)  # (B, 3K)
        h = self.backbone(x, token_mask).reshape(B, K, 3, self.embed_dim)  # (B, K, 3, D)
        return self.head(h[:, :, TokenKind.STATE])  # predict a_t from the state token s_t

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean action loss over real (unpadded) steps: MSE for continuous, cross-entropy for discrete."""
        pred = self(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"], batch["mask"])
        if pred.dtype in (torch.float16, torch.bfloat16):
            pred = pred.float()  # the loss in fp32 under autocast
        mask = batch["mask"]
        if self.discrete:
            return nn.functional.cross_entropy(pred[mask], batch["actions"][mask])
        return ((pred - batch["actions"]) ** 2)[mask].mean()

    @torch.no_grad()
    def act(self, states, actions, returns_to_go, timesteps, mask=None) -> torch.Tensor:
        """Action for the last step of each window: (B, A) float, or (B,) int (argmax) for discrete."""
        out = self(states, actions, returns_to_go, timesteps, mask)[:, -1]
        return out.argmax(-1) if self.discrete else out
