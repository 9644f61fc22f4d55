"""Observation and action encoders: chosen from the observation shape / action type."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from decision_seq.models.encoders import action_encoder, observation_encoder


def test_vector_observations_get_the_linear_embedding():
    enc = observation_encoder((5,), 8)
    assert isinstance(enc, nn.Linear) and (enc.in_features, enc.out_features) == (5, 8)
    assert enc(torch.randn(2, 3, 5)).shape == (2, 3, 8)  # (B, K, S) -> (B, K, D)


@pytest.mark.parametrize("shape", [(4, 84, 84), (), (0,)])
def test_other_observation_shapes_are_a_clear_error(shape):
    with pytest.raises(ValueError, match=re.escape(f"no observation encoder for observations of shape {shape}:")):
        observation_encoder(shape, 8)


def test_action_encoders():
    assert isinstance(action_encoder(3, discrete=True, embed_dim=8), nn.Embedding)
    enc = action_encoder(3, discrete=False, embed_dim=8)
    assert isinstance(enc, nn.Linear) and enc.in_features == 3
