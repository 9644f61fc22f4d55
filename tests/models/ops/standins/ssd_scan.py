"""CPU stand-in for mamba_ssm's Triton `mamba_chunk_scan_combined` (mamba_ssm/ops/triton/ssd_combined.py), for
the fast tests where Triton is not installed: its signature, its argument asserts, and the SSD recurrence as
a plain loop over time in fp32 (independent of decision_seq's ssd.py). Autograd gives the backward.

The slow tests run the real Triton function instead, in Triton's interpreter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mamba_chunk_scan_combined(
    x,
    dt,
    A,
    B,
    C,
    chunk_size,
    D=None,
    z=None,
    dt_bias=None,
    initial_states=None,
    seq_idx=None,
    cu_seqlens=None,
    dt_softplus=False,
    dt_limit=(0.0, float("inf")),
    return_final_states=False,
    return_varlen_states=False,
):
    """x (batch, seqlen, nheads, headdim), dt (batch, seqlen, nheads), A (nheads,), B / C (batch, seqlen, ngroups,
    dstate), D (nheads, headdim) | (nheads,), z like x -> out like x (in x's dtype)."""
    batch, seqlen, nheads, headdim = x.shape
    _, _, ngroups, dstate = B.shape
    assert nheads % ngroups == 0
    assert B.shape == (batch, seqlen, ngroups, dstate)
    assert x.shape == (batch, seqlen, nheads, headdim)
    assert dt.shape == (batch, seqlen, nheads)
    assert A.shape == (nheads,)
    assert C.shape == B.shape
    if z is not None:
        assert z.shape == x.shape
    if D is not None:
        assert D.shape == (nheads, headdim) or D.shape == (nheads,)
    if initial_states is not None or seq_idx is not None or cu_seqlens is not None:
        raise NotImplementedError("the mamba_chunk_scan_combined stand-in has no initial states or varlen")
    if return_final_states or return_varlen_states:
        raise NotImplementedError("the mamba_chunk_scan_combined stand-in returns the output only")
    dtype = x.dtype
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    per_group = nheads // ngroups
    h = x.new_zeros(batch, nheads, headdim, dstate, dtype=torch.float32)
    ys = []
    for t in range(seqlen):
        Bt = B[:, t].float().repeat_interleave(per_group, dim=1)  # (batch, nheads, dstate)
        Ct = C[:, t].float().repeat_interleave(per_group, dim=1)
        xt = x[:, t].float()  # (batch, nheads, headdim)
        decay = torch.exp(dt[:, t] * A.float())[:, :, None, None]
        h = decay * h + (dt[:, t, :, None] * xt)[..., None] * Bt[:, :, None, :]
        ys.append((h * Ct[:, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)  # (batch, seqlen, nheads, headdim)
    if D is not None:
        y = y + x.float() * (D.float()[:, None] if D.dim() == 1 else D.float())
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)
