"""mamba-ssm's and causal-conv1d's own Python code on the CPU, over stand-ins for their CUDA extensions.

`mamba_ssm_on_cpu()` registers the stand-in extension modules (selective_scan_cuda.py, causal_conv1d_cuda.py
beside this file) in sys.modules, imports the installed packages' Python wrappers over them and yields them;
on exit it takes every mamba_ssm / causal_conv1d module out of sys.modules again (kept here for the next entry:
causal_conv1d registers torch custom ops, which must not be registered twice) and clears decision_seq's cached
kernel look-ups, so nothing outside the block sees kernels that only work over stand-ins.

Two parts of mamba_ssm are not imported as it would: its package __init__ does not run (it imports Mamba-3,
whose tilelang / quack / cute kernels and transformers are not installed here), and without Triton the
Triton layer-norm module that selective_scan_interface imports (only used by its fused fast path) is a
stand-in that raises when called. With Triton installed, its kernels run in Triton's interpreter
(TRITON_INTERPRET=1 while the block is open), which is what the Mamba-2 tests need.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator

from decision_seq.models.ops.kernels import load_kernels, load_ssd_kernels
from tests.models.ops.standins import causal_conv1d_cuda, selective_scan_cuda

_PREFIXES = ("mamba_ssm", "causal_conv1d", "selective_scan_cuda", "causal_conv1d_cuda")
_kept: dict[str, types.ModuleType] = {}  # the modules of the first entry, put back on the next


def skip_reason() -> str | None:
    """Why these stand-ins should not run here, or None: a package is not installed, or the real compiled
    extensions are (a CUDA machine: tests/gpu runs the real kernels, and a stand-in causal_conv1d would
    re-register the torch custom ops that the real one dispatches through)."""
    for name in ("mamba_ssm", "causal_conv1d", "einops"):
        if importlib.util.find_spec(name) is None:
            return (
                f"{name} is not installed; install mamba-ssm's Python package without compiling "
                "(MAMBA_SKIP_CUDA_BUILD=TRUE ... pip install --no-build-isolation --no-deps, see the Makefile)"
            )
    for name in ("selective_scan_cuda", "causal_conv1d_cuda"):
        if importlib.util.find_spec(name) is not None:
            return f"the real compiled {name} is installed: the GPU tests check the real kernels"
    return None


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PREFIXES)


def _layer_norm_standin() -> types.ModuleType:
    module = types.ModuleType("mamba_ssm.ops.triton.layer_norm", "stand-in: Triton is not installed")

    def _layer_norm_fwd(*args, **kwargs):
        raise NotImplementedError("mamba_ssm's Triton layer norm needs Triton, which is not installed")

    module._layer_norm_fwd = _layer_norm_fwd
    return module


def _install(triton: bool) -> None:
    sys.modules["selective_scan_cuda"] = selective_scan_cuda
    sys.modules["causal_conv1d_cuda"] = causal_conv1d_cuda
    spec = importlib.util.find_spec("mamba_ssm")
    sys.modules["mamba_ssm"] = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    if not triton:
        sys.modules["mamba_ssm.ops.triton.layer_norm"] = _layer_norm_standin()


@contextlib.contextmanager
def mamba_ssm_on_cpu() -> Iterator[types.SimpleNamespace]:
    """Yields mamba_ssm's selective_scan_fn / selective_scan_ref / Mamba and causal_conv1d's causal_conv1d_fn /
    causal_conv1d_ref running over the stand-ins (`triton` says whether Triton's interpreter is available)."""
    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _ours(n)]}
    triton = has_triton()
    old_interpret = os.environ.get("TRITON_INTERPRET")
    if triton:
        os.environ["TRITON_INTERPRET"] = "1"  # read when Triton kernels are defined: before mamba_ssm's import
    try:
        if _kept:
            sys.modules.update(_kept)
        else:
            _install(triton)
        interface = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        conv = importlib.import_module("causal_conv1d.causal_conv1d_interface")
        yield types.SimpleNamespace(
            selective_scan_fn=interface.selective_scan_fn,
            selective_scan_ref=interface.selective_scan_ref,
            causal_conv1d_fn=importlib.import_module("causal_conv1d").causal_conv1d_fn,
            causal_conv1d_ref=conv.causal_conv1d_ref,
            Mamba=importlib.import_module("mamba_ssm.modules.mamba_simple").Mamba,
            triton=triton,
        )
    finally:
        for name in [n for n in sys.modules if _ours(n)]:
            _kept[name] = sys.modules.pop(name)
        sys.modules.update(saved)
        if old_interpret is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old_interpret
        load_kernels.cache_clear()
        load_ssd_kernels.cache_clear()
