"""Our Mamba mixers' kernel paths against mamba-ssm's own Python code, on the CPU.

mamba-ssm 2.3.2.post1 and causal-conv1d 1.7.0 are installed without their CUDA extensions (MAMBA_SKIP_CUDA_BUILD);
tests/models/ops/standins/ supplies CPU stand-ins for `selective_scan_cuda` and `causal_conv1d_cuda` that check
their arguments as the C++ wrappers do and compute the reference math as plain loops. Over them:
- the stand-ins equal mamba_ssm's / causal_conv1d's own reference functions, and refuse what the C++ refuses;
- `MambaMixer`'s kernel path (`_mix_kernel`: the real `selective_scan_fn` and `causal_conv1d_fn`, forced on the
  CPU by patching `kernels_for`) equals its pure-PyTorch path, forward and backward, with and without padding;
- `mamba_ssm.Mamba(use_fast_path=False)` and `MambaMixer` with the same state_dict agree (outputs, gradients,
  token-by-token `step` and its states);
- slow, with Triton installed (its interpreter): `Mamba2Mixer`'s kernel path over mamba_ssm's Triton
  `mamba_chunk_scan_combined`, and `mamba_ssm.Mamba2`, against our pure-PyTorch Mamba-2.
Everything skips, naming the missing package, where mamba_ssm's Python package is not installed (and where
the real compiled extensions are: tests/gpu checks the real kernels there).
"""

from __future__ import annotations

import contextlib
import importlib
import types

import pytest
import torch

from decision_seq.models.backbones import mamba as mamba_module
from decision_seq.models.backbones import mamba2 as mamba2_module
from decision_seq.models.backbones.mamba import MambaMixer
from decision_seq.models.backbones.mamba2 import Mamba2Mixer
from decision_seq.models.ops.kernels import Kernels, SSDKernels
from tests.models.ops.standins import (
    causal_conv1d_cuda,
    mamba_ssm_on_cpu,
    selective_scan_cuda,
    skip_reason,
    ssd_scan,
)

FP32 = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def ssm():
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with mamba_ssm_on_cpu() as ns:
        yield ns


def _force_kernels(monkeypatch, module, kernels) -> None:
    """Make the mixers in `module` take their kernel path on any tensor (library code only does so on CUDA)."""
    monkeypatch.setattr(module, "kernels_for", lambda use_kernels, load, x, who: kernels)


def _perturb(module: torch.nn.Module, seed: int = 1) -> None:
    """Move every parameter off its init (D = 1, dt bias, A_log) so that each one shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def _mask(batch: int, T: int) -> torch.Tensor:
    """Left-padded windows: row i has i * 2 padding tokens."""
    mask = torch.ones(batch, T, dtype=torch.bool)
    for i in range(batch):
        mask[i, : 2 * i] = False
    return mask


def _run(module, h, *args, grad_out=None):
    """-> (output, {"input": dh, param name: grad}) for the loss <output, grad_out>."""
    h = h.detach().clone().requires_grad_()
    out = module(h, *args)
    grad_out = torch.ones_like(out) if grad_out is None else grad_out
    names, params = zip(*module.named_parameters(), strict=True)
    grads = torch.autograd.grad(out, (h, *params), grad_out)
    return out.detach(), dict(zip(("input", *names), grads, strict=True))


def _assert_same(a, b, **tol) -> None:
    (out_a, grads_a), (out_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b, **tol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], **tol, msg=lambda m, n=name: f"grad of {n}: {m}")


# ---------------------------------------------------------------------------------------------------
# The stand-ins against the packages' own references, and their argument checks
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "with_z", "with_D", "with_bias", "softplus"),
    [(0, True, True, True, True), (1, False, False, False, False), (2, True, False, True, False)],
)
def test_selective_scan_standin_matches_mamba_ssm_reference(ssm, groups, with_z, with_D, with_bias, softplus):
    """selective_scan_fn over the stand-in == mamba_ssm's selective_scan_ref, values and gradients (groups = 0:
    B and C as (batch, dstate, L), the wrapper's 3-D form; else (batch, groups, dstate, L))."""
    gen = torch.Generator().manual_seed(0)
    b, d, n, L = 2, 4, 3, 7

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen)).requires_grad_()

    bc_shape = (b, n, L) if groups == 0 else (b, groups, n, L)
    args = [rand(b, d, L), rand(b, d, L, scale=0.5), (-torch.rand(d, n, generator=gen) - 0.1).requires_grad_()]
    args += [rand(*bc_shape), rand(*bc_shape), rand(d) if with_D else None, rand(b, d, L) if with_z else None]
    args += [rand(d) if with_bias else None]
    kw = {"delta_softplus": softplus}
    if not softplus:
        args[1] = args[1].detach().abs().requires_grad_()  # a positive step without softplus
    out = ssm.selective_scan_fn(*args, **kw)
    ref = ssm.selective_scan_ref(*args, **kw)
    torch.testing.assert_close(out, ref, **FP32)
    leaves = [a for a in args if a is not None]
    grad_out = torch.randn(out.shape, generator=gen)
    for g, g_ref in zip(
        torch.autograd.grad(out, leaves, grad_out), torch.autograd.grad(ref, leaves, grad_out), strict=True
    ):
        torch.testing.assert_close(g, g_ref, **FP32)


