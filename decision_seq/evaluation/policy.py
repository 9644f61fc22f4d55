"""SequencePolicy: return-conditioned action selection for a batch of environments, with inference state.

Modes (`EVAL_MODES`):

- "window" (default, exact): the action at step t is predicted from the last K steps (left-padded with
  a mask while t < K), exactly what the model saw in training and what the official DT evaluation
  does (Chen et al. 2021; Ota 2024 evaluates Decision Mamba the same way). The fast form gives the
  same actions (float tolerance) with less work: each token is embedded once and kept in a buffer of
  the last steps (with the backbone's `token_features`, e.g. the transformer's first-layer
  projections); the window is fed unpadded (the same output as the masked, left-padded window) to
  the backbone's `forward_last`, which computes only what reaches the state token s_t's output. The
  rest must be recomputed every step: once the oldest step leaves the window, every later token's
  hidden state changes (dropping tokens from a KV cache or an SSM state is not exact).
- "recurrent" (backbones with `constant_time_step`, i.e. Mamba): every token R_t, s_t, a_t is fed
  once through the backbone's O(1) `step`, carrying its states over the whole episode. Identical to
  "window" while t < K; from t = K on the model sees a context longer than the K steps it was trained
  on (a departure from both papers' evaluation, which the Decision Mamba paper's recurrent view of
  the model invites; its effect on the score is measured, not assumed).

In both modes the action a_t is read off the state token s_t's output. The reference window form feeds
a zero placeholder action token after s_t, which a causal backbone never lets s_t see; the fast forms
feed the real action token a_t only after acting.

All environments of the batch advance together from step 0 (the rollout's protocol: each
sub-environment runs one counted episode). Rows of finished environments keep being fed and are
ignored by the caller.
"""

from __future__ import annotations

import torch

EVAL_MODES = ("window", "recurrent")


def check_mode(mode: str) -> None:
    """Raise a clear error for an evaluation mode that does not exist."""
    if mode not in EVAL_MODES:
        raise ValueError(f"eval.mode={mode!r} is not available; valid modes: {', '.join(EVAL_MODES)}")


