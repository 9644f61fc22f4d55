"""Selective scan of Mamba (Gu & Dao 2023, arXiv 2312.00752) in plain PyTorch and as a fused CPU kernel.

Per channel d and state index n (A = -exp(A_log), Euler-discretized B as in Mamba):
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = C_t . h_t + D * u_t
with, as in mamba_ssm's selective_scan_fn, optional delta = softplus(delta + delta_bias) and output gate
y * silu(z). `selective_scan_ref` is the slow, obviously correct oracle (a Python loop, autograd through
it), as mamba_ssm keeps `selective_scan_ref` beside its kernel; the tests hold the fast scans to it in fp64.

`selective_scan` is the default. On the CPU it runs the fused kernel of scan_cpu.c (built with the system
C compiler on first use): one pass over time per batch row, every per-element operation of a step in one
loop, the backward recomputing the states of one row at a time instead of storing them. Elsewhere (or
without a compiler) it runs the same sequential recurrence in PyTorch, one time step at a time on
(batch, d_inner, d_state) slices, with a hand-written backward (a reverse scan of the adjoint) instead
of an autograd graph of several small ops per time step. Both are exact (no cumsum-of-log tricks) and
only ever multiply by decays in [0, 1].

Why sequential: Mamba-1's decay exp(delta_t A) differs per (channel, state), so a chunked closed form
needs a (chunk x chunk) decay matrix per (channel, state): chunk/2 times the elementwise work of the
recurrence, and no matmul to hand it to. Log-depth scans (Hillis-Steele, Blelloch) only add work and
full-size temporaries on a CPU. Measured in docs/benchmarks.md ("Selective scan", "DMamba step on the
CPU"); `python scripts/bench_scan.py`. On CUDA the mamba_ssm kernel (models/ops/kernels.py) is used.

Layout: batch first, time second, (b, L, d); mamba_ssm's kernels take (batch, channels, time).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from decision_seq.models.ops.scan_cpu import load_scan_cpu, scan_bwd, scan_fwd

SCAN_IMPLS = ("auto", "fused", "torch")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16 / bf16 -> fp32 (as in mamba_ssm, the scan always runs in fp32); fp32 / fp64 unchanged."""
    return torch.promote_types(dtype, torch.float32)


def _no_autocast(device: torch.device):
    # The scan must run in its compute dtype even inside an autocast region (bmm would drop to bf16).
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _prepare_delta(delta, delta_bias, delta_softplus: bool):
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)
    return F.softplus(delta) if delta_softplus else delta


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """Reference selective scan: a plain loop over time, differentiated by autograd.

    u, delta: (b, L, d); A: (d, n); B, C: (b, L, n); D: (d,) or None; z: (b, L, d) or None;
    delta_bias: (d,) or None -> y (b, L, d) in u's dtype. As mamba_ssm's selective_scan_ref: the step
    is softplus(delta + delta_bias) when delta_softplus, and y is gated by silu(z) when z is given.
    """
    dtype, cd = u.dtype, compute_dtype(u.dtype)
    with _no_autocast(u.device):
        u, delta, A, B, C = (x.to(cd) for x in (u, delta, A, B, C))
        delta = _prepare_delta(delta, delta_bias, delta_softplus)
        h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])  # (b, d, n)
        ys = []
        for t in range(u.shape[1]):
            decay = torch.exp(delta[:, t, :, None] * A)  # (b, d, n)
            h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
            ys.append((h * C[:, t, None, :]).sum(-1))  # (b, d)
        y = torch.stack(ys, dim=1)  # (b, L, d)
        if D is not None:
            y = y + u * D.to(cd)
        if z is not None:
            y = y * F.silu(z.to(cd))
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


class _FusedScan(torch.autograd.Function):
    """The fused CPU kernel (scan_cpu.c), D term and gate included: forward keeps only its inputs,
    backward recomputes the states one batch row at a time. Not twice differentiable."""

    @staticmethod
    def forward(ctx, lib, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        ctx.lib, ctx.delta_softplus = lib, delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        return scan_fwd(lib, u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    @staticmethod
    def backward(ctx, gout):
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        gout = gout.to(u.dtype).contiguous()
        grads = scan_bwd(ctx.lib, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, gout)
        return None, *grads, None


def _fused_lib(impl: str, x: torch.Tensor):
    """The fused kernel's library for x, or None for the PyTorch path."""
    if impl not in SCAN_IMPLS:
        raise ValueError(f"scan impl must be one of {', '.join(SCAN_IMPLS)}, got {impl!r}")
    if impl == "torch" or x.device.type != "cpu":
        return None
    lib = load_scan_cpu(x.dtype)
    if lib is None and impl == "fused":
        raise RuntimeError(
            f"the fused CPU selective scan is unavailable for {x.dtype} (CPU fp32/fp64 only; no C compiler, "
            "the build failed, or DECISION_SEQ_SCAN_CPU=0)"
        )
    return lib


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, impl: str = "auto"
) -> torch.Tensor:
    """Fast exact selective scan (the default). Same arguments and result as `selective_scan_ref`.

    impl: "fused" = the fused CPU kernel (scan_cpu.c, built on first use; CPU only); "torch" = the
    sequential PyTorch recurrence below, without autograd (and without keeping the states) when no
    gradient is needed, else through `_SelectiveScan`; "auto" = fused where it is available, else torch.
    """
    dtype, cd = u.dtype, compute_dtype(u.dtype)
    with _no_autocast(u.device):
        u, delta, A, B, C = (x.to(cd) for x in (u, delta, A, B, C))
        lib = _fused_lib(impl, u)
        if lib is not None:
            D, delta_bias = (None if x is None else x.to(cd).contiguous() for x in (D, delta_bias))
            z = None if z is None else z.to(cd)  # a strided chunk view is read in place
            ins = (x.contiguous() for x in (u, delta, A, B, C))
            return _FusedScan.apply(lib, *ins, D, z, delta_bias, bool(delta_softplus)).to(dtype)
        delta = _prepare_delta(delta, delta_bias, delta_softplus)
        if torch.is_grad_enabled() and any(x.requires_grad for x in (u, delta, A, B, C)):
            y = _SelectiveScan.apply(u, delta, A, B, C)
        else:
            uT, dT, BT, CT = (x.transpose(0, 1).contiguous() for x in (u, delta, B, C))  # (L, b, .)
            y = _scan_forward(uT, dT, A, BT, CT, None).transpose(0, 1)  # (b, L, d)
        if D is not None:
            y = y + u * D.to(cd)  # skip term through autograd
        if z is not None:
            y = y * F.silu(z.to(cd))
    return y.to(dtype)