def test_selective_scan_standin_last_state_is_the_final_state(ssm):
    """return_last_state reads the state from the stand-in's x as the wrapper expects (x[:, :, -1, 1::2])."""
    gen = torch.Generator().manual_seed(0)
    u, delta = torch.randn(1, 3, 5, generator=gen), torch.rand(1, 3, 5, generator=gen)
    A, B, C = -torch.rand(3, 2, generator=gen), torch.randn(1, 2, 5, generator=gen), torch.randn(1, 2, 5, generator=gen)
    _, last = ssm.selective_scan_fn(u, delta, A, B, C, return_last_state=True)
    _, last_ref = ssm.selective_scan_ref(u, delta, A, B, C, return_last_state=True)
    torch.testing.assert_close(last, last_ref, **FP32)


@pytest.mark.parametrize(("activation", "width"), [(None, 2), ("silu", 3), ("silu", 4)])
def test_causal_conv1d_standin_matches_reference(ssm, activation, width):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 7, generator=gen, requires_grad=True)
    weight = torch.randn(8, width, generator=gen, requires_grad=True)
    bias = torch.randn(8, generator=gen, requires_grad=True)
    out = ssm.causal_conv1d_fn(x, weight, bias, activation=activation)
    ref = ssm.causal_conv1d_ref(x, weight, bias, activation=activation)
    torch.testing.assert_close(out, ref, **FP32)
    g = torch.randn(out.shape, generator=gen)
    for a, b in zip(
        torch.autograd.grad(out, (x, weight, bias), g), torch.autograd.grad(ref, (x, weight, bias), g), strict=True
    ):
        torch.testing.assert_close(a, b, **FP32)


def _scan_args(**change):
    b, d, n, L = 2, 4, 3, 5
    args = {
        "u": torch.randn(b, d, L),
        "delta": torch.rand(b, d, L),
        "A": -torch.rand(d, n),
        "B": torch.randn(b, 1, n, L),
        "C": torch.randn(b, 1, n, L),
        "D": torch.ones(d),
        "z": torch.randn(b, d, L),
        "delta_bias": torch.zeros(d),
    }
    args.update(change)
    return [*args.values(), True]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"delta": torch.rand(2, 4, 5, dtype=torch.bfloat16)}, "delta must have u's dtype"),
        ({"B": torch.randn(2, 1, 3, 5).bfloat16()}, "B has the wrong dtype"),
        ({"C": torch.randn(2, 1, 5, 3)}, r"C must have shape \(2, 1, 3, 5\)"),
        ({"u": torch.randn(2, 5, 4).transpose(1, 2)}, "u must have a contiguous last dimension"),
        ({"z": torch.randn(2, 5, 4).transpose(1, 2)}, "z must have a contiguous last dimension"),
        ({"D": torch.ones(4, dtype=torch.float16)}, "D must be float32"),
        ({"delta_bias": torch.zeros(3)}, r"delta_bias must have shape \(4,\)"),
        ({"A": -torch.rand(4, 257), "B": torch.randn(4, 257), "C": torch.randn(4, 257)}, "state dimension <= 256"),
    ],
)
def test_selective_scan_standin_refuses_what_the_kernel_refuses(change, message):
    with pytest.raises(RuntimeError, match=message):
        selective_scan_cuda.fwd(*_scan_args(**change))


@pytest.mark.parametrize(
    ("x", "width", "message"),
    [
        (torch.randn(1, 8, 6), 5, "width between 2 and 4"),
        (torch.randn(1, 6, 12)[:, :, ::2], 4, "contiguous along seqlen or along dim"),
        (torch.randn(1, 6, 4).transpose(1, 2), 4, "channel dimension divisible by 8"),
        (torch.randn(1, 6, 12)[:, :, :8].transpose(1, 2), 4, r"strides \(x.stride\(0\) and x.stride\(2\)\)"),
    ],
)
def test_causal_conv1d_standin_refuses_what_the_kernel_refuses(x, width, message):
    weight = torch.randn(x.shape[1], width)
    with pytest.raises(RuntimeError, match=message):
        causal_conv1d_cuda.causal_conv1d_fwd(x, weight, None, None, None, torch.empty_like(x), None, True)


