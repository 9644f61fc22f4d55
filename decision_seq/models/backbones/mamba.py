"""Mamba backbone for Decision Mamba: a pure-PyTorch Mamba mixer, the DMamba block, and the registered backbone.

Follows Gu & Dao 2023 (Mamba: Linear-Time Sequence Modeling with Selective State Spaces, arXiv
2312.00752) for the mixer and Ota 2024 (Decision Mamba, arXiv 2403.19925) for the block:
x + Mamba(LN(x)), then x + MLP(LN(x)), with a final LayerNorm after the stack.

`MambaMixer` is a twin of `mamba_ssm.Mamba` (mamba-ssm 2.3): same constructor arguments, parameter
names, shapes and initialization, so state_dicts load either way. It runs in plain PyTorch on any
device (the conv in models/ops/causal_conv.py, the selective scan in models/ops/selective_scan.py; on
the CPU both use the fused kernels of models/ops/scan_cpu.c when a C compiler is present) and switches
to the mamba_ssm / causal_conv1d CUDA kernels when they import and the input is on CUDA. The CUDA
kernels are imported lazily by `load_kernels` (models/ops/kernels.py, re-exported here), so this module
imports on machines without mamba_ssm (which cannot even be imported without its CUDA extension).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from decision_seq.models.backbones import register_backbone
from decision_seq.models.backbones.base import BackboneBase, check_depth
from decision_seq.models.ops.causal_conv import causal_conv1d_silu
from decision_seq.models.ops.kernels import Kernels, kernels_for, load_kernels
from decision_seq.models.ops.selective_scan import compute_dtype, selective_scan

__all__ = ["MambaBackbone", "MambaBlock", "MambaMixer", "MixerBlock", "MixerStack", "load_kernels"]

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
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, padding=d_conv - 1, groups=self.d_inner, bias=conv_bias, **factory
        )  # depthwise; causal after trimming the right end
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
        return kernels_for(self.use_kernels, load_kernels, x, "MambaMixer")

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states (B, T, d_model), mask (B, T) bool (True = real token) or None -> (B, T, d_model)."""
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (B, T, d_inner) each
        # Departure from the official Decision Mamba code, which lets padding tokens flow into the
        # conv and the SSM state: padded conv inputs are zeroed (the conv then sees what its own causal
        # zero padding would give) and the SSM input is zeroed after the conv, so the state is still
        # zero when the first real token of a left-padded window arrives and real outputs equal those
        # of the unpadded sequence. The PyTorch path does both inside `causal_conv1d_silu`.
        kernels = self._kernels_for(hidden_states)
        self.last_path = "torch" if kernels is None else "kernel"
        if kernels is None:
            return self.out_proj(self._mix_torch(x, z, mask))
        pad = None if mask is None else ~mask.to(torch.bool)[:, :, None]  # (B, T, 1)
        if pad is not None:
            x = x.masked_fill(pad, 0.0)
        return self.out_proj(self._mix_kernel(x, z, pad, kernels))

    def _ssm_inputs(self, u: torch.Tensor):
        """u (B, T, d_inner) -> dt (B, T, d_inner) before bias and softplus, B and C (B, T, d_state)."""
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C  # the bias is added in fp32 (as the kernel does)

    def _mix_torch(self, x, z, mask) -> torch.Tensor:
        """x, z (B, T, d_inner) (chunks of in_proj's output), mask (B, T) or None -> gated SSM output.

        Departure from mamba_ssm's PyTorch path for speed only, same math: the conv runs in the (B, T, d)
        layout (no transposes) and, on the CPU, the conv + silu + mask and the scan + D + gate each run
        as one fused kernel (models/ops/scan_cpu.c), as mamba_ssm's CUDA kernels fuse them.
        """
        u = causal_conv1d_silu(x, self.conv1d.weight[:, 0], self.conv1d.bias, mask)  # (B, T, d_inner)
        dt, B, C = self._ssm_inputs(u)
        A = -torch.exp(self.A_log.to(compute_dtype(u.dtype)))  # (d_inner, d_state), fp32 (fp64 in fp64)
        # step softplus(dt + dt_proj.bias) and gate silu(z) inside the scan, in fp32 (as the kernel does)
        y = selective_scan(u, dt, A, B, C, self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True)
        return y.to(z.dtype)  # (B, T, d_inner)

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
        conv_state = torch.zeros(
            batch_size,
            self.d_inner,
            self.d_conv,
            device=device,
            dtype=self.conv1d.weight.dtype if dtype is None else dtype,
        )
        ssm_state = torch.zeros(
            batch_size,
            self.d_inner,
            self.d_state,
            device=device,
            dtype=self.dt_proj.weight.dtype if dtype is None else dtype,
        )
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
        cd = compute_dtype(u.dtype)
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


