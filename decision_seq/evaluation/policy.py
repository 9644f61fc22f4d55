"""SequencePolicy: return-conditioned action selection for a batch of environments, with inference state.

Modes (`EVAL_MODES`):

- "window" (default, exact): the action at step t is predicted from the last K steps (left-padded with
  a mask while t < K), exactly what the model saw in training and what the official DT evaluation
  does (Chen et al. 2021; Ota 2024 evaluates Decision Mamba the same way). Instead of rebuilding the
  padded window every step, each token is embedded once and kept in a buffer of the last steps (with
  the backbone's `token_features`, e.g. the transformer's first-layer projections); the window is fed
  unpadded (the same output as the masked, left-padded window) to the backbone's `forward_last`, which
  computes only what reaches the state token s_t's output. The rest must be recomputed every step:
  once the oldest step leaves the window, every later token's hidden state changes (dropping tokens
  from a KV cache or an SSM state is not exact).
- "recurrent" (backbones with `constant_time_step`, i.e. Mamba): every token R_t, s_t, a_t is fed
  once through the backbone's O(1) `step`, carrying its states over the whole episode. Identical to
  "window" while t < K; from t = K on the model sees a context longer than the K steps it was trained
  on (a departure from both papers' evaluation, which the Decision Mamba paper's recurrent view of
  the model invites; its effect on the score is measured, not assumed).

In both modes the action a_t is read off the state token s_t's output, and the real action token a_t
is fed only after acting. Window mode equals `TrajectoryModel.act` on the left-padded window, whose
zero placeholder for a_t a causal backbone never lets s_t see (tests/evaluation/test_policy.py).

All environments of the batch advance together from step 0 (the rollout's protocol: each
sub-environment runs one counted episode). Rows of finished environments keep being fed and are
ignored by the caller.
"""

from __future__ import annotations

import torch

from decision_seq.models.trajectory import TokenKind

EVAL_MODES = ("window", "recurrent")
# How a discrete action is picked from the logits: drawn from their softmax (the DT Atari code's evaluation),
# or the most likely one.
DISCRETE_ACTIONS = ("sample", "argmax")


def check_mode(mode: str) -> None:
    """Raise a clear error for an evaluation mode that does not exist."""
    if mode not in EVAL_MODES:
        raise ValueError(f"eval.mode={mode!r} is not available; valid modes: {', '.join(EVAL_MODES)}")


def check_discrete_action(choice: str) -> None:
    """Raise a clear error for a discrete action choice that does not exist."""
    if choice not in DISCRETE_ACTIONS:
        raise ValueError(f"eval.discrete_action={choice!r} is not available; valid: {', '.join(DISCRETE_ACTIONS)}")


