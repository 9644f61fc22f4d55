"""Mamba-2 backbone: mamba_ssm.Mamba2-compatible parameter names, shapes and init, the mixer against a direct
transcription of the Mamba-2 equations (reference scan), step == forward across the mixer's options,
left-padding masks to the last bit, validation, meta-device construction, kernel selection.
The SSD scan itself: tests/models/ops/test_ssd.py; the Backbone contract: test_backbones.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decision_seq.models.backbones import build_backbone
from decision_seq.models.backbones.mamba2 import Mamba2Backbone, Mamba2Mixer, load_ssd_kernels
from decision_seq.models.ops.ssd import ssd_ref

F64 = torch.float64

# Mixer options beyond the defaults, each exercising another branch of mamba_ssm.Mamba2.
VARIANTS = {
    "default": {},
    "groups+d_ssm": {"ngroups": 2, "d_ssm": 16},  # gated-MLP part (d_inner - d_ssm) and 2 groups of B, C
    "no_rmsnorm": {"rmsnorm": False},  # y * silu(z) instead of the gated norm
    "D_has_hdim+norm_before_gate": {"D_has_hdim": True, "norm_before_gate": True},
    "dt_limit+bias": {"dt_limit": (0.01, 0.5), "bias": True, "conv_init": 0.5},
}


def _mixer(**kw) -> Mamba2Mixer:
    torch.manual_seed(0)
    kw = {"d_state": 4, "headdim": 8, "chunk_size": 4, "use_kernels": False} | kw
    return Mamba2Mixer(d_model=16, **kw).double()


def _backbone(**kw) -> Mamba2Backbone:
    torch.manual_seed(0)
    kw = {"n_layer": 2, "d_state": 4, "headdim": 8, "chunk_size": 4, "dropout": 0.0, "use_kernels": False} | kw
    return Mamba2Backbone(d_model=16, **kw).double().eval()


# -- parameters and init ------------------------------------------------------------------------------


def _expected(d_model=64, d_state=128, d_conv=4, expand=2, headdim=64, d_ssm=None, ngroups=1, **opt):
    """mamba_ssm.Mamba2's parameters (mamba_ssm/modules/mamba2.py, Mamba2.__init__): in_proj outputs
    [z, x, B, C, dt] = 2 * d_inner + 2 * ngroups * d_state + nheads; conv1d over x, B, C (conv_dim =
    d_ssm + 2 * ngroups * d_state, depthwise); dt_bias, A_log (nheads,); D (nheads,) or (d_ssm,) with
    D_has_hdim; norm.weight (d_ssm,) from layernorm_gated.RMSNorm when rmsnorm; out_proj (d_model, d_inner)."""
    d_inner = expand * d_model
    d_ssm = d_inner if d_ssm is None else d_ssm
    nheads = d_ssm // headdim
    conv_dim = d_ssm + 2 * ngroups * d_state
    shapes = {
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (d_ssm,) if opt.get("D_has_hdim") else (nheads,),
        "in_proj.weight": (2 * d_inner + 2 * ngroups * d_state + nheads, d_model),
        "conv1d.weight": (conv_dim, 1, d_conv),
        "conv1d.bias": (conv_dim,),
        "norm.weight": (d_ssm,),
        "out_proj.weight": (d_model, d_inner),
    }
    if not opt.get("rmsnorm", True):
        del shapes["norm.weight"]
    if opt.get("bias"):
        shapes |= {"in_proj.bias": (shapes["in_proj.weight"][0],), "out_proj.bias": (d_model,)}
    return shapes


@pytest.mark.parametrize(
    "opt",
    [
        {},
        {"bias": True},
        {"rmsnorm": False},
        {"D_has_hdim": True},
        {"ngroups": 2, "d_ssm": 64, "d_state": 16, "headdim": 16},
    ],
    ids=["default", "bias", "no_rmsnorm", "D_has_hdim", "groups+d_ssm"],
)
def test_state_dict_matches_mamba_ssm(opt):
    m = Mamba2Mixer(d_model=64, **opt)  # mamba_ssm's defaults: d_state 128, headdim 64, expand 2
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == _expected(**opt)
    Mamba2Mixer(d_model=64, **opt).load_state_dict(m.state_dict())  # strict round trip


def test_state_dict_written_out_for_the_default_mixer():
    """The list for Mamba2(d_model=64): d_inner 128, nheads 2, in_proj 2*128 + 2*128 + 2 = 514 outputs."""
    m = Mamba2Mixer(d_model=64)
    assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == [
        ("dt_bias", (2,)),
        ("A_log", (2,)),
        ("D", (2,)),
        ("in_proj.weight", (514, 64)),
        ("conv1d.weight", (384, 1, 4)),
        ("conv1d.bias", (384,)),
        ("norm.weight", (128,)),
        ("out_proj.weight", (64, 128)),
    ]


def test_init_as_mamba_ssm():
    torch.manual_seed(0)
    dt_min, dt_max = 0.002, 0.05
    m = Mamba2Mixer(d_model=256, d_state=16, headdim=8, dt_min=dt_min, dt_max=dt_max)
    assert m.nheads == 64 and m.d_inner == 512
    dt = F.softplus(m.dt_bias.detach())
    assert (dt >= dt_min * (1 - 1e-4)).all() and (dt <= dt_max * (1 + 1e-4)).all()
    log_dt = dt.log()  # log-uniform: mean of log(dt) near the middle of the log range
    assert abs(log_dt.mean().item() - (torch.tensor([dt_min, dt_max]).log().mean().item())) < 0.5
    A = torch.exp(m.A_log.detach())  # A = -exp(A_log), -A ~ U(1, 16)
    assert m.A_log.dtype == torch.float32 and (A >= 1).all() and (A <= 16).all() and A.std() > 2
    torch.testing.assert_close(m.D, torch.ones(64))
    torch.testing.assert_close(m.norm.weight, torch.ones(512))
    assert m.norm.group_size == 512 and m.norm.eps == 1e-5 and m.norm.norm_before_gate is False
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_bias._no_weight_decay
    # nn.Linear's default init on in_proj (kaiming uniform: bound 1 / sqrt(fan_in))
    assert m.in_proj.weight.abs().max() <= 256**-0.5
    # the floor applies when dt_min is below it; conv_init redraws the conv weight
    m = Mamba2Mixer(d_model=16, headdim=8, dt_min=1e-6, dt_max=2e-6, conv_init=0.01)
    torch.testing.assert_close(F.softplus(m.dt_bias.detach()), torch.full((4,), 1e-4))
    assert m.conv1d.weight.abs().max() <= 0.01
    m = Mamba2Mixer(d_model=16, headdim=8, A_init_range=(3, 3))
    torch.testing.assert_close(m.A_log.detach(), torch.full((4,), 3.0).log())


def test_backbone_init_choices():
    """init="gpt2" (default) redraws in_proj, out_proj and the MLPs from N(0, 0.02) with zero bias; dt_bias,
    A_log, D, conv1d and norm.weight keep mamba_ssm's init; init="mamba_ssm" redraws only the MLPs."""
    kw = {"n_layer": 2, "d_state": 16, "headdim": 16, "use_kernels": False}
    torch.manual_seed(0)
    ours = Mamba2Backbone(d_model=64, init="mamba_ssm", **kw)
    torch.manual_seed(0)
    official = Mamba2Backbone(d_model=64, **kw)
    for a, b in zip(ours.blocks, official.blocks, strict=True):
        for name in ("in_proj", "out_proj"):
            w = b.mixer.get_submodule(name).weight.detach()
            assert abs(w.std().item() - 0.02) < 0.003, name  # >= 8192 draws each
            assert abs(w.mean().item()) < 0.003, name
            assert not torch.equal(w, a.mixer.get_submodule(name).weight.detach()), name
            kept = a.mixer.get_submodule(name).weight.detach()  # nn.Linear's init: bound 1 / sqrt(fan_in)
            assert kept.abs().max() <= kept.shape[1] ** -0.5 + 1e-6, name
        for name in ("conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight"):
            torch.testing.assert_close(b.mixer.get_parameter(name), a.mixer.get_parameter(name))
        for m in (*a.mlp, *b.mlp):
            if isinstance(m, torch.nn.Linear):
                assert (m.bias == 0).all() and abs(m.weight.std().item() - 0.02) < 0.003
    with pytest.raises(ValueError, match="mamba2 backbone init must be one of mamba_ssm, gpt2, got 'xavier'"):
        Mamba2Backbone(d_model=16, init="xavier")