class MixerBlock(nn.Module):
    """Decision Mamba block around a sequence mixer: x + mixer(LN(x)), then x + MLP(LN(x)) with
    MLP = Linear-GELU-Linear-Dropout. Shared by the Mamba and Mamba-2 backbones (mamba2.py).

    As in the official code there is no dropout after the mixer, only at the end of the MLP. The mixer
    takes (x (B, T, D), mask) and has mamba_ssm's `step(x (B, 1, D), *state)` and
    `allocate_inference_cache(batch_size, dtype=, device=)`.
    """

    def __init__(self, d_model: int, dropout: float, mixer: nn.Module):
        super().__init__()
        self.norm_mixer = nn.LayerNorm(d_model)
        self.mixer = mixer  # built by the caller before the MLP, so a seed draws the same weights as before
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

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """x (B, 1, D); updates the mixer's `state` (conv_state, ssm_state) in place."""
        y, *_ = self.mixer.step(self.norm_mixer(x), *state)
        x = x + y
        return x + self.mlp(self.norm_mlp(x))


class MambaBlock(MixerBlock):
    """Decision Mamba block with the Mamba mixer."""

    def __init__(
        self,
        d_model: int,
        dropout: float,
        d_state: int,
        d_conv: int,
        expand: int,
        use_kernels: bool | None,
        layer_idx: int | None = None,
    ):
        mixer = MambaMixer(
            d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand, use_kernels=use_kernels, layer_idx=layer_idx
        )
        super().__init__(d_model, dropout, mixer)


INIT_CHOICES = ("mamba_ssm", "gpt2")


def check_init(init: str, backbone: str) -> None:
    if init not in INIT_CHOICES:
        raise ValueError(f"{backbone} backbone init must be one of {', '.join(INIT_CHOICES)}, got {init!r}")


class MixerStack(BackboneBase):
    """A stack of `MixerBlock`s and a final LayerNorm, with O(1) recurrent `step`: the body of the Mamba and
    Mamba-2 backbones, which build the blocks (already validated) and pass them here.

    init="gpt2" (as the official DMamba code, which runs HuggingFace's GPT-2 init over the whole stack):
    every Linear, the mixers' included, is redrawn from normal(0, 0.02) with zero bias; other mixer
    parameters (conv1d, A_log, D, ...) keep mamba_ssm's init. init="mamba_ssm" keeps mamba_ssm's mixer
    init and redraws only the MLPs.
    """

    constant_time_step = True  # `step` is O(1) per token: evaluation can run it over a whole episode

    def __init__(self, blocks: list[MixerBlock], d_model: int, init: str):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
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
        """Per-layer zero (conv_state, ssm_state), as the mixer's `allocate_inference_cache`."""
        return [b.mixer.allocate_inference_cache(batch_size, dtype=dtype, device=device) for b in self.blocks]

    def step(self, x_t: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One token x_t (B, D) -> (y_t (B, D), state); equals forward's last position over all tokens fed."""
        x = x_t[:, None]  # (B, 1, D)
        for block, layer_state in zip(self.blocks, state, strict=True):
            x = block.step(x, layer_state)
        return self.ln_f(x)[:, 0], state


@register_backbone("mamba")
class MambaBackbone(MixerStack):
    """Stack of Decision Mamba blocks and a final LayerNorm; DMamba paper defaults (3 layers, d_state 16).

    init="gpt2" (default, the official DMamba code's; see MixerStack): dt_proj is a Linear, so
    dt_proj.bias = 0 (step size softplus(0) = 0.69); init="mamba_ssm" keeps dt in [0.001, 0.1].
    On the demo (4 seeds) gpt2 scored 81.6 +- 14.5 and mamba_ssm 67.1 +- 16.4 (README, Models).
    """

    def __init__(
        self,
        d_model: int,
        n_layer: int = 3,
        dropout: float = 0.1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        use_kernels: bool | None = None,
        init: str = "gpt2",
    ):
        check_depth(n_layer)
        check_init(init, "mamba")
        blocks = [
            MambaBlock(d_model, dropout, d_state, d_conv, expand, use_kernels, layer_idx=i) for i in range(n_layer)
        ]
        super().__init__(blocks, d_model, init)
