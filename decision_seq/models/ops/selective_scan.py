"""Selective scan of Mamba (Gu & Dao 2023, arXiv 2312.00752) in plain PyTorch: a reference loop and a fast exact scan.

Per channel d and state index n (A = -exp(A_log), Euler-discretized B as in Mamba):
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = C_t . h_t + D * u_t
`selective_scan_ref` is the slow, obviously correct oracle (a Python loop, autograd through it), as
mamba_ssm keeps `selective_scan_ref` beside its kernel; the tests hold the fast scan to it in fp64.
`selective_scan` is the default: the same sequential recurrence, one time step at a time on
(batch, d_inner, d_state) slices that stay in cache, with a hand-written backward pass (a reverse scan
of the adjoint) instead of an autograd graph of several small ops per time step. It is exact (no
cumsum-of-log tricks) and only ever multiplies by decays in [0, 1].

Why sequential: on a CPU the per-step slices (64 x 256 x 16 floats at the DMamba paper config) already
keep both cores busy, so log-depth scans (Hillis-Steele, Blelloch) only add work and full-size
temporaries; measured in docs/benchmarks.md ("Selective scan"; `python scripts/bench_scan.py`). A loop
that slices one precomputed exp(delta A) tensor is far slower under autograd: each slice's backward
materializes a full-size gradient. On CUDA the mamba_ssm kernel (models/ops/kernels.py) is used instead.

Layout: batch first, time second, (b, L, d); mamba_ssm's kernels take (batch, channels, time).
"""

from __future__ import annotations

import contextlib

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16 / bf16 -> fp32 (as in mamba_ssm, the scan always runs in fp32); fp32 / fp64 unchanged."""
    return torch.promote_types(dtype, torch.float32)


def _no_autocast(device: torch.device):
    # The scan must run in its compute dtype even inside an autocast region (bmm would drop to bf16).
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def selective_scan_ref(u, delta, A, B, C, D=None) -> torch.Tensor:
    """Reference selective scan: a plain loop over time, differentiated by autograd.

    u, delta: (b, L, d); A: (d, n); B, C: (b, L, n); D: (d,) or None -> y (b, L, d) in u's dtype.
    """
    dtype, cd = u.dtype, compute_dtype(u.dtype)
    with _no_autocast(u.device):
        u, delta, A, B, C = (x.to(cd) for x in (u, delta, A, B, C))
        h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])  # (b, d, n)
        ys = []
        for t in range(u.shape[1]):
            decay = torch.exp(delta[:, t, :, None] * A)  # (b, d, n)
            h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
            ys.append((h * C[:, t, None, :]).sum(-1))  # (b, d)
        y = torch.stack(ys, dim=1)  # (b, L, d)
        if D is not None:
            y = y + u * D.to(cd)
    return y.to(dtype)


def _scan_forward(uT, dT, A, BT, CT, states: torch.Tensor | None) -> torch.Tensor:
    """Time-major sequential scan. uT, dT: (L, b, d); BT, CT: (L, b, n) -> y (L, b, d), without D.

    When `states` (L, b, d, n) is given, h_t is written into it (the backward pass needs it).
    """
    L, b, d = uT.shape
    du = dT * uT  # (L, b, d)
    y = uT.new_empty(L, b, d)
    h = uT.new_zeros(b, d, A.shape[1])  # (b, d, n)
    for t in range(L):
        decay = torch.exp(dT[t, :, :, None] * A)  # (b, d, n)
        h_in = du[t, :, :, None] * BT[t, :, None, :]  # (b, d, n)
        h = torch.addcmul(h_in, decay, h, out=None if states is None else states[t])
        torch.bmm(h, CT[t, :, :, None], out=y[t, :, :, None])  # (b, d, 1) = (b, d, n) @ (b, n, 1)
    return y


class _SelectiveScan(torch.autograd.Function):
    """Sequential scan with a hand-written backward (no D term; inputs already in the compute dtype).

    Backward is a reverse scan of the adjoint g_t = dL/dh_t:
        g_t = gy_t C_t + exp(delta_{t+1} A) g_{t+1},
    from which every input gradient follows per step. Saves the states h (L, b, d, n).
    Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        uT, dT, BT, CT = (x.transpose(0, 1).contiguous() for x in (u, delta, B, C))  # (L, b, .)
        states = u.new_empty(*uT.shape, A.shape[1])  # (L, b, d, n)
        y = _scan_forward(uT, dT, A, BT, CT, states)
        ctx.save_for_backward(uT, dT, A, BT, CT, states)
        return y.transpose(0, 1)  # (b, L, d)

    @staticmethod
    def backward(ctx, gy):
        uT, dT, A, BT, CT, states = ctx.saved_tensors
        with _no_autocast(uT.device):
            gyT = gy.transpose(0, 1).to(uT.dtype).contiguous()  # (L, b, d)
            du = dT * uT
            g_u, g_delta = torch.empty_like(uT), torch.empty_like(dT)
            g_B, g_C = torch.empty_like(BT), torch.empty_like(CT)
            g_A = torch.zeros_like(states[0])  # (b, d, n), summed over the batch at the end
            carry = None  # adjoint flowing into h_t from h_{t+1}
            for t in range(uT.shape[0] - 1, -1, -1):
                g = gyT[t, :, :, None] * CT[t, :, None, :]  # (b, d, n): direct part of dL/dh_t
                if carry is not None:
                    g = g + carry
                torch.bmm(gyT[t, :, None, :], states[t], out=g_C[t, :, None, :])  # (b, 1, n)
                torch.bmm(du[t, :, None, :], g, out=g_B[t, :, None, :])  # (b, 1, n)
                g_du = torch.bmm(g, BT[t, :, :, None])[..., 0]  # (b, d): dL/d(delta_t u_t)
                torch.mul(g_du, dT[t], out=g_u[t])
                torch.mul(g_du, uT[t], out=g_delta[t])
                if t > 0:  # h_{-1} = 0, so the first decay gets no gradient
                    carry = g * torch.exp(dT[t, :, :, None] * A)  # dL/dh_{t-1} from this step
                    g_dA = carry * states[t - 1]  # dL/d(delta_t A), (b, d, n)
                    g_delta[t] += (g_dA * A).sum(-1)
                    g_A.addcmul_(g_dA, dT[t, :, :, None])
        return g_u.transpose(0, 1), g_delta.transpose(0, 1), g_A.sum(0), g_B.transpose(0, 1), g_C.transpose(0, 1)


def selective_scan(u, delta, A, B, C, D=None) -> torch.Tensor:
    """Fast exact selective scan (the default). Same arguments and result as `selective_scan_ref`.

    Runs the sequential recurrence without autograd (and without keeping the states) when no
    gradient is needed, else through `_SelectiveScan`.
    """
    dtype, cd = u.dtype, compute_dtype(u.dtype)
    with _no_autocast(u.device):
        u, delta, A, B, C = (x.to(cd) for x in (u, delta, A, B, C))
        if torch.is_grad_enabled() and any(x.requires_grad for x in (u, delta, A, B, C)):
            y = _SelectiveScan.apply(u, delta, A, B, C)
        else:
            uT, dT, BT, CT = (x.transpose(0, 1).contiguous() for x in (u, delta, B, C))  # (L, b, .)
            y = _scan_forward(uT, dT, A, BT, CT, None).transpose(0, 1)  # (b, L, d)
        if D is not None:
            y = y + u * D.to(cd)  # skip term through autograd
    return y.to(dtype)
