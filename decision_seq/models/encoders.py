"""Token encoders of TrajectoryModel: observations and actions -> embeddings (..., D).

The observation encoder is chosen from the observation shape. Vector observations (S,) get the linear
embedding of the Decision Transformer (Chen et al. 2021). Image observations, single 84x84 grayscale
frames (Atari, as DQN-Replay stores them), get the Nature-DQN convolution stack of the DT Atari code
(Mnih et al. 2015) over the last FRAME_STACK frames, which the sampler stacks on the fly. Actions:
discrete ones are embedded by index, as in the DT Atari code; continuous ones linearly, as in its
MuJoCo code.

Each encoder is a plain module that TrajectoryModel stores under its historical attribute name
(`embed_state`, `embed_action`), so state_dict keys and checkpoints are those of the single-file model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from decision_seq.data.frames import FRAME_SHAPE, FRAME_STACK

FLOAT_CHUNK = 512  # images converted to float at a time when training (58 MB of 4-frame stacks)


class FrameEncoder(nn.Module):
    """Stacked frames (..., C, 84, 84), uint8 0..255 (or float on that scale) -> (..., D).

    The DT Atari code's state encoder: frames scaled to [0, 1], conv 32x8x8 stride 4, conv 64x4x4
    stride 2, conv 64x3x3 stride 1 (ReLU after each), flatten (64 x 7 x 7 = 3136), linear to D, tanh.
    """

    def __init__(self, embed_dim: int, frames: int = FRAME_STACK):
        super().__init__()
        self.frames = frames
        # In-place ReLUs: a convolution's backward needs its input, not its output, so overwriting the output
        # saves one activation copy per layer (B x K images per batch: 0.3 GiB at the DT paper's batch 128).
        self.convs = nn.Sequential(
            nn.Conv2d(frames, 32, 8, stride=4),  # (N, 32, 20, 20)
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, stride=2),  # (N, 64, 9, 9)
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, stride=1),  # (N, 64, 7, 7)
            nn.ReLU(inplace=True),
            nn.Flatten(),  # (N, 3136)
        )
        self.proj = nn.Sequential(nn.Linear(64 * 7 * 7, embed_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        if tuple(x.shape[-3:]) != (self.frames, *FRAME_SHAPE):
            raise ValueError(f"expected stacked frames (..., {self.frames}, 84, 84), got {tuple(x.shape)}")
        # The DT code divides the uint8 frames by 255 in its dataset; here, so frames stay uint8 until used.
        x = x.reshape(-1, self.frames, *FRAME_SHAPE)  # (N, C, 84, 84)
        conv1 = self.convs[0]
        dtype = conv1.weight.dtype
        if x.dtype == torch.uint8 and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type):
            # Training: the first convolution keeps the uint8 frames for its backward, not their float copy.
            h = _ScaledConv.apply(x, conv1.weight, conv1.bias, conv1.stride, FLOAT_CHUNK)  # (N, 32, 20, 20)
        else:
            # uint8 -> float makes a new tensor, so it can be scaled in place (one float copy of the batch, not two).
            x = x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(dtype) / 255.0
            h = conv1(x)  # (N, 32, 20, 20)
        return self.proj(self.convs[1:](h)).reshape(*lead, -1)  # (..., D)


class _ScaledConv(torch.autograd.Function):
    """conv2d(x / 255, weight, bias) of uint8 frames x (N, C, 84, 84), at most `chunk` images in float at a time.

    Saves x itself for the weight gradient and converts it again there, chunk by chunk: nn.Conv2d on the float
    frames would keep their float copy, 4 bytes a pixel (0.43 GB at the DT Atari batch of 128 x 30 stacks,
    the largest activation of the model). Same values as the plain path; no gradient for x (data)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, chunk):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.chunk = stride, chunk
        out = None
        for i in range(0, x.shape[0], chunk):
            y = F.conv2d(x[i : i + chunk].to(weight.dtype).div_(255.0), weight, bias, stride)  # (n, 32, 20, 20)
            if out is None:
                out = y.new_empty((x.shape[0], *y.shape[1:]))
            out[i : i + chunk] = y
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight)
            for i in range(0, x.shape[0], ctx.chunk):
                xf = x[i : i + ctx.chunk].to(weight.dtype).div_(255.0)
                grad_w += torch.nn.grad.conv2d_weight(xf, weight.shape, grad_out[i : i + ctx.chunk], stride=ctx.stride)
        if ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return None, grad_w, grad_b, None, None


def is_image_shape(obs_shape: Sequence[int]) -> bool:
    """True for the single-frame observations of the image encoder: (84, 84)."""
    return tuple(int(n) for n in obs_shape) == FRAME_SHAPE


def observation_encoder(obs_shape: Sequence[int], embed_dim: int) -> nn.Module:
    """Encoder of observations of shape `obs_shape` (one step's, without batch / time dims) -> (..., embed_dim).

    (S,) -> linear, input (..., S). (84, 84) single frames -> FrameEncoder, input (..., FRAME_STACK, 84, 84).
    """
    shape = tuple(int(n) for n in obs_shape)
    if len(shape) == 1 and shape[0] >= 1:
        return nn.Linear(shape[0], embed_dim)  # (..., S) -> (..., D)
    if is_image_shape(shape):
        return FrameEncoder(embed_dim)
    raise ValueError(
        f"no observation encoder for observations of shape {shape}: supported are vector observations (S,) "
        f"and single 84x84 grayscale frames (84, 84), stacked {FRAME_STACK} at a time"
    )


def action_encoder(action_dim: int, discrete: bool, embed_dim: int) -> nn.Module:
    """Encoder of actions: (...,) int indices when `discrete` (action_dim choices), else (..., action_dim).

    Departure from the DT Atari code, which follows its action embedding with a tanh: a plain embedding,
    as this suite's discrete models have always had (their checkpoints keep loading)."""
    return nn.Embedding(action_dim, embed_dim) if discrete else nn.Linear(action_dim, embed_dim)
