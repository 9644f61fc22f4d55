"""CPU stand-in for mamba-ssm 2.3.2.post1's compiled `selective_scan_cuda` extension: its two entry points,
`fwd` and `bwd`, with the argument checks of csrc/selective_scan/selective_scan.cpp and the selective-scan
math written as a plain loop over time (independent of decision_seq's own scan).

The checks are the C++ TORCH_CHECKs (dtypes, shapes, a contiguous last dimension, dstate <= 256) and raise
RuntimeError as they do; where the C++ requires CUDA tensors this stand-in requires every tensor to be on u's
device instead. Only a real A (fp32) is supported: the complex variant raises NotImplementedError.
`bwd` differentiates the reference forward with autograd, so it returns the exact gradients of that forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CHUNK = 2048  # the kernel keeps the state at the end of every 2048 steps (n_chunks in selective_scan.cpp)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def _check_shape(t: torch.Tensor, name: str, *shape: int) -> None:
    _check(tuple(t.shape) == shape, f"{name} must have shape {shape}, got {tuple(t.shape)}")


def _check_last_dim(t: torch.Tensor, name: str) -> None:
    _check(t.stride(-1) == 1 or t.size(-1) == 1, f"{name} must have a contiguous last dimension")


def _check_args(u, delta, A, B, C, D, z, delta_bias):
    """The checks shared by selective_scan_fwd and selective_scan_bwd; returns (batch, dim, seqlen, dstate)."""
    input_type, weight_type = u.dtype, A.dtype
    _check(input_type in INPUT_DTYPES, f"u must be float32, float16 or bfloat16, got {input_type}")
    _check(weight_type in (torch.float32, torch.complex64), f"A must be float32 or complex64, got {weight_type}")
    if weight_type == torch.complex64:
        raise NotImplementedError("the selective_scan_cuda stand-in supports a real A only")
    variable_B, variable_C = B.dim() >= 3, C.dim() >= 3
    _check(delta.dtype == input_type, f"delta must have u's dtype {input_type}, got {delta.dtype}")
    _check(B.dtype == (input_type if variable_B else weight_type), f"B has the wrong dtype {B.dtype}")
    _check(C.dtype == (input_type if variable_C else weight_type), f"C has the wrong dtype {C.dtype}")
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("delta_bias", delta_bias)):
        if t is not None:
            _check(t.device == u.device, f"{name} must be on u's device {u.device}, got {t.device}")
    _check_last_dim(u, "u")
    _check_last_dim(delta, "delta")
    _check(u.dim() == 3, f"u must be (batch, dim, seqlen), got shape {tuple(u.shape)}")
    batch, dim, seqlen = u.shape
    dstate = A.size(1)
    n_groups = B.size(1) if variable_B else 1
    _check(dstate <= 256, "selective_scan only supports state dimension <= 256")
    _check_shape(u, "u", batch, dim, seqlen)
    _check_shape(delta, "delta", batch, dim, seqlen)
    _check_shape(A, "A", dim, dstate)
    for name, t, variable in (("B", B, variable_B), ("C", C, variable_C)):
        if variable:
            _check_shape(t, name, batch, n_groups, dstate, seqlen)
            _check_last_dim(t, name)
        else:
            _check_shape(t, name, dim, dstate)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _check(t.dtype == torch.float32, f"{name} must be float32, got {t.dtype}")
            _check_last_dim(t, name)
            _check_shape(t, name, dim)
    if z is not None:
        _check(z.dtype == input_type, f"z must have u's dtype {input_type}, got {z.dtype}")
        _check_last_dim(z, "z")
        _check_shape(z, "z", batch, dim, seqlen)
    return batch, dim, seqlen, dstate


def _per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C, (dim, n) or (batch, groups, n, L) -> fp32 (batch|1, dim, n, L|1); channel d reads group
    d // (dim / groups)."""
    t = t.float()
    if t.dim() == 2:
        return t[None, :, :, None]
    return t.repeat_interleave(dim // t.shape[1], dim=1)


def _reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """The scan in fp32, one time step at a time -> (out (fp32), out_z (fp32) or None, states at chunk ends)."""
    batch, dim, seqlen = u.shape
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bc, Cc = _per_channel(B, dim), _per_channel(C, dim)  # (batch|1, dim, n, L|1)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys, chunk_states = [], []
    for t in range(seqlen):
        Bt = Bc[..., t if Bc.shape[-1] > 1 else 0]
        Ct = Cc[..., t if Cc.shape[-1] > 1 else 0]
        dt = delta[:, :, t, None]  # (batch, dim, 1)
        h = torch.exp(dt * A) * h + dt * Bt * u[:, :, t, None]
        ys.append((h * Ct).sum(-1))
        if (t + 1) % CHUNK == 0 or t == seqlen - 1:
            chunk_states.append(h)
    out = torch.stack(ys, dim=-1)  # (batch, dim, seqlen)
    if D is not None:
        out = out + D.float()[:, None] * u
    out_z = None if z is None else out * F.silu(z.float())
    return out, out_z, chunk_states


def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """selective_scan_fwd: -> [out, x] (+ [out_z] when z is given); x (batch, dim, n_chunks, 2 * dstate) holds
    the state at the end of each chunk at the odd positions (the wrapper reads x[:, :, -1, 1::2])."""
    batch, dim, seqlen, dstate = _check_args(u, delta, A, B, C, D, z, delta_bias)
    with torch.no_grad(), torch.autocast(u.device.type, enabled=False):
        out, out_z, chunk_states = _reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    x = A.new_zeros(batch, dim, len(chunk_states), 2 * dstate)
    x[..., 1::2] = torch.stack(chunk_states, dim=2)
    result = [out.to(delta.dtype), x]
    if z is not None:
        result.append(out_z.to(z.dtype))
    return result


def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, delta_softplus, recompute_out_z):
    """selective_scan_bwd: -> [du, ddelta, dA, dB, dC, dD, ddelta_bias] (+ [dz] with z, + [out_z] if
    recompute_out_z); dD / ddelta_bias are None when D / delta_bias are. dout is the gradient of out_z when z is
    given, else of out. A given dz is written in place, as the kernel does."""
    batch, dim, seqlen, dstate = _check_args(u, delta, A, B, C, D, z, delta_bias)
    _check(dout.dtype == u.dtype, f"dout must have u's dtype {u.dtype}, got {dout.dtype}")
    _check_last_dim(dout, "dout")
    _check_shape(dout, "dout", batch, dim, seqlen)
    if z is not None:
        _check(out is not None, "out must be given with z")
        _check(out.dtype == u.dtype, f"out must have u's dtype {u.dtype}, got {out.dtype}")
        _check_last_dim(out, "out")
        _check_shape(out, "out", batch, dim, seqlen)
        if dz is not None:
            _check(dz.dtype == u.dtype, f"dz must have u's dtype {u.dtype}, got {dz.dtype}")
            _check_last_dim(dz, "dz")
            _check_shape(dz, "dz", batch, dim, seqlen)
    n_chunks = (seqlen + CHUNK - 1) // CHUNK
    _check(n_chunks == 1 or x is not None, "x must be given when seqlen > 2048")
    if x is not None:
        _check(x.dtype == A.dtype, f"x must have A's dtype {A.dtype}, got {x.dtype}")
        _check(x.is_contiguous(), "x must be contiguous")
        _check_shape(x, "x", batch, dim, n_chunks, 2 * dstate)

    leaves = [None if t is None else t.detach().float().requires_grad_() for t in (u, delta, A, B, C, D, z, delta_bias)]
    with torch.enable_grad(), torch.autocast(u.device.type, enabled=False):
        out_ref, out_z, _ = _reference(*leaves, delta_softplus)
        target = out_ref if z is None else out_z
        wrt = [t for t in leaves if t is not None]
        grads = dict(zip([id(t) for t in wrt], torch.autograd.grad(target, wrt, dout.float()), strict=True))
    du, ddelta, dA, dB, dC, dD, dz_ref, ddelta_bias = (None if t is None else grads[id(t)] for t in leaves)
    result = [du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype)]
    result += [None if D is None else dD.to(D.dtype), None if delta_bias is None else ddelta_bias.to(delta_bias.dtype)]
    if z is not None:
        dz = dz_ref.to(z.dtype) if dz is None else dz.copy_(dz_ref)
        result.append(dz)
    if recompute_out_z:
        result.append(out_z.detach().to(out.dtype))
    return result
