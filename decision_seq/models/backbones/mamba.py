"""Mamba backbone for Decision Mamba: a pure-PyTorch Mamba mixer, the DMamba block, and the registered backbone.

Follows Gu & Dao 2023 (Mamba: Linear-Time Sequence Modeling with Selective State Spaces, arXiv
2312.00752) for the mixer and Ota 2024 (Decision Mamba, arXiv 2403.19925) for the block:
x + Mamba(LN(x)), then x + MLP(LN(x)), with a final LayerNorm after the stack.

`MambaMixer` is a twin of `mamba_ssm.Mamba` (mamba-ssm 2.3): same constructor arguments, parameter
names, shapes and initialization, so state_dicts load either way. It runs in plain PyTorch on any
device and switches to the mamba_ssm / causal_conv1d CUDA kernels when they import and the input is
on CUDA. The kernels are imported lazily in `load_kernels`, so this module imports on machines
without mamba_ssm (which cannot even be imported without its CUDA extension).

Selective scan, per channel d and state index n (A = -exp(A_log), Euler-discretized B as in Mamba):
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = C_t . h_t + D * u_t
`selective_scan_ref` is the slow, obviously correct oracle (a Python loop, autograd through it).
`selective_scan` is the default: the same sequential recurrence, one time step at a time on
(batch, d_inner, d_state) slices that stay in cache, with a hand-written backward pass (a reverse
scan of the adjoint) instead of an autograd graph of several small ops per time step. It is exact (no
cumsum-of-log tricks) and only ever multiplies by decays in [0, 1].

Why the sequential scan: on a CPU the per-step slices (64 x 256 x 16 floats at the paper config)
already keep both cores busy, so log-depth scans only add work (and full-size temporaries). Measured at
the DMamba paper config (batch 64, 60 tokens, d_inner 256, d_state 16, fp32, 2 threads, torch 2.13;
median ms per call, candidates interleaved, on a shared machine):
    candidate                                          forward   forward+backward
    loop, autograd (selective_scan_ref)                  21        157
    Hillis-Steele doubling scan, autograd               481       2712
    Hillis-Steele in place, custom backward             292        452
    Blelloch up/down sweep in place, custom backward    192        381
    sequential, custom backward (selective_scan)         16         67
so forward+backward takes ~0.4-0.5x the reference's time (steady across runs); forward alone is
~0.8x, but within the machine's noise (0.6-1.2x over runs): both forwards are bound by the same
exp(delta A) work. `python scripts/bench_scan.py` prints current numbers. A loop that slices one precomputed
exp(delta A) tensor is far slower under autograd (~2.4 s forward+backward): each slice's backward
materializes a full-size gradient. On CUDA the mamba_ssm kernel is used instead.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from decision_seq.models.backbones import register_backbone

# ---------------------------------------------------------------------------------------------------
# Optional CUDA kernels
# ---------------------------------------------------------------------------------------------------

# Dtypes the mamba_ssm selective-scan kernel accepts for u / delta / B / C / z.
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class Kernels(NamedTuple):
    selective_scan_fn: Callable
    causal_conv1d_fn: Callable | None  # None when causal_conv1d is not installed


@functools.lru_cache(maxsize=None)
def load_kernels() -> Kernels | None:
    """The mamba_ssm (and, if present, causal_conv1d) kernel functions, or None when they do not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):  # not installed, or built against another torch / CUDA
        return None
    except Exception as err:  # a broken install of one of its optional dependencies: fall back, say so
        warnings.warn(f"mamba_ssm is installed but failed to import ({type(err).__name__}: {err}); "
                      "using the pure-PyTorch Mamba path", stacklevel=2)
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except (ImportError, OSError):
        causal_conv1d_fn = None
    return Kernels(selective_scan_fn, causal_conv1d_fn)


# ---------------------------------------------------------------------------------------------------
# Selective scan (layout: batch first, time second; mamba_ssm's kernels take (batch, channels, time))
# ---------------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
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
    dtype, cd = u.dtype, _compute_dtype(u.dtype)
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
    dtype, cd = u.dtype, _compute_dtype(u.dtype)
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


