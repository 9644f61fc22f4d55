"""TrajectoryModel: state_dict keys (checkpoint compatibility), token order (TokenKind), left padding,
what a_t may see, heads and losses."""

from __future__ import annotations

import pytest
import torch

from decision_seq.models.trajectory import TokenKind, TrajectoryModel

BACKBONE_KW = {"transformer": {"n_layer": 2, "n_head": 2}, "mamba": {"n_layer": 2, "d_state": 4}}


def _model(backbone: str, discrete: bool = False, **kw) -> TrajectoryModel:
    torch.manual_seed(0)
    return (
        TrajectoryModel(
            state_dim=3,
            action_dim=4 if discrete else 2,
            discrete=discrete,
            embed_dim=16,
            max_ep_len=50,
            dropout=0.0,
            backbone=backbone,
            backbone_kwargs=BACKBONE_KW[backbone],
            action_low=None if discrete else [-2.0, 0.0],
            action_high=None if discrete else [2.0, 1.0],
            **kw,
        )
        .double()
        .eval()
    )


def _batch(B=3, K=6, discrete=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "states": torch.randn(B, K, 3, generator=g, dtype=torch.float64),
        "actions": (
            torch.randint(0, 4, (B, K), generator=g)
            if discrete
            else torch.randn(B, K, 2, generator=g, dtype=torch.float64)
        ),
        "returns_to_go": torch.randn(B, K, 1, generator=g, dtype=torch.float64),
        "timesteps": torch.arange(K).expand(B, K).clone(),
        "mask": torch.ones(B, K, dtype=torch.bool),
    }


# -- checkpoint compatibility ---------------------------------------------------------------------------

# Parameter and buffer names and shapes that checkpoints hold (state_dim 3, embed_dim 16, max_ep_len 50,
# 2 layers). Renaming one breaks every existing checkpoint: change them only with a checkpoint migration.
_EMBED = {
    "embed_timestep.weight": (50, 16),
    "embed_return.weight": (16, 1),
    "embed_return.bias": (16,),
    "embed_state.weight": (16, 3),
    "embed_state.bias": (16,),
    "embed_ln.weight": (16,),
    "embed_ln.bias": (16,),
}
_CONTINUOUS = {
    "action_scale": (2,),
    "action_bias": (2,),
    "embed_action.weight": (16, 2),
    "embed_action.bias": (16,),
    "predict_action.0.weight": (2, 16),
    "predict_action.0.bias": (2,),
}
_DISCRETE = {"embed_action.weight": (4, 16), "predict_action.weight": (4, 16), "predict_action.bias": (4,)}
_TRANSFORMER_BLOCK = {
    "ln_1.weight": (16,),
    "ln_1.bias": (16,),
    "attn.qkv.weight": (48, 16),
    "attn.qkv.bias": (48,),
    "attn.proj.weight": (16, 16),
    "attn.proj.bias": (16,),
    "ln_2.weight": (16,),
    "ln_2.bias": (16,),
    "mlp.net.0.weight": (64, 16),
    "mlp.net.0.bias": (64,),
    "mlp.net.2.weight": (16, 64),
    "mlp.net.2.bias": (16,),
}
_MAMBA_BLOCK = {
    "norm_mixer.weight": (16,),
    "norm_mixer.bias": (16,),
    "mixer.A_log": (32, 4),
    "mixer.D": (32,),
    "mixer.in_proj.weight": (64, 16),
    "mixer.conv1d.weight": (32, 1, 4),
    "mixer.conv1d.bias": (32,),
    "mixer.x_proj.weight": (9, 32),
    "mixer.dt_proj.weight": (32, 1),
    "mixer.dt_proj.bias": (32,),
    "mixer.out_proj.weight": (16, 32),
    "norm_mlp.weight": (16,),
    "norm_mlp.bias": (16,),
    "mlp.0.weight": (64, 16),
    "mlp.0.bias": (64,),
    "mlp.2.weight": (16, 64),
    "mlp.2.bias": (16,),
}
_BLOCKS = {"transformer": _TRANSFORMER_BLOCK, "mamba": _MAMBA_BLOCK}


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_state_dict_keys_unchanged(backbone, discrete):
    expected = {
        **_EMBED,
        **(_DISCRETE if discrete else _CONTINUOUS),
        "backbone.ln_f.weight": (16,),
        "backbone.ln_f.bias": (16,),
    }
    for i in range(2):
        expected |= {f"backbone.blocks.{i}.{k}": v for k, v in _BLOCKS[backbone].items()}
    model = _model(backbone, discrete)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert isinstance(model.embed_state, torch.nn.Linear)  # the vector observation encoder


