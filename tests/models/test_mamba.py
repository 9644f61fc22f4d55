"""Mamba backbone: mamba_ssm-compatible parameters and init, the mixer against the Mamba equations (loop
scan), forward == step, causality and left-padding masks to the last bit, kernel selection, registry.
The scans themselves: tests/models/ops/test_selective_scan.py; the Backbone contract: test_backbones.py."""

from __future__ import annotations

import math

import pytest
import torch

from decision_seq.models.backbones import build_backbone
from decision_seq.models.backbones.mamba import MambaBackbone, MambaMixer, load_kernels
from decision_seq.models.ops.scan_cpu import load_scan_cpu
from decision_seq.models.ops.selective_scan import selective_scan_ref

F64 = torch.float64


def _mixer(**kw) -> MambaMixer:
    torch.manual_seed(0)
    return MambaMixer(d_model=16, d_state=4, use_kernels=False, **kw).double()


def _backbone(**kw) -> MambaBackbone:
    torch.manual_seed(0)
    kw = {"n_layer": 2, "d_state": 4, "dropout": 0.0, "use_kernels": False} | kw
    return MambaBackbone(d_model=16, **kw).double().eval()


# -- parameters and init ------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_state_dict_matches_mamba_ssm(bias):
    d_model, d_state, d_conv = 16, 16, 4
    d_inner, dt_rank = 2 * d_model, math.ceil(d_model / 16)
    expected = {  # mamba_ssm.Mamba(d_model=16) parameter names and shapes
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    if bias:
        expected |= {"in_proj.bias": (2 * d_inner,), "out_proj.bias": (d_model,)}
    m = MambaMixer(d_model=d_model, bias=bias)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected
    MambaMixer(d_model=d_model, bias=bias).load_state_dict(m.state_dict())  # strict round trip


def test_init_as_mamba_ssm():
    torch.manual_seed(0)
    dt_min, dt_max = 0.002, 0.05
    m = MambaMixer(d_model=64, d_state=8, dt_min=dt_min, dt_max=dt_max)
    assert m.dt_rank == 4 and m.d_inner == 128
    assert m.A_log.dtype == torch.float32
    torch.testing.assert_close(m.A_log, torch.log(torch.arange(1.0, 9.0)).expand(128, 8))
    torch.testing.assert_close(m.D, torch.ones(128))
    dt = torch.nn.functional.softplus(m.dt_proj.bias.detach())
    assert (dt >= dt_min * (1 - 1e-4)).all() and (dt <= dt_max * (1 + 1e-4)).all()
    bound = m.dt_rank**-0.5
    assert m.dt_proj.weight.abs().max() <= bound
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_proj.bias._no_reinit
    # the floor applies when dt_min is below it; "constant" dt_init fills the weight
    m = MambaMixer(d_model=16, dt_min=1e-6, dt_max=2e-6, dt_init="constant")
    torch.testing.assert_close(torch.nn.functional.softplus(m.dt_proj.bias.detach()), torch.full((32,), 1e-4))
    torch.testing.assert_close(m.dt_proj.weight.detach(), torch.ones(32, 1))
    # the flags survive dtype conversion
    assert _mixer().A_log._no_weight_decay


def test_backbone_init_choices():
    """init="mamba_ssm" keeps the mixers' init and redraws only the MLPs; init="gpt2" (the default, the
    official DMamba code's) redraws every Linear with N(0, 0.02) and zero bias, dt_proj.bias included,
    and leaves conv1d, A_log and D as mamba_ssm sets them."""
    kw = {"n_layer": 2, "d_state": 4, "use_kernels": False}
    torch.manual_seed(0)
    ours = MambaBackbone(d_model=64, init="mamba_ssm", **kw)
    torch.manual_seed(0)
    official = MambaBackbone(d_model=64, **kw)
    for a, b in zip(ours.blocks, official.blocks, strict=True):
        dt = torch.nn.functional.softplus(a.mixer.dt_proj.bias.detach())
        assert (dt >= 1e-3 * (1 - 1e-4)).all() and (dt <= 0.1 * (1 + 1e-4)).all()
        assert (b.mixer.dt_proj.bias == 0).all()
        for name in ("in_proj", "x_proj", "dt_proj", "out_proj"):
            w = getattr(b.mixer, name).weight.detach()
            assert abs(w.std().item() - 0.02) < 0.004, name  # >= 256 draws each
            assert not torch.equal(w, getattr(a.mixer, name).weight.detach()), name
        for name in ("conv1d.weight", "conv1d.bias", "A_log", "D"):
            torch.testing.assert_close(b.mixer.get_parameter(name), a.mixer.get_parameter(name))
        assert all((m.bias == 0).all() for m in b.mlp if isinstance(m, torch.nn.Linear))
    with pytest.raises(ValueError, match="init must be one of mamba_ssm, gpt2, got 'xavier'"):
        MambaBackbone(d_model=16, init="xavier")


# -- mixer --------------------------------------------------------------------------------------------


def test_mixer_forward_equals_step():
    m = _mixer()
    x = torch.randn(3, 12, 16, dtype=F64)
    y = m(x)
    assert y.shape == x.shape and m.last_path == "torch"
    conv_state, ssm_state = m.allocate_inference_cache(3)
    assert conv_state.shape == (3, 32, 4) and ssm_state.shape == (3, 32, 4) and conv_state.dtype == F64
    steps = []
    for t in range(12):
        out, conv_state, ssm_state = m.step(x[:, t : t + 1], conv_state, ssm_state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), y, rtol=1e-12, atol=1e-12)


