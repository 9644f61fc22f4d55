"""Selective scan (models/ops/selective_scan.py): the fast scans (PyTorch, and the fused CPU kernel of
scan_cpu.c) against the loop oracle, values and gradients, in fp64 (1e-12), fp32 and bf16, with every
fused option (D, gate, delta bias, softplus); gradchecks of the hand-written backwards; the fallback."""

from __future__ import annotations

import pytest
import torch

from decision_seq.models.ops.scan_cpu import load_scan_cpu
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


# -- the fused CPU kernel (scan_cpu.c) and the fused prologue / epilogue ----------------------------------

needs_fused = pytest.mark.skipif(
    (load_scan_cpu(torch.float32) is None or load_scan_cpu(torch.float64) is None),
    reason="no C compiler: the fused CPU scan did not build",
)


def _extras(b=3, L=13, d=8, dtype=F64, seed=1):
    """z as a strided chunk view (as the mixer passes it) and a delta bias."""
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(b, L, 2 * d, generator=g, dtype=dtype) * 3).requires_grad_()
    return z, z[..., d:], (torch.randn(d, generator=g, dtype=dtype)).requires_grad_()


@pytest.mark.parametrize("impl", ["torch", pytest.param("fused", marks=needs_fused)])
@pytest.mark.parametrize("with_D", [True, False])
@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("softplus", [True, False])
def test_scan_impls_equal_loop_fp64(impl, with_D, gate, softplus):
    """Every option of the fast scans (D term, silu(z) gate, delta bias and softplus) against the loop
    oracle in fp64, values and gradients of every input."""
    u, delta, A, B, C, D = _scan_inputs()
    z_base, z, delta_bias = _extras()
    if softplus:  # raw steps of either sign, some past softplus's threshold of 20
        delta = (delta.detach() * 4 - 6).requires_grad_()
        with torch.no_grad():
            delta[1, :, 0] = 25.0
    kw = {"z": z if gate else None, "delta_bias": delta_bias, "delta_softplus": softplus}
    D = D if with_D else None
    y_ref = selective_scan_ref(u, delta, A, B, C, D, **kw)
    y = selective_scan(u, delta, A, B, C, D, impl=impl, **kw)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    ins = [x for x in (u, delta, A, B, C, D, delta_bias) if x is not None] + ([z_base] if gate else [])
    gy = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, ins, gy), torch.autograd.grad(y_ref, ins, gy), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(selective_scan(u, delta, A, B, C, D, impl=impl, **kw), y_ref.detach())


@needs_fused
def test_fused_scan_fp32_and_threads():
    """fp32 close to the fp64 oracle, with the batch rows split over two threads (the per-thread partial
    sums of dA, dD and d delta_bias), and an odd batch that does not split evenly."""
    ins64 = list(_scan_inputs(b=5, L=21, d=16, n=8, seed=3))
    z_base, z, delta_bias = _extras(b=5, L=21, d=16, seed=4)
    ins64 += [z, delta_bias]
    y64 = selective_scan_ref(*ins64[:6], z=z, delta_bias=delta_bias, delta_softplus=True)
    ins32 = [x.detach().float().requires_grad_() for x in ins64]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        y32 = selective_scan(*ins32[:6], z=ins32[6], delta_bias=ins32[7], delta_softplus=True, impl="fused")
        g32 = torch.autograd.grad(y32.square().sum(), ins32)
    finally:
        torch.set_num_threads(threads)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    g64 = list(torch.autograd.grad(y64.square().sum(), [*ins64[:6], z_base, delta_bias]))
    g64[6] = g64[6][..., 16:]  # the gate's half of the chunked tensor
    for a, b in zip(g32, g64, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-3)


@needs_fused
def test_fused_scan_gradcheck():
    u, delta, A, B, C, D = (x.detach()[:2, :5].clone() if x.dim() == 3 else x.detach() for x in _scan_inputs(d=4, n=3))
    z = torch.randn(2, 5, 4, dtype=F64)
    ins = [x.requires_grad_() for x in (u, delta, A, B, C, D, z)]

    def f(u, delta, A, B, C, D, z):
        return selective_scan(u, delta, A, B, C, D, z=z, delta_softplus=True, impl="fused")

    assert torch.autograd.gradcheck(f, ins)


def test_fused_scan_unavailable_falls_back(monkeypatch):
    """DECISION_SEQ_SCAN_CPU=0 (or no compiler): "auto" takes the PyTorch scan, "fused" says why it can't."""
    monkeypatch.setenv("DECISION_SEQ_SCAN_CPU", "0")
    load_scan_cpu.cache_clear()
    try:
        ins = _scan_inputs()
        torch.testing.assert_close(selective_scan(*ins), selective_scan_ref(*ins), rtol=1e-12, atol=1e-12)
        with pytest.raises(RuntimeError, match="fused CPU selective scan is unavailable"):
            selective_scan(*ins, impl="fused")
        with pytest.raises(ValueError, match="must be one of"):
            selective_scan(*ins, impl="cuda")
    finally:
        monkeypatch.delenv("DECISION_SEQ_SCAN_CPU")
        load_scan_cpu.cache_clear()
