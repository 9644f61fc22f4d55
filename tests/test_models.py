"""TrajectoryModel and the transformer backbone: causality, incremental == full forward, heads, decay groups."""

import pytest
import torch

from decision_seq.models.backbones import available_backbones, build_backbone
from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import param_groups

BACKBONE_KW = {"transformer": {"n_layer": 2, "n_head": 2}, "mamba": {"n_layer": 2, "d_state": 4}}


def _model(backbone: str, discrete: bool = False, **kw) -> TrajectoryModel:
    torch.manual_seed(0)
    return TrajectoryModel(state_dim=3, action_dim=4 if discrete else 2, discrete=discrete, embed_dim=16,
                           max_ep_len=50, dropout=0.0, backbone=backbone, backbone_kwargs=BACKBONE_KW[backbone],
                           action_low=None if discrete else [-2.0, 0.0], action_high=None if discrete else [2.0, 1.0],
                           **kw).double().eval()


def _batch(B=3, K=6, discrete=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "states": torch.randn(B, K, 3, generator=g, dtype=torch.float64),
        "actions": torch.randint(0, 4, (B, K), generator=g) if discrete else torch.randn(B, K, 2, generator=g, dtype=torch.float64),
        "returns_to_go": torch.randn(B, K, 1, generator=g, dtype=torch.float64),
        "timesteps": torch.arange(K).expand(B, K).clone(),
        "mask": torch.ones(B, K, dtype=torch.bool),
    }


def test_registry_lists_both_backbones():
    assert {"transformer", "mamba"} <= set(available_backbones())
    with pytest.raises(ValueError, match="valid backbones: .*mamba.*transformer"):
        build_backbone("lstm", d_model=8)


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_backbone_causal(backbone):
    torch.manual_seed(0)
    net = build_backbone(backbone, d_model=16, dropout=0.0, **BACKBONE_KW[backbone]).double().eval()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    y = net(x)
    for t in (0, 4, 8):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        y2 = net(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1])
        assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :])


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_backbone_step_equals_forward(backbone):
    torch.manual_seed(0)
    net = build_backbone(backbone, d_model=16, dropout=0.0, **BACKBONE_KW[backbone]).double().eval()
    x = torch.randn(3, 9, 16, dtype=torch.float64)
    full = net(x)
    state = net.init_state(3, device=x.device, dtype=x.dtype)
    for t in range(9):
        y, state = net.step(x[:, t], state)
        torch.testing.assert_close(y, full[:, t])


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_left_padding_is_invisible(backbone):
    """With the mask, outputs at real steps do not depend on what fills the left padding."""
    model = _model(backbone)
    b = _batch(K=6)
    b["mask"][:, :2] = False
    out1 = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"], b["mask"])
    b2 = {k: v.clone() for k, v in b.items()}
    b2["states"][:, :2] += 5.0
    b2["actions"][:, :2] -= 3.0
    out2 = model(b2["states"], b2["actions"], b2["returns_to_go"], b2["timesteps"], b2["mask"])
    torch.testing.assert_close(out1[:, 2:], out2[:, 2:])
    # ... and equal the unpadded 4-step window
    short = model(b["states"][:, 2:], b["actions"][:, 2:], b["returns_to_go"][:, 2:], b["timesteps"][:, 2:])
    torch.testing.assert_close(out1[:, 2:], short)


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_action_depends_only_on_past_and_current_state(backbone):
    """a_t is predicted from the state token s_t: it must not see a_t itself or anything later."""
    model = _model(backbone)
    b = _batch(K=5)
    out = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
    b["actions"][:, 3:] = torch.randn_like(b["actions"][:, 3:])
    b["states"][:, 4:] = torch.randn_like(b["states"][:, 4:])
    out2 = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
    torch.testing.assert_close(out[:, :4], out2[:, :4])
    assert not torch.allclose(out[:, 4], out2[:, 4])


def test_continuous_head_respects_action_bounds():
    model = _model("transformer")
    b = _batch()
    b["states"] *= 100  # saturate
    out = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
    assert out.shape == (3, 6, 2)
    assert (out[..., 0].abs() <= 2.0).all() and (out[..., 1] >= 0).all() and (out[..., 1] <= 1).all()


def test_discrete_model_logits_and_cross_entropy():
    model = _model("transformer", discrete=True)
    b = _batch(discrete=True)
    b["mask"][:, 0] = False
    logits = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"], b["mask"])
    assert logits.shape == (3, 6, 4)
    expected = torch.nn.functional.cross_entropy(logits[:, 1:].reshape(-1, 4), b["actions"][:, 1:].reshape(-1))
    torch.testing.assert_close(model.loss(b), expected)
    assert model.act(b["states"], b["actions"], b["returns_to_go"], b["timesteps"]).dtype == torch.long


def test_mse_loss_ignores_padded_steps():
    model = _model("mamba")
    b = _batch()
    b["mask"][0, :3] = False
    pred = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"], b["mask"])
    expected = ((pred - b["actions"]) ** 2)[b["mask"]].mean()
    torch.testing.assert_close(model.loss(b), expected)


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_no_weight_decay_on_norms_biases_embeddings_alog_d(backbone):
    model = _model(backbone)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    for n in decayed:
        assert not n.endswith("bias") and "embed_timestep" not in n and "ln" not in n and not n.endswith(("A_log", ".D")), n
    assert "embed_state.weight" in decayed and "predict_action.0.weight" in decayed
    decay_ids = {id(p) for p in decay["params"]}
    for m in model.modules():
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.Embedding)):
            assert all(id(p) not in decay_ids for p in m.parameters()), m


@pytest.mark.parametrize("backbone,n_layer", [("transformer", 1), ("transformer", 3), ("mamba", 2)])
def test_forward_last_equals_forward(backbone, n_layer):
    """The evaluation shortcut (last token only, optional per-token features) computes forward(x)[:, -1]."""
    torch.manual_seed(0)
    net = build_backbone(backbone, d_model=16, dropout=0.0, n_layer=n_layer, **({"n_head": 2} if backbone == "transformer" else {})).double().eval()
    x = torch.randn(3, 8, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x)[:, -1]
        torch.testing.assert_close(net.forward_last(x), ref, rtol=1e-10, atol=1e-10)
        if hasattr(net, "token_features"):
            torch.testing.assert_close(net.forward_last(x, net.token_features(x)), ref, rtol=1e-10, atol=1e-10)