# ---------------------------------------------------------------------------------------------------
# Mixer
# ---------------------------------------------------------------------------------------------------


class MambaMixer(nn.Module):
    """Mamba mixer (B, T, d_model) -> (B, T, d_model); parameters and init as `mamba_ssm.Mamba`.

    use_kernels: None = mamba_ssm kernels when they import and the input is on CUDA (fp32/fp16/bf16);
    True = require them (error if unavailable); False = always PyTorch. `last_path` records the path
    of the last forward ("torch" or "kernel"). `step` always runs in PyTorch.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_kernels: bool | None = None,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.layer_idx = layer_idx
        if use_kernels is True and load_kernels() is None:
            raise RuntimeError(
                "MambaMixer(use_kernels=True) needs the mamba_ssm CUDA kernels, which failed to import; "
                "install mamba-ssm (and causal-conv1d) on a CUDA machine, or pass use_kernels=None/False"
            )
        self.use_kernels = use_kernels
        self.last_path: str | None = None

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, padding=d_conv - 1, groups=self.d_inner,
                                bias=conv_bias, **factory)  # depthwise; causal after trimming the right end
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self._init_dt(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

        # S4D-real init: A = -exp(A_log) = -(1, 2, ..., d_state) in each row; fp32 like mamba_ssm.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device)  # (d_state,)
        A = A.repeat(self.d_inner, 1)  # (d_inner, d_state)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # skip connection, fp32
        self.D._no_weight_decay = True
        # Created last, as in mamba_ssm, so a seed draws the same initial weights as there.
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _init_dt(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor) -> None:
        std = self.dt_rank**-0.5 * dt_scale  # keeps the variance of dt_proj's output at init
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        # softplus(bias) = dt, dt log-uniform in [dt_min, dt_max] (floored); bias = softplus^-1(dt).
        w = self.dt_proj.weight
        log_dt = torch.rand(self.d_inner, device=w.device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # mamba_ssm's model init skips biases flagged like this

    # -- forward -------------------------------------------------------------------------------------

    def _kernels_for(self, x: torch.Tensor) -> Kernels | None:
        if self.use_kernels is False:
            return None
        kernels = load_kernels()
        usable = kernels is not None and x.is_cuda and x.dtype in _KERNEL_DTYPES
        if self.use_kernels is True and not usable:
            raise RuntimeError(
                f"MambaMixer(use_kernels=True) got a {x.dtype} tensor on {x.device}; the mamba_ssm kernels "
                "need CUDA and fp32/fp16/bf16"
            )
        return kernels if usable else None

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states (B, T, d_model), mask (B, T) bool (True = real token) or None -> (B, T, d_model)."""
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (B, T, d_inner) each
        pad = None if mask is None else ~mask.to(torch.bool)[:, :, None]  # (B, T, 1)
        if pad is not None:
            # Departure from the official Decision Mamba code, which lets padding tokens flow into the
            # conv and the SSM state: padded conv inputs are zeroed here (the conv then sees what its own
            # causal zero padding would give) and the SSM input is zeroed after the conv (below), so the
            # state is still zero when the first real token of a left-padded window arrives and real
            # outputs equal those of the unpadded sequence.
            x = x.masked_fill(pad, 0.0)
        kernels = self._kernels_for(hidden_states)
        self.last_path = "torch" if kernels is None else "kernel"
        y = self._mix_torch(x, z, pad) if kernels is None else self._mix_kernel(x, z, pad, kernels)
        return self.out_proj(y)

    def _ssm_inputs(self, u: torch.Tensor):
        """u (B, T, d_inner) -> dt (B, T, d_inner) before bias and softplus, B and C (B, T, d_state)."""
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C  # the bias is added in fp32 (as the kernel does)

    def _mix_torch(self, x, z, pad) -> torch.Tensor:
        T = x.shape[1]
        u = F.silu(self.conv1d(x.transpose(1, 2))[..., :T].transpose(1, 2))  # (B, T, d_inner)
        if pad is not None:
            u = u.masked_fill(pad, 0.0)  # zero SSM input at padding (see forward)
        dt, B, C = self._ssm_inputs(u)
        cd = _compute_dtype(u.dtype)
        delta = F.softplus(dt.to(cd) + self.dt_proj.bias.to(cd))  # (B, T, d_inner), fp32 (fp64 in fp64)
        A = -torch.exp(self.A_log.to(cd))  # (d_inner, d_state)
        y = selective_scan(u, delta, A, B, C, self.D)  # (B, T, d_inner)
        return y * F.silu(z)

    def _mix_kernel(self, x, z, pad, kernels: Kernels) -> torch.Tensor:
        T = x.shape[1]
        x = x.transpose(1, 2).contiguous()  # (B, d_inner, T): the kernels' layout
        # causal_conv1d supports kernel widths 2..4 only; other widths use the PyTorch conv.
        if kernels.causal_conv1d_fn is not None and 2 <= self.d_conv <= 4:
            weight = self.conv1d.weight[:, 0]  # (d_inner, d_conv)
            u = kernels.causal_conv1d_fn(x, weight, self.conv1d.bias, activation="silu")  # (B, d_inner, T)
        else:
            u = F.silu(self.conv1d(x)[..., :T])
        if pad is not None:
            u = u.masked_fill(pad.transpose(1, 2), 0.0)  # zero SSM input at padding (see forward)
        dt, B, C = self._ssm_inputs(u.transpose(1, 2))  # (B, T, .)
        y = kernels.selective_scan_fn(
            u,
            dt.transpose(1, 2),  # (B, d_inner, T)
            -torch.exp(self.A_log.float()),  # (d_inner, d_state), fp32
            B.transpose(1, 2).contiguous(),  # (B, d_state, T)
            C.transpose(1, 2).contiguous(),
            D=self.D.float(),
            z=z.transpose(1, 2),  # gate: y * silu(z) inside the kernel
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )  # (B, d_inner, T)
        return y.transpose(1, 2)  # (B, T, d_inner)

    # -- incremental inference -----------------------------------------------------------------------

    def allocate_inference_cache(self, batch_size: int, dtype=None, device=None, **kwargs):
        """Zero (conv_state (B, d_inner, d_conv), ssm_state (B, d_inner, d_state)).

        Departure from mamba_ssm's signature (batch_size, max_seqlen, dtype=None): no max_seqlen (the
        Mamba cache does not depend on it); extra keywords such as max_seqlen= are accepted and ignored.
        """
        device = self.out_proj.weight.device if device is None else device
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device,
                                 dtype=self.conv1d.weight.dtype if dtype is None else dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                                dtype=self.dt_proj.weight.dtype if dtype is None else dtype)
        return conv_state, ssm_state

    def step(self, hidden_states: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor):
        """One token: hidden_states (B, 1, d_model) -> (out (B, 1, d_model), conv_state, ssm_state).

        The states are updated in place (as in mamba_ssm); O(1) in the number of tokens seen.
        """
        if hidden_states.shape[1] != 1:
            raise ValueError(f"step takes one token at a time, got shape {tuple(hidden_states.shape)}")
        x, z = self.in_proj(hidden_states[:, 0]).chunk(2, dim=-1)  # (B, d_inner) each
        # Conv over the last d_conv inputs: shift the window left, append x.
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = (conv_state * self.conv1d.weight[:, 0]).sum(-1)  # (B, d_inner)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        u = F.silu(x).to(z.dtype)
        dt, B, C = self._ssm_inputs(u)  # (B, d_inner), (B, d_state) x 2
        cd = _compute_dtype(u.dtype)
        delta = F.softplus(dt.to(cd) + self.dt_proj.bias.to(cd))  # (B, d_inner)
        decay = torch.exp(delta[:, :, None] * -torch.exp(self.A_log.to(cd)))  # (B, d_inner, d_state)
        h = decay * ssm_state.to(cd) + (delta * u.to(cd))[:, :, None] * B.to(cd)[:, None, :]
        ssm_state.copy_(h)
        y = (h * C.to(cd)[:, None, :]).sum(-1) + self.D.to(cd) * u.to(cd)  # (B, d_inner)
        y = y.to(z.dtype) * F.silu(z)
        return self.out_proj(y)[:, None], conv_state, ssm_state