# -- validation and construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"headdim": 12}, "must be divisible by headdim=12"),
        ({"expand": 3, "headdim": 32}, "must be divisible by headdim=32"),
        ({"ngroups": 3}, "nheads=4 must be divisible by ngroups=3"),
        ({"d_state": 0}, "d_state must be an integer >= 1"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"n_layer": 0}, "n_layer must be an integer >= 1"),
        ({"init": "orthogonal"}, "init must be one of"),
    ],
)
def test_bad_values_raise(kw, message):
    with pytest.raises(ValueError, match=message):
        Mamba2Backbone(d_model=16, **({"headdim": 8} | kw))


def test_mixer_refuses_tensor_parallelism():
    with pytest.raises(ValueError, match="process_group must be None"):
        Mamba2Mixer(d_model=16, headdim=8, process_group=object())


def test_builds_on_the_meta_device():
    with torch.device("meta"):
        net = build_backbone("mamba2", d_model=128, dropout=0.1, n_layer=3)
    assert all(p.is_meta for p in net.parameters())
    assert sum(p.numel() for p in net.parameters()) > 0


# -- mixer --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mixer_forward_equals_step(variant):
    m = _mixer(**VARIANTS[variant])
    x = torch.randn(3, 11, 16, dtype=F64)
    y = m(x)
    assert y.shape == x.shape and m.last_path == "torch"
    conv_state, ssm_state = m.allocate_inference_cache(3)
    assert conv_state.shape == (3, m.conv_dim, 4) and ssm_state.shape == (3, m.nheads, 8, 4)
    assert conv_state.dtype == ssm_state.dtype == F64
    steps = []
    for t in range(11):
        out, conv_state, ssm_state = m.step(x[:, t : t + 1], conv_state, ssm_state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mixer_equals_reference_computation(variant):
    """The mixer (chunked scan) against a direct transcription of Mamba2.forward's unfused path with the
    sequential reference scan, and the mixer's own reference scan_impl."""
    m = _mixer(**VARIANTS[variant])
    x = torch.randn(2, 9, 16, dtype=F64)
    d_mlp = m.d_inner - m.d_ssm
    gn = m.ngroups * m.d_state
    z0, x0, z, xBC, dt = m.in_proj(x).split([d_mlp, d_mlp, m.d_ssm, m.d_ssm + 2 * gn, m.nheads], dim=-1)
    xBC = F.silu(m.conv1d(xBC.transpose(1, 2))[..., :9].transpose(1, 2))
    xs, B, C = xBC.split([m.d_ssm, gn, gn], dim=-1)
    dt = F.softplus(dt + m.dt_bias)
    if variant == "dt_limit+bias":
        dt = dt.clamp(0.01, 0.5)
    D = m.D.view(m.nheads, m.headdim) if m.D_has_hdim else m.D
    y = ssd_ref(
        xs.unflatten(-1, (m.nheads, 8)), dt, -torch.exp(m.A_log), B.unflatten(-1, (m.ngroups, 4)),
        C.unflatten(-1, (m.ngroups, 4)), D,
    ).flatten(-2)  # fmt: skip
    if m.rmsnorm:
        g = y * F.silu(z) if not m.norm_before_gate else y
        g = g.unflatten(-1, (m.ngroups, -1))
        y = (g / (g.square().mean(-1, keepdim=True) + 1e-5).sqrt()).flatten(-2) * m.norm.weight
        y = y * F.silu(z) if m.norm_before_gate else y
    else:
        y = y * F.silu(z)
    y = torch.cat([F.silu(z0) * x0, y], dim=-1)
    torch.testing.assert_close(m(x), m.out_proj(y), rtol=1e-12, atol=1e-12)
    m.scan_impl = "reference"
    torch.testing.assert_close(m(x), m.out_proj(y), rtol=1e-12, atol=1e-12)
    m.scan_impl = "blelloch"
    with pytest.raises(ValueError, match="scan_impl must be one of chunked, reference"):
        m(x)


def test_mixer_mask_all_true_equals_no_mask():
    m = _mixer()
    x = torch.randn(2, 7, 16, dtype=F64)
    torch.testing.assert_close(m(x, torch.ones(2, 7, dtype=torch.bool)), m(x))


# -- backbone -----------------------------------------------------------------------------------------


def test_left_padding_is_exact():
    """Padding content cannot reach real tokens (bit-exact), and real outputs equal the unpadded
    sequence's; chunk size 4 so the padding spans whole chunks and part of one."""
    net = _backbone(n_layer=3)
    T, lengths = 10, [10, 6, 1]
    real = [torch.randn(n, 16, dtype=F64) for n in lengths]
    mask = torch.stack([torch.arange(T) >= T - n for n in lengths])  # (B, T), left padding

    def padded(seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(len(lengths), T, 16, generator=g, dtype=F64) * 10
        for i, r in enumerate(real):
            x[i, T - len(r) :] = r
        return x

    y1, y2 = net(padded(1), mask), net(padded(2), mask)
    torch.testing.assert_close(y1[mask], y2[mask], rtol=0, atol=0)  # padding content is irrelevant
    for i, r in enumerate(real):
        torch.testing.assert_close(y1[i, T - len(r) :], net(r[None])[0], rtol=1e-12, atol=1e-12)


def test_registry_and_state_size():
    net = build_backbone("mamba2", d_model=32, n_layer=2, dropout=0.0)
    assert isinstance(net, Mamba2Backbone) and len(net.blocks) == 2 and net.constant_time_step
    assert net(torch.randn(2, 6, 32)).shape == (2, 6, 32)
    conv_state, ssm_state = net.init_state(2)[0]  # defaults: d_state 64, headdim 32, d_inner 64 -> 2 heads
    assert conv_state.shape == (2, 64 + 2 * 64, 4) and ssm_state.shape == (2, 2, 32, 64)


# -- kernels ------------------------------------------------------------------------------------------


@pytest.mark.skipif(load_ssd_kernels() is not None, reason="mamba_ssm kernels are installed")
def test_use_kernels_true_without_mamba_ssm_raises():
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        Mamba2Mixer(d_model=16, headdim=8, use_kernels=True)
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        build_backbone("mamba2", d_model=16, n_layer=1, use_kernels=True)


def test_auto_mode_on_cpu_takes_torch_path():
    torch.manual_seed(0)
    m = Mamba2Mixer(d_model=16, headdim=8)  # use_kernels=None
    m(torch.randn(2, 5, 16))
    assert m.last_path == "torch"


# -- GPU (deselected by default; run with -m gpu on a CUDA machine with mamba_ssm) ---------------------

needs_kernels = pytest.mark.skipif(
    not torch.cuda.is_available() or load_ssd_kernels() is None, reason="needs CUDA and mamba_ssm's SSD kernel"
)


@pytest.mark.gpu
@needs_kernels
def test_kernel_path_matches_torch_path():
    torch.manual_seed(0)
    m = Mamba2Mixer(d_model=64, d_state=32, headdim=32, chunk_size=16).cuda()
    x = torch.randn(4, 60, 64, device="cuda", requires_grad=True)
    mask = torch.ones(4, 60, dtype=torch.bool, device="cuda")
    mask[1, :7] = False
    y_k = m(x, mask)
    assert m.last_path == "kernel"
    g_k = torch.autograd.grad(y_k.square().sum(), [x, *m.parameters()])
    m.use_kernels = False
    y_t = m(x, mask)
    g_t = torch.autograd.grad(y_t.square().sum(), [x, *m.parameters()])
    torch.testing.assert_close(y_k, y_t, rtol=1e-3, atol=1e-4)
    for a, b in zip(g_k, g_t, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3)


@pytest.mark.gpu
@needs_kernels
def test_state_dict_loads_into_mamba_ssm_and_matches():
    from mamba_ssm import Mamba2

    torch.manual_seed(0)
    ours = Mamba2Mixer(d_model=64, use_kernels=False).cuda()
    theirs = Mamba2(d_model=64).cuda()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 60, 64, device="cuda")
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-3, atol=1e-4)
    ours.load_state_dict(theirs.state_dict())
