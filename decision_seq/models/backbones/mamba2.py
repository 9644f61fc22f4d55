"""Mamba-2 backbone: a pure-PyTorch Mamba-2 mixer in Decision Mamba blocks, registered as "mamba2".

Follows Dao & Gu 2024 (Transformers are SSMs: Generalized Models and Efficient Algorithms Through
Structured State Space Duality, arXiv 2405.21060) for the mixer, and Ota 2024 (Decision Mamba, arXiv
2403.19925) for the block: x + Mixer(LN(x)), then x + MLP(LN(x)), a final LayerNorm after the stack
(`MixerBlock` / `MixerStack`, shared with the Mamba-1 backbone in mamba.py).

`Mamba2Mixer` is a twin of `mamba_ssm.Mamba2` (mamba_ssm/modules/mamba2.py, mamba-ssm 2.x): same
constructor arguments, parameter names, shapes and initialization, so state_dicts load either way.
One in_proj gives [z, x, B, C, dt] (plus the optional gated-MLP part [z0, x0] in front when d_ssm <
d_inner); a depthwise causal conv runs over xBC; the SSD scan (models/ops/ssd.py) has one scalar decay
A per head; the output is gated by a grouped RMSNorm, norm(y * silu(z)) (mamba_ssm's RMSNormGated from
ops/triton/layernorm_gated.py, here in PyTorch), then out_proj.

Kernels: with use_kernels=None the mixer calls mamba_ssm's Triton `mamba_chunk_scan_combined` (and
causal_conv1d when installed) when they import and the input is on CUDA, loaded lazily by
`load_ssd_kernels` (models/ops/kernels.py); nothing CUDA-only is imported at import time. The kernel path
is checked on the CPU against mamba_ssm's own code over stand-in extensions
(tests/models/ops/test_mamba_ssm_standin.py; the Triton scan runs in Triton's interpreter in the slow
tests); it has not yet run on a GPU. The pure-PyTorch path (chunked SSD) runs on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from decision_seq.models.backbones import register_backbone
from decision_seq.models.backbones.base import check_depth
from decision_seq.models.backbones.mamba import MixerBlock, MixerStack, check_init
from decision_seq.models.ops.kernels import SSDKernels, kernels_for, load_ssd_kernels
from decision_seq.models.ops.selective_scan import compute_dtype
from decision_seq.models.ops.ssd import DEFAULT_CHUNK_SIZE, ssd_chunked, ssd_ref

__all__ = ["Mamba2Backbone", "Mamba2Mixer", "RMSNormGated", "load_ssd_kernels"]

SCAN_IMPLS = ("chunked", "reference")

# ---------------------------------------------------------------------------------------------------
# Gated RMSNorm
# ---------------------------------------------------------------------------------------------------


class RMSNormGated(nn.Module):
    """Grouped RMSNorm with a SiLU gate, as mamba_ssm.ops.triton.layernorm_gated.RMSNorm (no bias).

    norm_before_gate=False (Mamba-2's choice): rmsnorm(x * silu(z)) * weight; True: rmsnorm(x) * weight
    * silu(z). The RMS is taken over groups of group_size channels (None = all). Computed in fp32.
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        group_size: int | None = None,
        norm_before_gate: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.eps = eps
        self.group_size = hidden_size if group_size is None else group_size
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        dtype, cd = x.dtype, compute_dtype(x.dtype)
        x = x.to(cd)
        if z is not None and not self.norm_before_gate:
            x = x * F.silu(z.to(cd))
        xg = x.unflatten(-1, (-1, self.group_size))  # (..., groups, group_size)
        x = (xg * torch.rsqrt(xg.square().mean(-1, keepdim=True) + self.eps)).flatten(-2) * self.weight.to(cd)
        if z is not None and self.norm_before_gate:
            x = x * F.silu(z.to(cd))
        return x.to(dtype)


# ---------------------------------------------------------------------------------------------------
# Mixer
# ---------------------------------------------------------------------------------------------------


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer (B, T, d_model) -> (B, T, d_model); arguments, parameters and init as `mamba_ssm.Mamba2`.

    use_kernels: None = mamba_ssm's Triton SSD kernel when it imports and the input is on CUDA (untested
    here); True = require it; False = always PyTorch. `last_path` records the path of the last forward
    ("torch" or "kernel"). `scan_impl` ("chunked", default, or "reference": the sequential oracle, for
    tests and scripts/bench_ssd.py) picks the PyTorch scan. `step` always runs in PyTorch.

    Departures from mamba_ssm.Mamba2: no tensor parallelism (process_group must be None;
    sequence_parallel is accepted and unused); use_mem_eff_path is accepted and unused: its fused kernel
    (mamba_split_conv1d_scan_combined) runs the conv inside and cannot mask left padding, so the kernel
    path here calls the unfused mamba_chunk_scan_combined; forward takes a mask instead of
    seqlen / seq_idx / cu_seqlens / inference_params; the PyTorch `step` supports any ngroups.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        d_ssm: int | None = None,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        use_mem_eff_path: bool = True,
        layer_idx: int | None = None,
        process_group=None,
        sequence_parallel: bool = True,
        use_kernels: bool | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.conv_init = conv_init
        self.d_inner = int(expand * d_model)
        self.headdim = headdim
        self.d_ssm = self.d_inner if d_ssm is None else d_ssm
        self.ngroups = ngroups
        self._validate(process_group, A_init_range, chunk_size)
        self.nheads = self.d_ssm // headdim
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit = tuple(dt_limit)
        self.activation = "silu"
        self.chunk_size = chunk_size
        self.use_mem_eff_path = use_mem_eff_path
        self.layer_idx = layer_idx
        self.process_group, self.sequence_parallel = process_group, sequence_parallel
        if use_kernels is True and load_ssd_kernels() is None:
            raise RuntimeError(
                "Mamba2Mixer(use_kernels=True) needs mamba_ssm's Triton SSD kernel, which failed to import; "
                "install mamba-ssm on a CUDA machine, or pass use_kernels=None/False"
            )
        self.use_kernels = use_kernels
        self.scan_impl = "chunked"
        self.last_path: str | None = None

        # Parameters in mamba_ssm's creation order, so a seed draws the same initial weights as there.
        # in_proj order: [z0, x0 (gated MLP, d_inner - d_ssm each), z (d_ssm), x (d_ssm), B, C (ngroups * d_state
        # each), dt (nheads)].
        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias, **factory)
        self.conv_dim = self.d_ssm + 2 * ngroups * d_state  # the conv runs over x, B and C
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, d_conv, padding=d_conv - 1, groups=self.conv_dim, bias=conv_bias, **factory
        )  # depthwise; causal after trimming the right end
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)

        # One step size per head: softplus(dt_bias) = dt, log-uniform in [dt_min, dt_max] (floored).
        dt = torch.exp(torch.rand(self.nheads, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_bias._no_weight_decay = True

        # One scalar decay per head (Mamba-2's restriction of Mamba's diagonal A): A = -exp(A_log) ~ -U(A_init_range).
        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_ssm if D_has_hdim else self.nheads, device=device))  # skip, fp32
        self.D._no_weight_decay = True
        if rmsnorm:
            self.norm = RMSNormGated(
                self.d_ssm, eps=1e-5, norm_before_gate=norm_before_gate, group_size=self.d_ssm // ngroups, **factory
            )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _validate(self, process_group, A_init_range, chunk_size) -> None:
        # ValueErrors where mamba_ssm asserts; only integer arithmetic (the mixer is built on the meta device).
        if process_group is not None:
            raise ValueError("Mamba2Mixer has no tensor parallelism: process_group must be None")
        for name in ("d_model", "d_state", "d_conv", "headdim", "ngroups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Mamba-2 {name} must be an integer >= 1, got {value!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"Mamba-2 chunk_size must be an integer >= 1, got {chunk_size!r}")
        if self.d_inner != self.expand * self.d_model or self.d_inner < 1:
            raise ValueError(f"Mamba-2 expand * d_model must be a positive integer, got {self.expand} * {self.d_model}")
        if not 0 < self.d_ssm <= self.d_inner:
            raise ValueError(f"Mamba-2 d_ssm must be in 1..d_inner={self.d_inner}, got {self.d_ssm}")
        if self.d_ssm % self.headdim:
            raise ValueError(
                f"Mamba-2 d_ssm (= expand * d_model = {self.d_ssm} unless given) must be divisible by "
                f"headdim={self.headdim}"
            )
        if (self.d_ssm // self.headdim) % self.ngroups:
            raise ValueError(f"Mamba-2 nheads={self.d_ssm // self.headdim} must be divisible by ngroups={self.ngroups}")
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"Mamba-2 A_init_range must be (low, high) with 0 < low <= high, got {A_init_range}")

    # -- forward -------------------------------------------------------------------------------------

    def _kernels_for(self, x: torch.Tensor) -> SSDKernels | None:
        return kernels_for(self.use_kernels, load_ssd_kernels, x, "Mamba2Mixer")

    def _split(self, zxbcdt: torch.Tensor):
        """in_proj output (..., d_in_proj) -> z0, x0, z, xBC, dt (mamba_ssm's order)."""
        d_mlp = self.d_inner - self.d_ssm
        return zxbcdt.split([d_mlp, d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1)

    def _dt(self, dt: torch.Tensor) -> torch.Tensor:
        """Raw dt (..., nheads) -> softplus(dt + dt_bias), clamped to dt_limit; fp32 (fp64 in fp64)."""
        cd = compute_dtype(dt.dtype)
        dt = F.softplus(dt.to(cd) + self.dt_bias.to(cd))
        if self.dt_limit != (0.0, float("inf")):
            dt = dt.clamp(min=self.dt_limit[0], max=self.dt_limit[1])
        return dt

    def _gate(self, y: torch.Tensor, z: torch.Tensor, z0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """SSM output y (..., d_ssm) -> out_proj input (..., d_inner): gated norm (or gate), gated-MLP part."""
        y = self.norm(y, z) if self.rmsnorm else y * F.silu(z)
        if x0.shape[-1] > 0:
            y = torch.cat([F.silu(z0) * x0, y], dim=-1)
        return y

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states (B, T, d_model), mask (B, T) bool (True = real token) or None -> (B, T, d_model)."""
        Bsz, T, _ = hidden_states.shape
        z0, x0, z, xBC, dt = self._split(self.in_proj(hidden_states))  # (B, T, .) each
        pad = None if mask is None else ~mask.to(torch.bool)[:, :, None]  # (B, T, 1)
        if pad is not None:
            # Departure from the official Decision Mamba code (padding flows into the state), as in mamba.py:
            # padded conv inputs are zeroed (the conv then sees its own causal zero padding) and, after the
            # conv, the SSM input x and the step dt are zeroed (below), so the state is still zero when the
            # first real token of a left-padded window arrives. Zeroing dt too (decay 1, no input) keeps the
            # chunked scan's cumulative decays free of the padding's content.
            xBC = xBC.masked_fill(pad, 0.0)
        kernels = self._kernels_for(hidden_states)
        self.last_path = "torch" if kernels is None else "kernel"
        if kernels is not None and kernels.causal_conv1d_fn is not None and 2 <= self.d_conv <= 4:
            weight = self.conv1d.weight[:, 0]  # (conv_dim, d_conv)
            xBC = xBC.transpose(1, 2)  # (B, conv_dim, T), channel-last in memory (a slice of in_proj's output)
            if xBC.size(1) % 8 or xBC.stride(0) % 8 or xBC.stride(2) % 8:
                # causal_conv1d refuses channel-last input unless channels and strides are multiples of 8
                # (csrc/causal_conv1d.cpp), e.g. with 4 heads: use its (B, conv_dim, T)-contiguous layout then.
                xBC = xBC.contiguous()
            xBC = kernels.causal_conv1d_fn(xBC, weight, self.conv1d.bias, activation="silu")
            xBC = xBC.transpose(1, 2)  # (B, T, conv_dim)
        else:
            xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :T].transpose(1, 2))  # (B, T, conv_dim)
        x, B, C = xBC.split([self.d_ssm, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        dt = self._dt(dt)  # (B, T, nheads)
        if pad is not None:
            x, dt = x.masked_fill(pad, 0.0), dt.masked_fill(pad, 0.0)  # see above
        x = x.unflatten(-1, (self.nheads, self.headdim))  # (B, T, nheads, headdim)
        B = B.unflatten(-1, (self.ngroups, self.d_state))  # (B, T, ngroups, d_state)
        C = C.unflatten(-1, (self.ngroups, self.d_state))
        D = self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D  # (nheads[, headdim])
        if kernels is None:
            A = -torch.exp(self.A_log.to(compute_dtype(x.dtype)))  # (nheads,)
            if self.scan_impl == "chunked":
                y = ssd_chunked(x, dt, A, B, C, chunk_size=self.chunk_size, D=D)  # (B, T, nheads, headdim)
            elif self.scan_impl == "reference":
                y = ssd_ref(x, dt, A, B, C, D=D)
            else:
                raise ValueError(
                    f"Mamba2Mixer.scan_impl must be one of {', '.join(SCAN_IMPLS)}, got {self.scan_impl!r}"
                )
        else:
            # Checked on the CPU over stand-ins, not yet on a GPU: dt is passed already discretized and masked,
            # hence no dt_bias / softplus.
            y = kernels.mamba_chunk_scan_combined(
                x.contiguous(),
                dt.contiguous(),
                -torch.exp(self.A_log.float()),
                B.contiguous(),
                C.contiguous(),
                chunk_size=self.chunk_size,
                D=D.float(),
            )
        y = y.flatten(-2)  # (B, T, d_ssm)
        return self.out_proj(self._gate(y, z, z0, x0))

    # -- incremental inference -----------------------------------------------------------------------

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int | None = None, dtype=None, device=None, **kw):
        """Zero (conv_state (B, conv_dim, d_conv), ssm_state (B, nheads, headdim, d_state)).

        Departure from mamba_ssm's signature (batch_size, max_seqlen, dtype=None): max_seqlen is optional
        (the cache does not depend on it) and device may be given.
        """
        device = self.out_proj.weight.device if device is None else device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.in_proj.weight.dtype if dtype is None else dtype
        conv_state = torch.zeros(batch_size, self.conv_dim, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device, dtype=ssm_dtype)
        return conv_state, ssm_state

    def step(self, hidden_states: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor):
        """One token: hidden_states (B, 1, d_model) -> (out (B, 1, d_model), conv_state, ssm_state).

        The states are updated in place (as in mamba_ssm); O(1) in the number of tokens seen.
        """
        if hidden_states.shape[1] != 1:
            raise ValueError(f"step takes one token at a time, got shape {tuple(hidden_states.shape)}")
        dtype = hidden_states.dtype
        z0, x0, z, xBC, dt = self._split(self.in_proj(hidden_states[:, 0]))  # (B, .) each
        # Conv over the last d_conv inputs: shift the window left, append xBC.
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = xBC
        xBC = (conv_state * self.conv1d.weight[:, 0]).sum(-1)  # (B, conv_dim)
        if self.conv1d.bias is not None:
            xBC = xBC + self.conv1d.bias
        xBC = F.silu(xBC).to(dtype)
        x, B, C = xBC.split([self.d_ssm, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        cd = compute_dtype(dtype)
        dt = self._dt(dt)  # (B, nheads)
        decay = torch.exp(dt * -torch.exp(self.A_log.to(cd)))  # (B, nheads)
        x = x.to(cd).unflatten(-1, (self.nheads, self.headdim))  # (B, nheads, headdim)
        r = self.nheads // self.ngroups
        B = B.to(cd).unflatten(-1, (self.ngroups, self.d_state)).repeat_interleave(r, dim=1)  # (B, nheads, d_state)
        C = C.to(cd).unflatten(-1, (self.ngroups, self.d_state)).repeat_interleave(r, dim=1)
        h = decay[:, :, None, None] * ssm_state.to(cd) + (dt[:, :, None] * x)[..., None] * B[:, :, None, :]
        ssm_state.copy_(h)  # (B, nheads, headdim, d_state)
        y = (h @ C[..., None])[..., 0]  # (B, nheads, headdim)
        D = self.D.to(cd).view(self.nheads, self.headdim) if self.D_has_hdim else self.D.to(cd)[:, None]
        y = (y + D * x).flatten(-2).to(dtype)  # (B, d_ssm)
        return self.out_proj(self._gate(y, z, z0, x0))[:, None], conv_state, ssm_state


# ---------------------------------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------------------------------


@register_backbone("mamba2")
class Mamba2Backbone(MixerStack):
    """Decision Mamba blocks (mamba.MixerBlock) with the Mamba-2 mixer, and a final LayerNorm.

    Defaults are Mamba-2's scaled to this suite's widths (conf/model/dmamba2.yaml says why): d_state 64,
    headdim 32, expand 2, d_conv 4, ngroups 1, chunk_size 64 (the PyTorch scan's measured best for 60-token
    windows; mamba_ssm's own default is 256). init as the Mamba backbone (mamba.MixerStack): "gpt2" (the
    official DMamba code's) redraws in_proj, out_proj and the MLPs from N(0, 0.02); dt_bias, A_log, D,
    conv1d and norm.weight keep mamba_ssm's init (dt_bias is not a Linear bias, so unlike Mamba-1's
    dt_proj.bias it is not zeroed); "mamba_ssm" keeps the mixer's init and redraws only the MLPs.
    """

    def __init__(
        self,
        d_model: int,
        dropout: float = 0.1,
        n_layer: int = 3,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 32,
        ngroups: int = 1,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        use_kernels: bool | None = None,
        init: str = "gpt2",
    ):
        check_depth(n_layer)
        check_init(init, "mamba2")
        kw = {
            "d_state": d_state,
            "d_conv": d_conv,
            "expand": expand,
            "headdim": headdim,
            "ngroups": ngroups,
            "chunk_size": chunk_size,
            "use_kernels": use_kernels,
        }
        blocks = [MixerBlock(d_model, dropout, Mamba2Mixer(d_model, layer_idx=i, **kw)) for i in range(n_layer)]
        super().__init__(blocks, d_model, init)
