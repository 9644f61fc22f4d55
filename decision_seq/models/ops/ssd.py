"""The SSD scan of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060) in plain PyTorch.

Per head h (scalar A_h < 0, as in Mamba-2), head channel p and state index n, with the step dt_t > 0
already discretized (softplus(dt + dt_bias)) and B_t, C_t shared by the heads of a group:
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T,    y_t = h_t C_t + D * x_t
`ssd_ref` is the sequential recurrence, a plain loop differentiated by autograd: the test oracle, as
mamba_ssm keeps reference scans beside its Triton kernels. `ssd_chunked` is the default: the state space
dual form of section 6 of the paper, exact in exact arithmetic:
  1. intra-chunk outputs in closed form, (C B^T * L) x with the segment-sum decay matrix
     L[i, j] = exp(sum_{k=j+1..i} dt_k A) (i >= j, else 0): batched matrix multiplications;
  2. each chunk's final state from its own inputs (decayed to the chunk end);
  3. the inter-chunk recurrence over chunk states (a short loop: one step per chunk);
  4. each chunk's outputs from the state entering it.
Autograd differentiates all of it (no hand-written backward). On CUDA, models/backbones/mamba2.py calls
mamba_ssm's Triton kernel `mamba_chunk_scan_combined` instead (models/ops/kernels.py).

Layout as mamba_ssm's kernel: x (b, L, h, p), dt (b, L, h), A (h,), B and C (b, L, g, n) with g groups
dividing the h heads (head i uses group i // (h // g)), D (h,) or (h, p), states (b, h, p, n).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from decision_seq.models.ops.selective_scan import _no_autocast, compute_dtype

__all__ = ["segsum", "ssd_chunked", "ssd_ref"]

# Chosen by measurement on the 2-core build machine (scripts/bench_ssd.py --chunk-sizes 8 16 32, paper config,
# training step): for 60-token windows a single chunk (the whole window, no padding) and chunks of 16-32 are
# within the machine's noise of each other, 8 is slower; one chunk is the simplest computation.
DEFAULT_CHUNK_SIZE = 64


def _heads(t: torch.Tensor, nheads: int) -> torch.Tensor:
    """(b, L, g, n) -> (b, L, h, n): each group's B or C repeated for the heads of that group."""
    return t.repeat_interleave(nheads // t.shape[2], dim=2)


def _skip(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
    if D is None:
        return y
    return y + x * (D[:, None] if D.dim() == 1 else D)  # D (h,) or (h, p) against x (b, L, h, p)


def ssd_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
):
    """Reference SSD scan: the recurrence one time step at a time (slow, obviously correct).

    x (b, L, h, p), dt (b, L, h), A (h,), B, C (b, L, g, n), D (h,) | (h, p) | None, initial_state
    (b, h, p, n) | None -> y (b, L, h, p) in x's dtype, and the final state (b, h, p, n) if asked.
    """
    dtype, cd = x.dtype, compute_dtype(x.dtype)
    with _no_autocast(x.device):
        b, L, h, p = x.shape
        x, dt, A = x.to(cd), dt.to(cd), A.to(cd)
        B, C = _heads(B.to(cd), h), _heads(C.to(cd), h)  # (b, L, h, n)
        state = x.new_zeros(b, h, p, B.shape[-1]) if initial_state is None else initial_state.to(cd)
        ys = []
        for t in range(L):
            decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # (b, h, 1, 1)
            inp = (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]  # (b, h, p, n)
            state = decay * state + inp
            ys.append((state * C[:, t, :, None, :]).sum(-1))  # (b, h, p)
        y = _skip(torch.stack(ys, dim=1), x, None if D is None else D.to(cd))  # (b, L, h, p)
    return (y.to(dtype), state) if return_final_state else y.to(dtype)


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Segment sums (..., Q) -> (..., Q, Q): out[i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the
    diagonal (so exp gives the causal decay matrix). Each entry is a sum of its own terms, not a
    difference of two cumulative sums, so no cancellation."""
    Q = a.shape[-1]
    below = torch.ones(Q, Q, dtype=torch.bool, device=a.device).tril(-1)  # k > j
    terms = a[..., :, None].expand(*a.shape, Q).masked_fill(~below, 0.0)  # (..., k, j): a_k where k > j
    sums = terms.cumsum(dim=-2)  # (..., i, j) = sum over j < k <= i
    return sums.masked_fill(~below.logical_or(torch.eye(Q, dtype=torch.bool, device=a.device)), float("-inf"))


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
):
    """Chunked SSD scan (the default); same arguments and result as `ssd_ref`, plus chunk_size.

    A window shorter than chunk_size is one chunk of its own length (no padding). Otherwise the end is
    padded to a whole number of chunks with dt = 0 and x = 0 (decay 1, no input), which changes neither
    the real outputs nor the final state.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype, cd = x.dtype, compute_dtype(x.dtype)
    with _no_autocast(x.device):
        b, L, h, p = x.shape
        g, n = B.shape[2], B.shape[3]
        r = h // g  # heads per group
        x_in = x.to(cd)
        x, dt, A, B, C = x_in, dt.to(cd), A.to(cd), B.to(cd), C.to(cd)
        Q = min(chunk_size, L)
        pad = -L % Q
        if pad:
            x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))  # zeros at the end of time
            dt = F.pad(dt, (0, 0, 0, pad))
        c = (L + pad) // Q
        xdt = (x * dt[..., None]).view(b, c, Q, h, p).permute(0, 1, 3, 2, 4)  # (b, c, h, Q, p)
        Bc = B.view(b, c, Q, g, n).permute(0, 1, 3, 2, 4)  # (b, c, g, Q, n)
        Cc = C.view(b, c, Q, g, n).permute(0, 1, 3, 2, 4)  # (b, c, g, Q, n)
        a = (dt * A).view(b, c, Q, h).permute(0, 1, 3, 2)  # (b, c, h, Q): log decay per step
        a_cum = a.cumsum(dim=-1)  # (b, c, h, Q)

        # 1. Intra-chunk: y = (C B^T * L) (dt x), with L the segment-sum decay matrix.
        CB = (Cc @ Bc.transpose(-1, -2))[:, :, :, None]  # (b, c, g, 1, Q, Q): shared by a group's heads
        decay = torch.exp(segsum(a)).view(b, c, g, r, Q, Q)  # (b, c, g, r, Q, Q)
        y = ((CB * decay) @ xdt.view(b, c, g, r, Q, p)).view(b, c, h, Q, p)  # (b, c, h, Q, p)

        # 2. Each chunk's own contribution to its final state: sum_s exp(a_cum[-1] - a_cum[s]) dt_s x_s B_s^T.
        to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, c, h, Q)
        xdt_end = (xdt * to_end[..., None]).transpose(-1, -2).reshape(b, c, g, r, p, Q)
        chunk_states = (xdt_end @ Bc[:, :, :, None]).view(b, c, h, p, n)  # (b, c, h, p, n)

        # 3. Inter-chunk recurrence: the state entering each chunk (c steps, c = ceil(L / Q)).
        state = x.new_zeros(b, h, p, n) if initial_state is None else initial_state.to(cd)  # (b, h, p, n)
        chunk_decay = torch.exp(a_cum[..., -1])  # (b, c, h): decay across a whole chunk
        entering = []
        for k in range(c):
            entering.append(state)
            state = chunk_decay[:, k, :, None, None] * state + chunk_states[:, k]
        prev = torch.stack(entering, dim=1)  # (b, c, h, p, n)

        # 4. Outputs from the entering state: C_t exp(a_cum[t]) h_prev.
        prev_t = prev.view(b, c, g, r, p, n).transpose(-1, -2)  # (b, c, g, r, n, p)
        y_prev = (Cc[:, :, :, None] @ prev_t).view(b, c, h, Q, p) * torch.exp(a_cum)[..., None]
        y = (y + y_prev).permute(0, 1, 3, 2, 4).reshape(b, c * Q, h, p)[:, :L]  # (b, L, h, p)
        y = _skip(y, x_in, None if D is None else D.to(cd))
    return (y.to(dtype), state) if return_final_state else y.to(dtype)