class SequencePolicy:
    """Batched, stateful action selection for `model` (a TrajectoryModel) over `batch_size` environments.

    Call `act(states, returns_to_go)` once per env step with normalized states (B, S) and scaled
    returns-to-go (B, 1); it returns actions (B, A), or (B,) int for discrete action spaces.
    `max_steps` bounds the episode length. `incremental=False` makes window mode rebuild and recompute
    the whole left-padded window at every step with `model.act` (the reference form, for tests).
    """

    def __init__(self, model, *, batch_size: int, context_len: int, max_steps: int, mode: str = "window",
                 incremental: bool = True, device: torch.device | str | None = None):
        check_mode(mode)
        backbone = model.backbone
        if mode == "recurrent" and not getattr(backbone, "constant_time_step", False):
            raise ValueError(
                f"eval.mode='recurrent' needs a backbone with an O(1) recurrent step (e.g. mamba); "
                f"backbone {model.backbone_name!r} has none: use eval.mode=window"
            )
        param = next(model.parameters())
        self.model, self.mode = model, mode
        self.n, self.K, self.H = int(batch_size), int(context_len), int(max_steps)
        self.device = param.device if device is None else torch.device(device)
        self.dtype = param.dtype
        self.t = 0
        self.incremental = mode == "recurrent" or incremental
        if mode == "recurrent":
            self.state = backbone.init_state(self.n, device=self.device, dtype=self.dtype)
        elif self.incremental:
            # Token embeddings (R, s, a) per step in a buffer of 2K steps: slot `pos` is the newest step, the
            # window is the L slots ending there, and when the buffer is full the last K-1 steps move to the
            # front (one copy every K steps instead of a shift every step).
            self.tokens = torch.zeros(self.n, 2 * self.K, 3, model.embed_dim, device=self.device, dtype=self.dtype)
            self.features = None  # per-token backbone features, same layout, made on first use
            self.token_features = getattr(backbone, "token_features", None)
            self.pos = -1
        else:
            # Histories of the whole episode; the reference form reads the last K steps of them.
            n, H, S = self.n, self.H, model.state_dim
            self.states = torch.zeros(n, H, S, device=self.device, dtype=self.dtype)  # (n, H, S)
            self.actions = (torch.zeros(n, H, dtype=torch.long, device=self.device) if model.discrete
                            else torch.zeros(n, H, model.action_dim, device=self.device, dtype=self.dtype))
            self.rtg = torch.zeros(n, H, 1, device=self.device, dtype=self.dtype)  # (n, H, 1)
            self.timesteps = torch.arange(H, device=self.device).expand(n, H)  # (n, H)

    @torch.no_grad()
    def act(self, states: torch.Tensor, returns_to_go: torch.Tensor) -> torch.Tensor:
        """states (B, S) normalized, returns_to_go (B, 1) scaled -> action for this step of every env."""
        t = self.t
        if t >= self.H:
            raise RuntimeError(f"episode longer than max_steps={self.H}")
        states = states.to(self.device, self.dtype)
        returns_to_go = returns_to_go.to(self.device, self.dtype)
        if self.mode == "recurrent":
            action = self._step(states, returns_to_go, t)
        elif self.incremental:
            action = self._window_step(states, returns_to_go, t)
        else:
            self.states[:, t], self.rtg[:, t] = states, returns_to_go
            win = slice(max(0, t + 1 - self.K), t + 1)
            action = self.model.act(*_left_pad(self.K, self.states[:, win], self.actions[:, win],
                                               self.rtg[:, win], self.timesteps[:, win]))
            self.actions[:, t] = action
        self.t += 1
        return action

    def _put(self, kind: int, x: torch.Tensor, ts: torch.Tensor) -> None:
        """Embed this step's token `kind` (0 return, 1 state, 2 action) into the newest slot."""
        tok = self.model.embed_token(("return", "state", "action")[kind], x, ts)  # (B, D)
        self.tokens[:, self.pos, kind] = tok
        if self.token_features is not None:
            f = self.token_features(tok)  # (B, F)
            if self.features is None:
                self.features = tok.new_zeros(self.n, 2 * self.K, 3, f.shape[-1])
            self.features[:, self.pos, kind] = f

    def _window_step(self, states, returns_to_go, t: int) -> torch.Tensor:
        """Exact window mode: advance the token buffer, add R_t and s_t, run the backbone over the
        window's tokens up to s_t, act, then add the real a_t."""
        model, backbone, K = self.model, self.model.backbone, self.K
        self.pos += 1
        if self.pos == 2 * K:  # full: keep the last K-1 steps, at the front
            for buf in (self.tokens, self.features):
                if buf is not None:
                    buf[:, : K - 1] = buf[:, K + 1 :].clone()
            self.pos = K - 1
        ts = torch.full((self.n,), t, dtype=torch.long, device=self.device)  # (B,)
        self._put(0, returns_to_go, ts)
        self._put(1, states, ts)
        L = min(t + 1, K)  # steps in the window; tokens R, s, a per step, up to s_t
        win = slice(self.pos + 1 - L, self.pos + 1)
        x = self.tokens[:, win].reshape(self.n, 3 * L, -1)[:, :-1]  # (B, 3L-1, D)
        if self.features is not None:
            f = self.features[:, win].reshape(self.n, 3 * L, -1)[:, :-1]
            h = backbone.forward_last(x, f)
        elif hasattr(backbone, "forward_last"):
            h = backbone.forward_last(x)
        else:
            h = backbone(x)[:, -1]
        out = model.head(h)  # (B, A) or logits (B, n)
        action = out.argmax(-1) if model.discrete else out
        self._put(2, action, ts)
        return action

    def _step(self, states, returns_to_go, t: int) -> torch.Tensor:
        """Feed R_t and s_t, predict a_t from s_t's output, then feed the real a_t."""
        model, backbone = self.model, self.model.backbone
        ts = torch.full((self.n,), t, dtype=torch.long, device=self.device)  # (B,)
        _, self.state = backbone.step(model.embed_token("return", returns_to_go, ts), self.state)
        h, self.state = backbone.step(model.embed_token("state", states, ts), self.state)  # (B, D)
        out = model.head(h)  # (B, A) or logits (B, n)
        action = out.argmax(-1) if model.discrete else out
        _, self.state = backbone.step(model.embed_token("action", action, ts), self.state)
        return action


def _left_pad(K: int, states, actions, rtg, timesteps):
    """Left-pad windows shorter than K with zeros and return them with their mask, as in training."""
    n, L = states.shape[:2]
    mask = torch.ones(n, K, dtype=torch.bool, device=states.device)
    if L == K:
        return states, actions, rtg, timesteps, mask
    pad = K - L
    mask[:, :pad] = False

    def lp(x):
        return torch.cat([x.new_zeros((n, pad, *x.shape[2:])), x], dim=1)

    return lp(states), lp(actions), lp(rtg), lp(timesteps), mask