# -- tokens ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_embed_token_equals_embed_in_token_kind_order(discrete):
    """embed_token(kind, ...) is the token `embed` puts at 3t + kind: TokenKind is the interleaving order."""
    model = _model("transformer", discrete)
    b = _batch(K=4, discrete=discrete)
    tokens = model.embed(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])  # (B, 3K, D)
    inputs = {TokenKind.RETURN: b["returns_to_go"], TokenKind.STATE: b["states"], TokenKind.ACTION: b["actions"]}
    assert [int(k) for k in TokenKind] == [0, 1, 2]
    for t in range(4):
        for kind, x in inputs.items():
            torch.testing.assert_close(model.embed_token(kind, x[:, t], b["timesteps"][:, t]), tokens[:, 3 * t + kind])


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


# -- heads and losses -----------------------------------------------------------------------------------


def test_continuous_head_respects_action_bounds():
    model = _model("transformer")
    b = _batch()
    b["states"] *= 100  # saturate
    out = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
    assert out.shape == (3, 6, 2)
    assert (out[..., 0].abs() <= 2.0).all() and (out[..., 1] >= 0).all() and (out[..., 1] <= 1).all()


def test_bad_action_bounds():
    with pytest.raises(ValueError, match="action bounds must be 2 finite pairs with high > low"):
        TrajectoryModel(state_dim=3, action_dim=2, action_low=[-1.0, 1.0], action_high=[1.0, 1.0])


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


# -- image observations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["transformer", "mamba"])
def test_frame_model_logits_loss_and_causality(backbone):
    """(84, 84) frames: stacked (B, K, 4, 84, 84) uint8 in, logits (B, K, n) out; a_t sees no later frame."""
    torch.manual_seed(0)
    model = TrajectoryModel(
        state_dim=84 * 84,
        obs_shape=(84, 84),
        action_dim=4,
        discrete=True,
        embed_dim=16,
        max_ep_len=50,
        dropout=0.0,
        backbone=backbone,
        backbone_kwargs=BACKBONE_KW[backbone],
    ).eval()
    B, K = 2, 3
    states = torch.randint(0, 256, (B, K, 4, 84, 84), dtype=torch.uint8)
    actions = torch.randint(0, 4, (B, K))
    rtg, ts = torch.randn(B, K, 1), torch.arange(K).expand(B, K)
    mask = torch.ones(B, K, dtype=torch.bool)
    logits = model(states, actions, rtg, ts, mask)
    assert logits.shape == (B, K, 4)
    later = states.clone()
    later[:, -1] = 255 - later[:, -1]
    torch.testing.assert_close(model(later, actions, rtg, ts, mask)[:, :-1], logits[:, :-1])
    loss = model.loss({"states": states, "actions": actions, "returns_to_go": rtg, "timesteps": ts, "mask": mask})
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 4), actions.reshape(-1)))
    assert "embed_state.convs.0.weight" in model.state_dict()
    tok = model.embed_token(TokenKind.STATE, states[:, 0], ts[:, 0])  # (B, D)
    torch.testing.assert_close(tok, model.embed(states, actions, rtg, ts)[:, TokenKind.STATE])


def test_obs_shape_must_match_state_dim():
    with pytest.raises(ValueError, match=r"state_dim=84 is not the size of obs_shape=\(84, 84\)"):
        TrajectoryModel(state_dim=84, obs_shape=(84, 84), action_dim=4, discrete=True)
