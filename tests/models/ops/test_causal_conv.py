"""Mamba's causal conv + silu + padding mask (models/ops/causal_conv.py), PyTorch and fused CPU kernel,
against nn.Conv1d as mamba_ssm's PyTorch path runs it, values and gradients in fp64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decision_seq.models.ops.causal_conv import causal_conv1d_silu
from decision_seq.models.ops.scan_cpu import load_scan_cpu

F64 = torch.float64
IMPLS = [
    "torch",
    pytest.param(
        "fused",
        marks=pytest.mark.skipif(
            (load_scan_cpu(torch.float32) is None or load_scan_cpu(torch.float64) is None),
            reason="the fused CPU kernel did not build",
        ),
    ),
]


def _oracle(x, weight, bias, mask):
    """conv1d on (B, d, T) with padding K - 1 trimmed to T, inputs and outputs zeroed at padding."""
    keep = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask
    x = x * keep[..., None]
    T, K = x.shape[1], weight.shape[1]
    out = F.conv1d(x.transpose(1, 2), weight[:, None], bias, padding=K - 1, groups=x.shape[2])[..., :T]
    return F.silu(out.transpose(1, 2)) * keep[..., None]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("K", "T"), [(4, 9), (4, 3), (4, 1), (2, 9), (1, 5)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_causal_conv_equals_conv1d_fp64(impl, K, T, masked, with_bias):
    g = torch.Generator().manual_seed(K * 100 + T)
    b, d = 3, 8
    xz = torch.randn(b, T, 2 * d, generator=g, dtype=F64, requires_grad=True)
    x = xz[..., :d]  # a chunk of in_proj's output, as the mixer passes it
    weight = torch.randn(d, K, generator=g, dtype=F64, requires_grad=True)
    bias = torch.randn(d, generator=g, dtype=F64, requires_grad=True) if with_bias else None
    mask = None
    if masked:  # left padding, as the sampler's windows have
        mask = torch.ones(b, T, dtype=torch.bool)
        mask[0, : min(2, T - 1)] = False
        mask[2, : T // 2] = False
    y_ref = _oracle(x, weight, bias, mask)
    y = causal_conv1d_silu(x, weight, bias, mask, impl=impl)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    ins = [xz, weight] + ([bias] if with_bias else [])
    gy = torch.randn_like(y)
    for a, r in zip(torch.autograd.grad(y, ins, gy), torch.autograd.grad(y_ref, ins, gy), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
