"""The optional mamba_ssm / causal_conv1d CUDA kernels, imported in this one place and only on demand:
`load_kernels` (Mamba's selective scan) and `load_ssd_kernels` (Mamba-2's Triton SSD scan).

mamba_ssm cannot even be imported without its CUDA extension, so nothing imports it at package import
time: `load_kernels()` tries once (cached) and returns None where the kernels are missing or broken, and
every caller then takes the pure-PyTorch path (models/ops/selective_scan.py).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

# Dtypes the mamba_ssm selective-scan kernel accepts for u / delta / B / C / z.
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class Kernels(NamedTuple):
    selective_scan_fn: Callable
    causal_conv1d_fn: Callable | None  # None when causal_conv1d is not installed


@functools.cache
def load_kernels() -> Kernels | None:
    """The mamba_ssm (and, if present, causal_conv1d) kernel functions, or None when they do not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):  # not installed, or built against another torch / CUDA
        return None
    except Exception as err:  # a broken install of one of its optional dependencies: fall back, say so
        warnings.warn(
            f"mamba_ssm is installed but failed to import ({type(err).__name__}: {err}); "
            "using the pure-PyTorch Mamba path",
            stacklevel=2,
        )
        return None
    return Kernels(selective_scan_fn, _causal_conv1d())


class SSDKernels(NamedTuple):
    mamba_chunk_scan_combined: Callable  # mamba_ssm's Triton SSD scan (Mamba-2)
    causal_conv1d_fn: Callable | None  # None when causal_conv1d is not installed


@functools.cache
def load_ssd_kernels() -> SSDKernels | None:
    """mamba_ssm's Mamba-2 chunked scan (Triton) and, if present, causal_conv1d; None when they do not import."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except (ImportError, OSError):  # not installed, no triton, or built against another torch / CUDA
        return None
    except Exception as err:  # a broken install: fall back, say so
        warnings.warn(
            f"mamba_ssm's SSD kernel failed to import ({type(err).__name__}: {err}); "
            "using the pure-PyTorch Mamba-2 path",
            stacklevel=2,
        )
        return None
    return SSDKernels(mamba_chunk_scan_combined, _causal_conv1d())


def _causal_conv1d() -> Callable | None:
    """causal_conv1d's kernel, or None when it is not installed (the mixers then convolve with torch)."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except (ImportError, OSError):
        return None
    return causal_conv1d_fn


def kernels_for(use_kernels: bool | None, load: Callable[[], Any], x: torch.Tensor, who: str) -> Any | None:
    """The kernels a mixer runs on `x`: None (the PyTorch path) when `use_kernels` is False, or when it is None
    and the kernels do not import or `x` is not a CUDA tensor of a kernel dtype; `use_kernels=True` insists."""
    if use_kernels is False:
        return None
    kernels = load()
    usable = kernels is not None and x.is_cuda and x.dtype in KERNEL_DTYPES
    if use_kernels is True and not usable:
        raise RuntimeError(
            f"{who}(use_kernels=True) got a {x.dtype} tensor on {x.device}; the mamba_ssm kernels need CUDA "
            "and fp32/fp16/bf16"
        )
    return kernels if usable else None