def choose_discrete(logits: torch.Tensor, choice: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Logits (B, n) -> actions (B,) int64: the argmax, or a draw from softmax(logits) with `generator`."""
    if choice == "argmax":
        return logits.argmax(-1)
    probs = torch.softmax(logits.float(), dim=-1)  # (B, n)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class SequencePolicy:
    """Batched, stateful action selection for `model` (a TrajectoryModel) over `batch_size` environments.

    Call `act(states, returns_to_go)` once per env step with normalized states (B, S) (or stacked frames
    (B, 4, 84, 84), uint8 values) and scaled
    returns-to-go (B, 1); it returns actions (B, A), or (B,) int for discrete action spaces.
    `max_steps` bounds the episode length. Discrete actions are chosen by `discrete_action` (DISCRETE_ACTIONS;
    argmax by default, what `TrajectoryModel.act` does); "sample" draws with a generator seeded by `seed`.
    """

    def __init__(
        self,
        model,
        *,
        batch_size: int,
        context_len: int,
        max_steps: int,
        mode: str = "window",
        device: torch.device | str | None = None,
        discrete_action: str = "argmax",
        seed: int = 0,
    ):
        check_mode(mode)
        check_discrete_action(discrete_action)
        self.backbone = model.backbone  # a models.backbones.Backbone
        if mode == "recurrent" and not self.backbone.constant_time_step:
            raise ValueError(
                f"eval.mode='recurrent' needs a backbone with an O(1) recurrent step (e.g. mamba); "
                f"backbone {model.backbone_name!r} has none: use eval.mode=window"
            )
        param = next(model.parameters())
        self.model, self.mode = model, mode
        self.n, self.K, self.H = int(batch_size), int(context_len), int(max_steps)
        self.device = param.device if device is None else torch.device(device)
        self.dtype = param.dtype
        self.discrete_action = discrete_action
        self.generator = None
        if model.discrete and discrete_action == "sample":
            self.generator = torch.Generator(device=self.device)
            self.generator.manual_seed(int(seed))
        self.t = 0
        if mode == "recurrent":
            self.state = self.backbone.init_state(self.n, device=self.device, dtype=self.dtype)
        else:
            # Token embeddings (R, s, a) per step in a buffer of 2K steps: slot `pos` is the newest step, the
            # window is the L slots ending there, and when the buffer is full the last K-1 steps move to the
            # front (one copy every K steps instead of a shift every step).
            self.tokens = torch.zeros(self.n, 2 * self.K, 3, model.embed_dim, device=self.device, dtype=self.dtype)
            self.features = None  # per-token backbone features, same layout, made on first use (if any)
            self.pos = -1

    @torch.no_grad()
    def act(self, states: torch.Tensor, returns_to_go: torch.Tensor) -> torch.Tensor:
        """states (B, S) normalized, returns_to_go (B, 1) scaled -> action for this step of every env."""
        t = self.t
        if t >= self.H:
            raise RuntimeError(f"episode longer than max_steps={self.H}")
        states = states.to(self.device, self.dtype)
        returns_to_go = returns_to_go.to(self.device, self.dtype)
        step = self._step if self.mode == "recurrent" else self._window_step
        action = step(states, returns_to_go, t)
        self.t += 1
        return action

    def _act_from(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden state of the state token (B, D) -> actions (B, A), or (B,) int chosen from the logits."""
        out = self.model.head(h)  # (B, A) or logits (B, n)
        return choose_discrete(out, self.discrete_action, self.generator) if self.model.discrete else out

    def _put(self, kind: TokenKind, x: torch.Tensor, ts: torch.Tensor) -> None:
        """Embed this step's token `kind` into the newest slot, with its backbone features (if any)."""
        tok = self.model.embed_token(kind, x, ts)  # (B, D)
        self.tokens[:, self.pos, kind] = tok
        f = self.backbone.token_features(tok)  # (B, F) or None
        if f is not None:
            if self.features is None:
                self.features = tok.new_zeros(self.n, 2 * self.K, 3, f.shape[-1])
            self.features[:, self.pos, kind] = f

    def _window_step(self, states, returns_to_go, t: int) -> torch.Tensor:
        """Exact window mode: advance the token buffer, add R_t and s_t, run the backbone over the
        window's tokens up to s_t, act, then add the real a_t."""
        K = self.K
        self.pos += 1
        if self.pos == 2 * K:  # full: keep the last K-1 steps, at the front
            for buf in (self.tokens, self.features):
                if buf is not None:
                    buf[:, : K - 1] = buf[:, K + 1 :].clone()
            self.pos = K - 1
        ts = torch.full((self.n,), t, dtype=torch.long, device=self.device)  # (B,)
        self._put(TokenKind.RETURN, returns_to_go, ts)
        self._put(TokenKind.STATE, states, ts)
        L = min(t + 1, K)  # steps in the window; tokens R, s, a per step, up to s_t
        win = slice(self.pos + 1 - L, self.pos + 1)
        x = self.tokens[:, win].reshape(self.n, 3 * L, -1)[:, :-1]  # (B, 3L-1, D)
        f = None if self.features is None else self.features[:, win].reshape(self.n, 3 * L, -1)[:, :-1]
        action = self._act_from(self.backbone.forward_last(x, f))  # from h (B, D) of s_t
        self._put(TokenKind.ACTION, action, ts)
        return action

    def _step(self, states, returns_to_go, t: int) -> torch.Tensor:
        """Feed R_t and s_t, predict a_t from s_t's output, then feed the real a_t."""
        embed, step = self.model.embed_token, self.backbone.step
        ts = torch.full((self.n,), t, dtype=torch.long, device=self.device)  # (B,)
        _, self.state = step(embed(TokenKind.RETURN, returns_to_go, ts), self.state)
        h, self.state = step(embed(TokenKind.STATE, states, ts), self.state)  # (B, D)
        action = self._act_from(h)
        _, self.state = step(embed(TokenKind.ACTION, action, ts), self.state)
        return action