# ---------------------------------------------------------------------------------------------------
# MambaMixer: kernel path == PyTorch path; == mamba_ssm.Mamba
# ---------------------------------------------------------------------------------------------------


def _mixer(d_conv: int = 4) -> MambaMixer:
    torch.manual_seed(0)
    mixer = MambaMixer(d_model=16, d_state=8, d_conv=d_conv, use_kernels=False)
    _perturb(mixer)
    return mixer


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("d_conv", [4, 5])  # 4: causal_conv1d; 5: wider than it supports, the PyTorch conv
def test_mamba_kernel_path_equals_torch_path(ssm, monkeypatch, padded, d_conv):
    mixer = _mixer(d_conv)
    h = torch.randn(3, 9, 16)
    mask = _mask(3, 9) if padded else None
    torch_path = _run(mixer, h, mask)
    assert mixer.last_path == "torch"
    _force_kernels(monkeypatch, mamba_module, Kernels(ssm.selective_scan_fn, ssm.causal_conv1d_fn))
    kernel_path = _run(mixer, h, mask)
    assert mixer.last_path == "kernel"
    _assert_same(kernel_path, torch_path, **FP32)


def test_mamba_kernel_path_without_causal_conv1d(ssm, monkeypatch):
    """causal_conv1d not installed (Kernels.causal_conv1d_fn None): the PyTorch conv, then the scan kernel."""
    mixer = _mixer()
    h, mask = torch.randn(3, 9, 16), _mask(3, 9)
    torch_path = _run(mixer, h, mask)
    _force_kernels(monkeypatch, mamba_module, Kernels(ssm.selective_scan_fn, None))
    _assert_same(_run(mixer, h, mask), torch_path, **FP32)


def test_mamba_kernel_path_under_bf16_autocast(ssm, monkeypatch):
    """Under autocast the kernels get bf16 u / delta / B / C / z with fp32 A, D and delta_bias (the C++ checks
    refuse mixed input dtypes); results as the PyTorch path's to bf16 tolerance (mamba_ssm's own)."""
    mixer = _mixer()
    h = torch.randn(2, 9, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch_path = _run(mixer, h, None)
        _force_kernels(monkeypatch, mamba_module, Kernels(ssm.selective_scan_fn, ssm.causal_conv1d_fn))
        kernel_path = _run(mixer, h, None)
    assert kernel_path[0].dtype == torch.bfloat16
    _assert_same(kernel_path, torch_path, rtol=3e-2, atol=5e-2)


def _twins(ssm, **kw):
    """mamba_ssm.Mamba (PyTorch-visible path) and our MambaMixer holding the same perturbed weights."""
    torch.manual_seed(0)
    theirs = ssm.Mamba(d_model=16, d_state=8, use_fast_path=False, layer_idx=0, **kw)
    _perturb(theirs)
    ours = MambaMixer(d_model=16, d_state=8, use_kernels=False, layer_idx=0, **kw)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize("bias", [False, True])
def test_mamba_ssm_same_parameters_and_init(ssm, bias):
    """Same parameter names and shapes, and with one seed the same initial values, as mamba_ssm.Mamba."""
    torch.manual_seed(3)
    theirs = ssm.Mamba(d_model=24, d_state=8, bias=bias).state_dict()
    torch.manual_seed(3)
    ours = MambaMixer(d_model=24, d_state=8, bias=bias).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0, msg=f"initial {name} differs")


@pytest.mark.parametrize("kernel_path", [False, True])
def test_mamba_ssm_forward_and_gradients_equal_ours(ssm, monkeypatch, kernel_path):
    theirs, ours = _twins(ssm, bias=True)
    h = torch.randn(2, 9, 16)
    if kernel_path:
        _force_kernels(monkeypatch, mamba_module, Kernels(ssm.selective_scan_fn, ssm.causal_conv1d_fn))
    ours_run = _run(ours, h)
    assert ours.last_path == ("kernel" if kernel_path else "torch")
    _assert_same(ours_run, _run(theirs, h), **FP32)


def test_mamba_ssm_step_and_states_equal_ours(ssm):
    """Token by token: mamba_ssm.Mamba.step (causal_conv1d_update stand-in) == our step, outputs and both states;
    and mamba_ssm's forward with an inference cache leaves the states our steps reach."""
    theirs, ours = _twins(ssm)
    B, T = 2, 6
    h = torch.randn(B, T, 16)
    their_state = theirs.allocate_inference_cache(B, max_seqlen=T)
    our_state = ours.allocate_inference_cache(B)
    with torch.no_grad():
        for t in range(T):
            y_theirs, *_ = theirs.step(h[:, t : t + 1], *their_state)
            y_ours, *_ = ours.step(h[:, t : t + 1], *our_state)
            torch.testing.assert_close(y_ours, y_theirs, **FP32)
        torch.testing.assert_close(y_ours[:, 0], ours(h)[:, -1], **FP32)
        for a, b in zip(our_state, their_state, strict=True):
            torch.testing.assert_close(a, b, **FP32)
        cache = types.SimpleNamespace(key_value_memory_dict={}, seqlen_offset=0)
        theirs(h, inference_params=cache)
        for a, b in zip(our_state, cache.key_value_memory_dict[0], strict=True):
            torch.testing.assert_close(a, b, **FP32)


