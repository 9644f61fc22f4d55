"""Mamba's short causal depthwise conv with its silu and the padding mask, in the (B, T, d) layout.

`causal_conv1d_silu` computes silu(conv1d(x)) as mamba_ssm's Mamba does (conv1d with padding d_conv - 1,
trimmed to the first T outputs), with padded positions zeroed before and after (see MambaMixer.forward).
On the CPU it uses the fused kernel of scan_cpu.c when that builds; elsewhere, or with impl="torch",
one multiply-add per tap in PyTorch. Both stay in (B, T, d): no transposes to conv1d's (B, d, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from decision_seq.models.ops.scan_cpu import conv_bwd, conv_fwd, load_scan_cpu


def _conv_torch(x, weight, bias, pad):
    """x (B, T, d), weight (d, K), bias (d,) or None, pad (B, T, 1) bool or None -> (B, T, d)."""
    if pad is not None:
        x = x.masked_fill(pad, 0.0)
    T, K = x.shape[1], weight.shape[1]
    # out_t = bias + sum_s weight[:, K - 1 - s] x_{t-s}: conv1d's cross-correlation over the left-padded input
    out = x * weight[:, K - 1] if bias is None else torch.addcmul(bias, x, weight[:, K - 1])
    for s in range(1, min(K, T)):
        out[:, s:].addcmul_(x[:, : T - s], weight[:, K - 1 - s])
    u = F.silu(out)
    return u if pad is None else u.masked_fill(pad, 0.0)


class _FusedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lib, x, weight, bias, keep):
        wT = weight.t().contiguous()  # (K, d)
        ctx.lib = lib
        ctx.save_for_backward(x, wT, bias, keep)
        return conv_fwd(lib, x, wT, bias, keep)

    @staticmethod
    def backward(ctx, gu):
        x, wT, bias, keep = ctx.saved_tensors
        gx, gwT, gbias = conv_bwd(ctx.lib, x, wT, bias, keep, gu.to(x.dtype).contiguous())
        return None, gx, gwT.t(), gbias, None


def causal_conv1d_silu(x, weight, bias=None, mask=None, impl: str = "auto") -> torch.Tensor:
    """silu(causal depthwise conv of x) with padding zeroed.

    x (B, T, d) (a strided chunk view is read in place by the kernel), weight (d, K) (conv1d.weight[:, 0]),
    bias (d,) or None, mask (B, T) bool (True = real token) or None; impl "auto", "fused" or "torch".
    """
    lib = load_scan_cpu(x.dtype) if impl != "torch" and x.device.type == "cpu" else None
    if lib is None or weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        if impl == "fused":
            raise RuntimeError("the fused CPU conv is unavailable for this input (CPU fp32/fp64, compiler needed)")
        return _conv_torch(x, weight, bias, None if mask is None else ~mask.to(torch.bool)[:, :, None])
    keep = None if mask is None else mask.to(torch.uint8).contiguous()
    return _FusedConv.apply(lib, x, weight, None if bias is None else bias.contiguous(), keep)