def test_mixer_fast_scan_equals_reference_computation():
    """The mixer (fast scan) against a direct transcription of the Mamba equations (loop scan)."""
    m = _mixer()
    x = torch.randn(2, 9, 16, dtype=F64)
    xi, z = m.in_proj(x).chunk(2, dim=-1)
    u = torch.nn.functional.silu(m.conv1d(xi.transpose(1, 2))[..., :9].transpose(1, 2))
    dt, B, C = m.x_proj(u).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = torch.nn.functional.softplus(m.dt_proj(dt))
    y = selective_scan_ref(u, delta, -torch.exp(m.A_log), B, C, m.D) * torch.nn.functional.silu(z)
    torch.testing.assert_close(m(x), m.out_proj(y), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(
    (load_scan_cpu(torch.float32) is None or load_scan_cpu(torch.float64) is None),
    reason="the fused CPU kernels did not build",
)
def test_mixer_fused_kernels_equal_torch_path(monkeypatch):
    """The mixer with the fused CPU kernels (conv and scan) against its PyTorch path (DECISION_SEQ_SCAN_CPU=0),
    with a left-padding mask, values and every parameter's gradient in fp64."""
    m = _mixer()
    x = torch.randn(3, 11, 16, dtype=F64)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, :4] = False

    def run():
        y = m(x, mask)
        return y, torch.autograd.grad(y.square().sum(), list(m.parameters()))

    y, grads = run()
    monkeypatch.setenv("DECISION_SEQ_SCAN_CPU", "0")
    load_scan_cpu.cache_clear()
    try:
        y_torch, grads_torch = run()
    finally:
        monkeypatch.delenv("DECISION_SEQ_SCAN_CPU")
        load_scan_cpu.cache_clear()
    torch.testing.assert_close(y, y_torch, rtol=1e-12, atol=1e-12)
    for (name, _), a, b in zip(m.named_parameters(), grads, grads_torch, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_mixer_mask_all_true_equals_no_mask():
    m = _mixer()
    x = torch.randn(2, 7, 16, dtype=F64)
    torch.testing.assert_close(m(x, torch.ones(2, 7, dtype=torch.bool)), m(x))


# -- backbone -----------------------------------------------------------------------------------------


def test_auto_mode_on_cpu_takes_torch_path():
    torch.manual_seed(0)
    m = MambaMixer(d_model=16)  # use_kernels=None
    m(torch.randn(2, 5, 16))
    assert m.last_path == "torch"


def test_registry():
    net = build_backbone("mamba", d_model=32, n_layer=2)
    assert isinstance(net, MambaBackbone) and len(net.blocks) == 2
    x = torch.randn(2, 6, 32)
    assert net(x).shape == (2, 6, 32)
    with pytest.raises(ValueError, match="valid backbones: .*mamba"):
        build_backbone("no-such-backbone", d_model=32)


# -- GPU (deselected by default; run with -m gpu on a CUDA machine with mamba_ssm) ---------------------

needs_kernels = pytest.mark.skipif(
    not torch.cuda.is_available() or load_kernels() is None, reason="needs CUDA and the mamba_ssm kernels"
)


@pytest.mark.gpu
@needs_kernels
def test_kernel_path_matches_torch_path():
    torch.manual_seed(0)
    m = MambaMixer(d_model=32, use_kernels=None).cuda()
    x = torch.randn(4, 30, 32, device="cuda", requires_grad=True)
    mask = torch.ones(4, 30, dtype=torch.bool, device="cuda")
    mask[1, :7] = False
    y_k = m(x, mask)
    assert m.last_path == "kernel"
    g_k = torch.autograd.grad(y_k.square().sum(), [x, *m.parameters()])
    m.use_kernels = False
    y_t = m(x, mask)
    assert m.last_path == "torch"
    g_t = torch.autograd.grad(y_t.square().sum(), [x, *m.parameters()])
    torch.testing.assert_close(y_k, y_t, rtol=1e-3, atol=1e-4)
    for a, b in zip(g_k, g_t, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3)


@pytest.mark.gpu
@needs_kernels
def test_state_dict_loads_into_mamba_ssm_and_matches():
    from mamba_ssm import Mamba

    torch.manual_seed(0)
    ours = MambaMixer(d_model=32, use_kernels=False).cuda()
    theirs = Mamba(d_model=32).cuda()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 20, 32, device="cuda")
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-3, atol=1e-4)
    ours.load_state_dict(theirs.state_dict())
