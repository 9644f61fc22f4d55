"""Recurrent backbones (Decision LSTM and its GRU twin): left-padded windows against torch's own module
run on the unpadded rows, the row roll that moves padding to the right, dropout, argument errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from decision_seq.evaluation.policy import SequencePolicy
from decision_seq.models.backbones import build_backbone
from decision_seq.models.backbones.recurrent import GRUBackbone, LSTMBackbone, roll_rows
from decision_seq.models.trajectory import TrajectoryModel

F64 = torch.float64
D = 6


def test_roll_rows():
    x = torch.arange(8.0).view(2, 4, 1)
    out = roll_rows(x, torch.tensor([1, 3]))
    assert out[..., 0].tolist() == [[1, 2, 3, 0], [7, 4, 5, 6]]
    torch.testing.assert_close(roll_rows(out, -torch.tensor([1, 3])), x)


@pytest.mark.parametrize(("name", "module"), [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_padded_rows_equal_torch_on_the_unpadded_rows(name, module):
    torch.manual_seed(0)
    net = build_backbone(name, d_model=D, dropout=0.0, n_layer=2).to(F64).eval()
    ref = module(D, D, num_layers=2, batch_first=True).to(F64)
    ref.load_state_dict(net.rnn.state_dict())  # torch's module, same weights
    T, lengths = 7, [7, 4, 1]
    x = torch.randn(len(lengths), T, D, dtype=F64)
    mask = torch.stack([torch.arange(T) >= T - n for n in lengths])  # (B, T), left-padded
    with torch.no_grad():
        y = net(x, mask)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(y[i, T - n :], ref(x[i : i + 1, T - n :])[0][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(net(x), ref(x)[0], rtol=0, atol=0)  # no mask: torch's module as is


@pytest.mark.parametrize(("cls", "shapes"), [(LSTMBackbone, [(2, 3, D), (2, 3, D)]), (GRUBackbone, [(2, 3, D)])])
def test_state_is_the_rnn_state(cls, shapes):
    net = cls(d_model=D, dropout=0.0, n_layer=2)
    state = net.init_state(3)
    _, state = net.step(torch.randn(3, D), state)
    got = [tuple(s.shape) for s in state] if isinstance(state, tuple) else [tuple(state.shape)]
    assert got == shapes and net.constant_time_step


def test_dropout_between_layers_only():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about dropout with a single layer: not passed there
        assert LSTMBackbone(d_model=D, dropout=0.1, n_layer=1).rnn.dropout == 0.0
    assert GRUBackbone(d_model=D, dropout=0.1, n_layer=3).rnn.dropout == 0.1


def test_recurrent_evaluation_runs():
    torch.manual_seed(0)
    model = TrajectoryModel(state_dim=3, action_dim=2, embed_dim=8, max_ep_len=16, dropout=0.0, backbone="gru")
    policy = SequencePolicy(model.eval(), batch_size=2, context_len=3, max_steps=5, mode="recurrent")
    actions = [policy.act(torch.randn(2, 3), torch.ones(2, 1)) for _ in range(5)]
    assert torch.stack(actions).shape == (5, 2, 2)


def test_argument_errors_and_meta_device():
    with pytest.raises(ValueError, match="n_layer must be an integer >= 1, got 0"):
        LSTMBackbone(d_model=D, n_layer=0)
    with pytest.raises(ValueError, match="dropout"):
        GRUBackbone(d_model=D, dropout=1.5, n_layer=2)
    with torch.device("meta"):  # how the config validation checks the arguments
        for cls in (LSTMBackbone, GRUBackbone):
            assert cls(d_model=128, dropout=0.1, n_layer=3).rnn.weight_ih_l0.is_meta


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_cpu_bf16_autocast_runs_the_rnn_in_fp32(name):
    """Under CPU bf16 autocast (trainer.bf16=true on a CPU) the RNN runs in fp32: torch's oneDNN LSTM has no
    bf16 kernel there and used to fail; the result equals the fp32 forward and gradients flow."""
    torch.manual_seed(0)
    net = build_backbone(name, d_model=16, dropout=0.0, n_layer=2)
    x = torch.randn(2, 7, 16, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, :3] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x, mask)
        y_t, _ = net.step(x[:, 0], net.init_state(2))
    assert y.dtype == torch.float32 and y_t.dtype == torch.float32
    torch.testing.assert_close(y, net(x, mask), rtol=0, atol=0)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
