"""SSD scan of Mamba-2 (models/ops/ssd.py): the chunked form against the sequential reference in fp64,
values and gradients (through autograd), for several chunk sizes, lengths not divisible by the chunk
size, groups, D per head or per channel, an initial state and the final state; fp32 and bf16 inputs."""

from __future__ import annotations

import pytest
import torch

from decision_seq.models.ops.ssd import segsum, ssd_chunked, ssd_ref

F64 = torch.float64


def _inputs(b=2, L=13, h=4, p=3, g=2, n=5, dtype=F64, seed=0, D_per_channel=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, h, p, generator=gen, dtype=dtype)
    dt = torch.rand(b, L, h, generator=gen, dtype=dtype) * 2
    dt[0, : L // 2] *= 20  # large steps: decays underflow towards 0
    A = -torch.rand(h, generator=gen, dtype=dtype) * 3 - 0.1
    B = torch.randn(b, L, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, L, g, n, generator=gen, dtype=dtype)
    D = torch.randn(h, p, generator=gen, dtype=dtype) if D_per_channel else torch.randn(h, generator=gen, dtype=dtype)
    h0 = torch.randn(b, h, p, n, generator=gen, dtype=dtype)
    return [t.requires_grad_() for t in (x, dt, A, B, C, D, h0)]


def test_segsum_is_the_causal_segment_sum():
    a = torch.randn(2, 6, dtype=F64)
    s = segsum(a)
    for i in range(6):
        for j in range(6):
            want = a[:, j + 1 : i + 1].sum(-1) if i >= j else torch.full((2,), float("-inf"), dtype=F64)
            torch.testing.assert_close(s[:, i, j], want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 13, 16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_equals_reference_fp64(chunk_size, with_state):
    """L = 13: chunk sizes that divide it, that do not, equal to it and larger than it."""
    x, dt, A, B, C, D, h0 = ins = _inputs()
    ins = ins if with_state else ins[:-1]
    init = h0 if with_state else None
    y_ref, s_ref = ssd_ref(x, dt, A, B, C, D, initial_state=init, return_final_state=True)
    y, s = ssd_chunked(x, dt, A, B, C, chunk_size, D, initial_state=init, return_final_state=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=1e-12)
    gy, gs = torch.randn_like(y), torch.randn_like(s)
    g_ref = torch.autograd.grad((y_ref * gy).sum() + (s_ref * gs).sum(), ins)
    g = torch.autograd.grad((y * gy).sum() + (s * gs).sum(), ins)
    for name, a, b in zip(["x", "dt", "A", "B", "C", "D", "h0"], g, g_ref, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"grad {name}")


def test_chunked_per_channel_D_one_group_no_D():
    x, dt, A, B, C, D, _ = _inputs(L=9, g=1, D_per_channel=True, seed=1)
    torch.testing.assert_close(ssd_chunked(x, dt, A, B, C, 4, D), ssd_ref(x, dt, A, B, C, D), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ssd_chunked(x, dt, A, B, C, 4), ssd_ref(x, dt, A, B, C), rtol=1e-12, atol=1e-12)


def test_chunked_gradcheck():
    ins = [t.detach().clone().requires_grad_() for t in _inputs(b=1, L=5, h=2, p=2, g=1, n=2)]
    assert torch.autograd.gradcheck(lambda *a: ssd_chunked(*a[:5], 2, a[5], a[6]), ins)


def test_state_carries_across_calls():
    """Scanning a sequence in two halves, passing the state on, equals scanning it whole."""
    x, dt, A, B, C, D, _ = (t.detach() for t in _inputs(L=12))
    y = ssd_chunked(x, dt, A, B, C, 4, D)
    y1, s = ssd_chunked(x[:, :7], dt[:, :7], A, B[:, :7], C[:, :7], 4, D, return_final_state=True)
    y2 = ssd_chunked(x[:, 7:], dt[:, 7:], A, B[:, 7:], C[:, 7:], 4, D, initial_state=s)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y, rtol=1e-12, atol=1e-12)


def test_fp32_close_to_fp64_and_bf16_computes_in_fp32():
    ins64 = [t.detach() for t in _inputs(b=3, L=40, h=4, p=8, n=16, seed=2)][:6]
    y64 = ssd_ref(*ins64)
    y32 = ssd_chunked(*(t.float() for t in ins64[:5]), 16, ins64[5].float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    bf = [t.bfloat16() for t in ins64]
    y_bf = ssd_chunked(*bf[:5], 16, bf[5])
    assert y_bf.dtype == torch.bfloat16
    torch.testing.assert_close(y_bf.float(), ssd_ref(*(t.float() for t in bf)), rtol=2e-2, atol=2e-2)


def test_bad_chunk_size():
    x, dt, A, B, C, *_ = (t.detach() for t in _inputs())
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        ssd_chunked(x, dt, A, B, C, 0)