# ---------------------------------------------------------------------------------------------------
# Mamba-2: the kernel path's causal_conv1d call (real wrapper, stand-in extension) and scan call (stand-in)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("headdim", [8, 16])  # 8 heads: in_proj width 168; 4 heads: 164, not a multiple of 8
def test_mamba2_kernel_path_conv_and_scan_calls(ssm, monkeypatch, padded, headdim):
    """Mamba2Mixer's kernel path with the real causal_conv1d_fn (over the stand-in extension) and a loop stand-in
    for the Triton scan equals the PyTorch path. xBC is a slice of in_proj's output: handed over transposed it is
    channel-last, which the extension accepts only with channels and strides divisible by 8."""
    torch.manual_seed(0)
    mixer = Mamba2Mixer(d_model=32, d_state=16, headdim=headdim, chunk_size=4, use_kernels=False)
    _perturb(mixer)
    h = torch.randn(2, 10, 32)
    mask = _mask(2, 10) if padded else None
    torch_path = _run(mixer, h, mask)
    _force_kernels(monkeypatch, mamba2_module, SSDKernels(ssd_scan.mamba_chunk_scan_combined, ssm.causal_conv1d_fn))
    kernel_path = _run(mixer, h, mask)
    assert mixer.last_path == "kernel"
    _assert_same(kernel_path, torch_path, **FP32)


# ---------------------------------------------------------------------------------------------------
# Mamba-2 over mamba_ssm's Triton SSD kernel, in Triton's interpreter (slow; needs Triton)
# ---------------------------------------------------------------------------------------------------


def _mamba2_kernels(ssm, monkeypatch) -> SSDKernels:
    """mamba_chunk_scan_combined in Triton's interpreter, with mamba_ssm's CUDA device guards and SM-count
    queries (which fail on CPU tensors) made no-ops, and the autotuners (which time configs on a GPU driver)
    taking each kernel's first config: every config computes the same values."""
    pytest.importorskip("triton", reason="mamba_ssm's Mamba-2 kernels are Triton; Triton is not installed")
    from triton.runtime.autotuner import Autotuner

    prune = Autotuner.prune_configs
    monkeypatch.setattr(Autotuner, "prune_configs", lambda self, kwargs: prune(self, kwargs)[:1])
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    sm_count = types.SimpleNamespace(multi_processor_count=4)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: sm_count)
    ssd = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
    return SSDKernels(ssd.mamba_chunk_scan_combined, ssm.causal_conv1d_fn)


MAMBA2_KW = {"d_model": 32, "d_state": 16, "headdim": 8, "chunk_size": 4}  # nheads 8, d_in_proj 168


@pytest.mark.slow
@pytest.mark.parametrize("padded", [False, True])
def test_mamba2_kernel_path_equals_torch_path(ssm, monkeypatch, padded):
    kernels = _mamba2_kernels(ssm, monkeypatch)
    torch.manual_seed(0)
    mixer = Mamba2Mixer(**MAMBA2_KW, use_kernels=False)
    _perturb(mixer)
    h = torch.randn(2, 10, 32)
    mask = _mask(2, 10) if padded else None
    torch_path = _run(mixer, h, mask)
    _force_kernels(monkeypatch, mamba2_module, kernels)
    kernel_path = _run(mixer, h, mask)
    assert mixer.last_path == "kernel"
    _assert_same(kernel_path, torch_path, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_mamba_ssm_mamba2_equals_ours(ssm, monkeypatch):
    """mamba_ssm.Mamba2 (use_mem_eff_path=False: causal_conv1d + Triton SSD + Triton gated RMSNorm) and our
    Mamba2Mixer (PyTorch path) with the same state_dict."""
    _mamba2_kernels(ssm, monkeypatch)
    Mamba2 = importlib.import_module("mamba_ssm.modules.mamba2").Mamba2
    torch.manual_seed(0)
    theirs = Mamba2(**MAMBA2_KW, use_mem_eff_path=False, layer_idx=0)
    _perturb(theirs)
    ours = Mamba2Mixer(**MAMBA2_KW, use_kernels=False, layer_idx=0)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    h = torch.randn(2, 10, 32)
    _assert_same(_run(ours, h), _run(theirs, h), rtol=1e-3, atol=1e-4)
