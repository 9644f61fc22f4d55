"""Observation and action encoders: chosen from the observation shape / action type."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from decision_seq.models.encoders import FrameEncoder, action_encoder, observation_encoder


def test_vector_observations_get_the_linear_embedding():
    enc = observation_encoder((5,), 8)
    assert isinstance(enc, nn.Linear) and (enc.in_features, enc.out_features) == (5, 8)
    assert enc(torch.randn(2, 3, 5)).shape == (2, 3, 8)  # (B, K, S) -> (B, K, D)


@pytest.mark.parametrize("shape", [(4, 84, 84), (84, 83), (), (0,)])
def test_other_observation_shapes_are_a_clear_error(shape):
    with pytest.raises(ValueError, match=re.escape(f"no observation encoder for observations of shape {shape}:")):
        observation_encoder(shape, 8)


def test_frames_get_the_nature_dqn_convs():
    enc = observation_encoder((84, 84), 8)
    assert isinstance(enc, FrameEncoder)
    convs = [m for m in enc.convs if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 32, (8, 8), (4, 4)),
        (32, 64, (4, 4), (2, 2)),
        (64, 64, (3, 3), (1, 1)),
    ]
    assert enc.proj[0].in_features == 3136 and isinstance(enc.proj[1], nn.Tanh)
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 4, 84, 84), dtype=torch.uint8)  # (B, K, 4, 84, 84)
    out = enc(frames)
    assert out.shape == (2, 3, 8) and out.abs().max() < 1  # tanh
    # uint8 frames are scaled to [0, 1]: the same as the float frames / 255 through the layers by hand
    x = frames.reshape(6, 4, 84, 84).float() / 255
    for c in convs:
        x = torch.relu(c(x))
    torch.testing.assert_close(out, torch.tanh(enc.proj[0](x.flatten(1))).reshape(2, 3, 8))
    with pytest.raises(ValueError, match=r"expected stacked frames \(\.\.\., 4, 84, 84\)"):
        enc(frames[:, :, :3])


def test_action_encoders():
    assert isinstance(action_encoder(3, discrete=True, embed_dim=8), nn.Embedding)
    enc = action_encoder(3, discrete=False, embed_dim=8)
    assert isinstance(enc, nn.Linear) and enc.in_features == 3