# ---------------------------------------------------------------------------------------------------
# Decision Mamba block and backbone
# ---------------------------------------------------------------------------------------------------


class MambaBlock(nn.Module):
    """Decision Mamba block: x + Mamba(LN(x)), then x + MLP(LN(x)) with MLP = Linear-GELU-Linear-Dropout.

    As in the official code there is no dropout after the mixer, only at the end of the MLP.
    """

    def __init__(self, d_model: int, dropout: float, d_state: int, d_conv: int, expand: int,
                 use_kernels: bool | None, layer_idx: int | None = None):
        super().__init__()
        self.norm_mixer = nn.LayerNorm(d_model)
        self.mixer = MambaMixer(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                                use_kernels=use_kernels, layer_idx=layer_idx)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.mixer(self.norm_mixer(x), mask)
        return x + self.mlp(self.norm_mlp(x))

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x (B, 1, D); updates `state` = (conv_state, ssm_state) in place."""
        y, _, _ = self.mixer.step(self.norm_mixer(x), *state)
        x = x + y
        return x + self.mlp(self.norm_mlp(x))


INIT_CHOICES = ("mamba_ssm", "gpt2")


@register_backbone("mamba")
class MambaBackbone(nn.Module):
    """Stack of Decision Mamba blocks and a final LayerNorm; DMamba paper defaults (3 layers, d_state 16).

    init="gpt2" (default, as the official DMamba code, which runs HuggingFace's GPT-2 init over the
    whole stack): every Linear, the mixers' included, is redrawn from normal(0, 0.02) with zero bias, so
    dt_proj.bias = 0 (step size softplus(0) = 0.69); conv1d, A_log and D keep mamba_ssm's init.
    init="mamba_ssm" keeps mamba_ssm's mixer init (dt in [0.001, 0.1]) and redraws only the MLPs.
    On the demo (4 seeds) gpt2 scored 81.6 +- 14.5 and mamba_ssm 67.1 +- 16.4 (README, Models).
    """

    constant_time_step = True  # `step` is O(1) per token: evaluation can run it over a whole episode

    def __init__(self, d_model: int, n_layer: int = 3, dropout: float = 0.1, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, use_kernels: bool | None = None, init: str = "gpt2"):
        super().__init__()
        if init not in INIT_CHOICES:
            raise ValueError(f"mamba backbone init must be one of {', '.join(INIT_CHOICES)}, got {init!r}")
        self.blocks = nn.ModuleList(
            MambaBlock(d_model, dropout, d_state, d_conv, expand, use_kernels, layer_idx=i) for i in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(d_model)
        for block in self.blocks:
            for module in block.mlp if init == "mamba_ssm" else block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, T) bool (True = real token; windows are left-padded) -> (B, T, D)."""
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def forward_last(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The last token's output (B, D) of an unpadded window x (B, T, D), equal to forward(x)[:, -1];
        the last block's MLP runs on that token only (the scans still cover the whole window)."""
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        x = x[:, -1:] + last.mixer(last.norm_mixer(x))[:, -1:]
        return self.ln_f(x + last.mlp(last.norm_mlp(x)))[:, -1]

    def init_state(self, batch_size: int, device=None, dtype=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer zero (conv_state (B, d_inner, d_conv), ssm_state (B, d_inner, d_state))."""
        return [b.mixer.allocate_inference_cache(batch_size, dtype=dtype, device=device) for b in self.blocks]

    def step(self, x_t: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One token x_t (B, D) -> (y_t (B, D), state); equals forward's last position over all tokens fed."""
        x = x_t[:, None]  # (B, 1, D)
        for block, layer_state in zip(self.blocks, state):
            x = block.step(x, layer_state)
        return self.ln_f(x)[:, 0], state

    @staticmethod
    def reset_state(state: list, env_mask: torch.Tensor) -> list:
        """Zero, in place, the state rows of the batch entries where env_mask (B,) is True (e.g. new episodes)."""
        rows = env_mask.to(torch.bool)[:, None, None]  # (B, 1, 1)
        for conv_state, ssm_state in state:
            conv_state.masked_fill_(rows, 0.0)
            ssm_state.masked_fill_(rows, 0.0)
        return state
