"""Selective scan (models/ops/selective_scan.py): the fast scan against the loop oracle, values and
gradients, in fp64 (1e-12), fp32 and bf16; a gradcheck of the hand-written backward."""

from __future__ import annotations

import torch

from decision_seq.models.ops.selective_scan import selective_scan, selective_scan_ref

F64 = torch.float64


def _scan_inputs(b=3, L=13, d=8, n=5, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, L, d, generator=g, dtype=dtype)
    delta = torch.rand(b, L, d, generator=g, dtype=dtype) * 3
    delta[0] *= 10  # large steps: decays underflow towards 0
    A = -torch.rand(d, n, generator=g, dtype=dtype) * 4 - 0.1
    B = torch.randn(b, L, n, generator=g, dtype=dtype)
    C = torch.randn(b, L, n, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (u, delta, A, B, C, D)]


def test_fast_scan_equals_loop_fp64():
    ins = _scan_inputs()
    y_ref = selective_scan_ref(*ins)
    y = selective_scan(*ins)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    gy = torch.randn_like(y)
    g_ref = torch.autograd.grad(y_ref, ins, gy)
    g = torch.autograd.grad(y, ins, gy)
    for name, a, b in zip(["u", "delta", "A", "B", "C", "D"], g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"grad {name}")
    with torch.no_grad():  # the no-grad path skips storing states
        torch.testing.assert_close(selective_scan(*ins), y_ref.detach(), rtol=1e-12, atol=1e-12)


def test_fast_scan_gradcheck():
    ins = [x.detach()[:2, :5].clone().requires_grad_() if x.dim() == 3 else x for x in _scan_inputs(d=4, n=3)]
    assert torch.autograd.gradcheck(selective_scan, ins)


def test_fast_scan_fp32_close_to_fp64_loop():
    ins64 = _scan_inputs(b=4, L=40, d=16, n=8, seed=1)
    ins32 = [x.detach().float().requires_grad_() for x in ins64]
    y64 = selective_scan_ref(*ins64)
    y32 = selective_scan(*ins32)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    g64 = torch.autograd.grad(y64.sum(), ins64)
    g32 = torch.autograd.grad(y32.sum(), ins32)
    for a, b in zip(g32, g64, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-3)


def test_scan_bf16_inputs_compute_in_fp32():
    ins = [x.detach() for x in _scan_inputs(dtype=torch.float32)]
    y = selective_scan(*(x.bfloat16() for x in ins))
    assert y.dtype == torch.bfloat16
    ref = selective_scan_ref(*(x.bfloat16().float() for x in ins))
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)
