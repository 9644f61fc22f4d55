"""CPU stand-in for causal-conv1d 1.7.0's compiled `causal_conv1d_cuda` extension: `causal_conv1d_fwd`,
`causal_conv1d_bwd` and `causal_conv1d_update`, with the argument checks of csrc/causal_conv1d.cpp and the
depthwise causal convolution (and its gradient) written as loops over the kernel taps (not F.conv1d).

Like the extension they write their results into the tensors passed in (out, dx, dweight, dbias, conv_state).
The checks are the C++ TORCH_CHECKs and raise RuntimeError as they do (CUDA checks become "same device as x");
seq_idx, initial_states, final_states and the update's cache_seqlens / conv_state_indices pass the checks but
are not implemented (NotImplementedError): neither decision_seq nor mamba_ssm.Mamba(2) uses them here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def _check_shape(t: torch.Tensor, name: str, *shape: int) -> None:
    _check(tuple(t.shape) == shape, f"{name} must have shape {shape}, got {tuple(t.shape)}")


def _check_common(x, weight, bias, same_device=()):
    """dtype / shape / width / bias checks of every entry point -> (batch, dim, seqlen, width)."""
    _check(x.dtype in FLOAT_DTYPES, f"x must be float32, float16 or bfloat16, got {x.dtype}")
    _check(weight.dtype in FLOAT_DTYPES, f"weight must be float32, float16 or bfloat16, got {weight.dtype}")
    for name, t in (("weight", weight), ("bias", bias), *same_device):
        if t is not None:
            _check(t.device == x.device, f"{name} must be on x's device {x.device}, got {t.device}")
    _check(x.dim() == 3, f"x must be (batch, dim, seqlen), got shape {tuple(x.shape)}")
    batch, dim, seqlen = x.shape
    width = weight.size(-1)
    _check_shape(weight, "weight", dim, width)
    _check(2 <= width <= 4, "causal_conv1d only supports width between 2 and 4")
    if bias is not None:
        _check(bias.dtype == weight.dtype, f"bias must have weight's dtype {weight.dtype}, got {bias.dtype}")
        _check(bias.stride(-1) == 1, "bias must have a contiguous last dimension")
        _check_shape(bias, "bias", dim)
    return batch, dim, seqlen, width


def _layout(x: torch.Tensor, name: str = "x") -> bool:
    """The kernel's two layouts: contiguous along seqlen, or channel-last (contiguous along dim) -> channel_last."""
    _check(x.stride(2) == 1 or x.stride(1) == 1, f"{name} must be contiguous along seqlen or along dim")
    channel_last = x.stride(1) == 1 and x.stride(2) > 1
    if channel_last:
        _check(x.size(1) % 8 == 0, "causal_conv1d only supports channel dimension divisible by 8 for now")
        _check(
            x.stride(2) % 8 == 0 and x.stride(0) % 8 == 0,
            f"causal_conv1d with channel last layout requires strides ({name}.stride(0) and {name}.stride(2)) "
            "to be multiples of 8",
        )
    return channel_last


def _unsupported(**given) -> None:
    names = [name for name, t in given.items() if t is not None]
    if names:
        raise NotImplementedError(f"the causal_conv1d_cuda stand-in does not implement {', '.join(names)}")


def _reference(x, weight, bias, silu):
    """out[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t - (width - 1) + k]) in fp32 (zero before t=0)."""
    seqlen, width = x.shape[-1], weight.shape[-1]
    xf = torch.cat([x.new_zeros(*x.shape[:-1], width - 1), x], dim=-1).float()  # causal zero padding
    out = sum(weight[:, k, None].float() * xf[..., k : k + seqlen] for k in range(width))
    if bias is not None:
        out = out + bias[:, None].float()
    return F.silu(out) if silu else out


def causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, out, final_states_out, silu_activation):
    _check_common(x, weight, bias, same_device=(("out", out),))
    _layout(x)
    _unsupported(seq_idx=seq_idx, initial_states=initial_states, final_states_out=final_states_out)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        out.copy_(_reference(x, weight, bias, silu_activation))


def causal_conv1d_bwd(
    x, weight, bias, dout, seq_idx, initial_states, dfinal_states, dx, dweight, dbias, dinitial_states, silu_activation
):
    batch, dim, seqlen, width = _check_common(x, weight, bias, same_device=(("dout", dout), ("dx", dx)))
    _check((bias is None) == (dbias is None), "bias and dbias must be given together")
    _check_shape(dout, "dout", batch, dim, seqlen)
    channel_last = _layout(x)
    if channel_last:
        _layout(dout, "dout")
    _check(dx.dtype == x.dtype, f"dx must have x's dtype {x.dtype}, got {dx.dtype}")
    _check_shape(dx, "dx", batch, dim, seqlen)
    _check(dx.stride(1 if channel_last else 2) == 1, "dx must have x's layout")
    _unsupported(seq_idx=seq_idx, initial_states=initial_states, dfinal_states=dfinal_states)
    # By hand, not autograd: the extension is called inside a torch custom op, below the autograd dispatch.
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        pre = _reference(x, weight, bias, silu=False)  # (batch, dim, seqlen), fp32
        g = dout.float()
        if silu_activation:
            s = torch.sigmoid(pre)
            g = g * s * (1 + pre * (1 - s))  # silu'(pre)
        xf = torch.cat([x.new_zeros(batch, dim, width - 1), x], dim=-1).float()
        dx_padded = torch.zeros_like(xf)
        for k in range(width):
            dx_padded[..., k : k + seqlen] += weight[:, k, None].float() * g
            dweight[:, k] = (g * xf[..., k : k + seqlen]).sum((0, 2))
        dx.copy_(dx_padded[..., width - 1 :])
        if bias is not None:
            dbias.copy_(g.sum((0, 2)))


def causal_conv1d_update(x, conv_state, weight, bias, out, silu_activation, cache_seqlens, conv_state_indices):
    """One or more new tokens x (batch, dim, seqlen) against conv_state (batch, dim, state_len), both updated."""
    _check(conv_state.dtype == x.dtype, f"conv_state must have x's dtype {x.dtype}, got {conv_state.dtype}")
    batch, dim, seqlen, width = _check_common(x, weight, bias, same_device=(("conv_state", conv_state),))
    state_len = conv_state.size(2)
    _check(state_len >= width - 1, f"conv_state must hold at least width - 1 = {width - 1} steps, got {state_len}")
    _check_shape(conv_state, "conv_state", batch, dim, state_len)
    _unsupported(cache_seqlens=cache_seqlens, conv_state_indices=conv_state_indices)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        window = torch.cat([conv_state, x], dim=-1)  # (batch, dim, state_len + seqlen)
        conv_state.copy_(window[..., -state_len:])
        history = window[..., state_len - (width - 1) :]  # the last width - 1 steps before x, then x
        y = sum(weight[:, k, None].float() * history[..., k : k + seqlen].float() for k in range(width))
        if bias is not None:
            y = y + bias[:, None].float()
        out.copy_(F.silu(y) if silu_activation else y)
