"""The fused CPU kernels of scan_cpu.c (selective scan; causal conv + silu): built with the system C compiler
on first use, loaded with ctypes.

Optional and fallback-safe: `load_scan_cpu()` returns None (and the PyTorch scan in selective_scan.py is
used) when there is no C compiler, the build fails, the C source is not installed, or
DECISION_SEQ_SCAN_CPU=0. The shared libraries are cached under $DECISION_SEQ_CACHE (default
~/.cache/decision_seq) in a file named by a hash of the source, the flags and the CPU's feature flags
(the build targets the host CPU with -march=native, so a cache shared between unlike machines cannot
load a library built for the other one). Each dtype (fp32, fp64) is built on its first use: 1 to 3 s on
an idle 2-core machine, up to 20 s on a loaded one; later runs load the cached library.

Why not torch.compile: inductor does emit a fused loop for the scan, but compiling the 60-step forward
alone took about 3 minutes on the 2-core CPU of docs/benchmarks.md and ran only 1.5x faster than the
eager scan; this kernel builds in seconds and runs forward + backward 2.7-5x faster than the eager scan.

Threads: the kernel itself is single-threaded; batch rows are split over torch.get_num_threads() Python
threads (ctypes releases the GIL during the call).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("scan_cpu.c")
_TYPES = {torch.float32: ("float", 32), torch.float64: ("double", 64)}
# -fopenmp-simd: honour the `omp simd` pragmas without linking an OpenMP runtime; no -ffast-math (it
# would reassociate beyond the tests' tolerance and, linked into a shared library, may flush denormals
# process-wide). No -march=native fallback needed: the second variant builds for the generic target.
_VARIANTS = (
    ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp-simd", "-fno-trapping-math"],
    ["-O3", "-fPIC", "-shared", "-fopenmp-simd", "-fno-trapping-math"],
)


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    return Path(os.environ.get("DECISION_SEQ_CACHE", Path.home() / ".cache" / "decision_seq")) / "scan_cpu"


def _build(scalar: str, bits: int) -> ctypes.CDLL | None:
    cc = os.environ.get("CC", "cc")
    source = SOURCE.read_bytes()
    errors = []
    for variant in _VARIANTS:
        flags = [*variant, f"-DSCALAR_BITS={bits}"]
        key = hashlib.sha256(b"\0".join([source, " ".join([cc, *flags]).encode(), _cpu_flags().encode()]))
        path = _cache_dir() / f"scan_{scalar}_{key.hexdigest()[:16]}.so"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
            os.close(fd)
            cmd = [cc, *flags, str(SOURCE), "-o", tmp]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as err:
                Path(tmp).unlink(missing_ok=True)
                errors.append(str(err))
                break  # no compiler: no variant will build
            if done.returncode != 0:
                Path(tmp).unlink(missing_ok=True)
                errors.append(done.stderr.strip()[-500:])
                continue
            os.replace(tmp, path)  # atomic: concurrent runs sharing the cache see a whole file or none
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as err:
            errors.append(str(err))
            continue
        p, i = ctypes.c_void_p, ctypes.c_long
        c = ctypes.c_int
        lib.scan_fwd.argtypes = [p, p, p, c] + [p] * 5 + [i] + [p] * 2 + [i] * 5
        lib.scan_bwd.argtypes = [p, p, p, c] + [p] * 5 + [i] + [p] * 10 + [i] * 5
        lib.conv_fwd.argtypes = [p, i] + [p] * 4 + [i] * 5
        lib.conv_bwd.argtypes = [p, i] + [p] * 8 + [i] * 5
        lib.scan_fwd.restype = lib.scan_bwd.restype = lib.conv_fwd.restype = lib.conv_bwd.restype = None
        return lib
    warnings.warn(
        f"the fused CPU selective scan did not build ({'; '.join(errors)}); using the PyTorch scan",
        stacklevel=3,
    )
    return None


@functools.cache
def load_scan_cpu(dtype: torch.dtype = torch.float32) -> ctypes.CDLL | None:
    """The kernels built for `dtype` (fp32 or fp64; each built on its first use), or None where they are
    disabled, do not build, or do not exist for that dtype (cached)."""
    if os.environ.get("DECISION_SEQ_SCAN_CPU", "1") == "0" or not SOURCE.exists() or dtype not in _TYPES:
        return None
    return _build(*_TYPES[dtype])


@functools.cache
def _pool(n: int, pid: int) -> concurrent.futures.ThreadPoolExecutor:
    # keyed by the process id: a forked child inherits the cached pool but none of its threads
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="scan_cpu")


def _threads(batch: int) -> int:
    return max(1, min(torch.get_num_threads(), batch))


def _run_rows(fn, batch: int) -> None:
    """fn(i, b0, b1) for slices of batch rows, one per thread i, split over torch's thread count."""
    n = _threads(batch)
    if n == 1:
        fn(0, 0, batch)
        return
    cuts = [batch * i // n for i in range(n + 1)]
    list(_pool(n, os.getpid()).map(fn, range(n), cuts[:-1], cuts[1:]))  # list(): wait, and re-raise any error


def _ptr(x: torch.Tensor) -> int:
    return x.data_ptr()


def _z_arg(z: torch.Tensor | None, u: torch.Tensor):
    """z as the kernel reads it: rows of d contiguous scalars, rows zs apart (no copy for a chunk view)."""
    if z is None:
        return z, None, 0
    L = u.shape[1]
    if not (z.stride(2) == 1 and z.stride(0) == L * z.stride(1)):
        z = z.contiguous()
    return z, _ptr(z), z.stride(1)


def scan_fwd(lib: ctypes.CDLL, u, delta, A, B, C, D=None, z=None, delta_bias=None, softplus=False) -> torch.Tensor:
    """out = (scan(u, delta', A, B, C) + D u) * silu(z) (b, L, d) with delta' = softplus(delta + delta_bias);
    D (d,), z (b, L, d), delta_bias (d,) optional, softplus=False skips it.

    u, delta (b, L, d), A (d, n), B, C (b, L, n), D, delta_bias contiguous, all one CPU float dtype.
    """
    b, L, d = u.shape
    n = A.shape[1]
    out = torch.empty_like(u)
    AT = A.t().contiguous()  # (n, d): the kernel vectorizes over d
    z, z_ptr, zs = _z_arg(z, u)
    D_ptr = None if D is None else _ptr(D)
    h = u.new_empty(_threads(b), (n + 2) * d)  # per thread: the state (n, d), delta u and delta (d,)
    db_ptr = None if delta_bias is None else _ptr(delta_bias)

    def rows(i, b0, b1):
        ptrs = (_ptr(x) for x in (AT, B, C))
        lib.scan_fwd(
            _ptr(u), _ptr(delta), db_ptr, softplus, *ptrs, D_ptr, z_ptr, zs, _ptr(out), _ptr(h[i]), b0, b1, L, d, n
        )

    _run_rows(rows, b)
    return out


def scan_bwd(lib: ctypes.CDLL, u, delta, A, B, C, D, z, delta_bias, softplus, gout):
    """Gradients (gu, gdelta, gA, gB, gC, gD, gz, gdelta_bias) of sum(out * gout); None where the input is."""
    b, L, d = u.shape
    n = A.shape[1]
    gu, gdelta, gB, gC = (torch.empty_like(x) for x in (u, delta, B, C))
    threads = _threads(b)
    AT = A.t().contiguous()  # (n, d)
    z, z_ptr, zs = _z_arg(z, u)
    gz = None if z is None else torch.empty_like(u)
    gAT = u.new_zeros(threads, n, d)  # per-thread partial sums
    gD, gbias = u.new_zeros(threads, d), u.new_zeros(threads, d)
    scratch = u.new_empty(threads, (2 * L + 1) * n * d + (2 * L + 4) * d)  # per thread: states, decays, y, delta
    db_ptr = None if delta_bias is None else _ptr(delta_bias)

    def rows(i, b0, b1):
        ins = (_ptr(u), _ptr(delta), db_ptr, softplus, *(_ptr(x) for x in (AT, B, C)))
        opt = (None if D is None else _ptr(D), z_ptr, zs, _ptr(gout))
        grads = (*(_ptr(x) for x in (gu, gdelta, gAT[i], gB, gC, gD[i], gbias[i])), None if gz is None else _ptr(gz))
        lib.scan_bwd(*ins, *opt, *grads, _ptr(scratch[i]), b0, b1, L, d, n)

    _run_rows(rows, b)
    gD = None if D is None else gD.sum(0)
    return gu, gdelta, gAT.sum(0).t(), gB, gC, gD, gz, None if delta_bias is None else gbias.sum(0)


def _rows_arg(x: torch.Tensor):
    """x (b, L, d) as the kernels read it: rows of d contiguous scalars, rows xs apart."""
    if not (x.stride(2) == 1 and x.stride(0) == x.shape[1] * x.stride(1)):
        x = x.contiguous()
    return x, x.stride(1)


def conv_fwd(lib: ctypes.CDLL, x, wT, bias, keep) -> torch.Tensor:
    """u = keep * silu(causal depthwise conv(keep * x)) (b, L, d); wT (K, d), bias (d,) / keep (b, L) uint8 or None."""
    b, L, d = x.shape
    x, xs = _rows_arg(x)
    u = x.new_empty(b, L, d)
    opt = (None if bias is None else _ptr(bias), None if keep is None else _ptr(keep))

    def rows(i, b0, b1):
        lib.conv_fwd(_ptr(x), xs, _ptr(wT), *opt, _ptr(u), b0, b1, L, d, wT.shape[0])

    _run_rows(rows, b)
    return u


def conv_bwd(lib: ctypes.CDLL, x, wT, bias, keep, gu):
    """(gx, gwT, gbias) of sum(u * gu); gbias None where bias is."""
    b, L, d = x.shape
    K = wT.shape[0]
    x, xs = _rows_arg(x)
    threads = _threads(b)
    gx = x.new_empty(b, L, d)
    gwT = x.new_zeros(threads, K, d)  # per-thread partial sums
    gbias = x.new_zeros(threads, d)
    scratch = x.new_empty(threads, L * d)
    opt = (None if bias is None else _ptr(bias), None if keep is None else _ptr(keep))

    def rows(i, b0, b1):
        gb = None if bias is None else _ptr(gbias[i])
        lib.conv_bwd(
            _ptr(x), xs, _ptr(wT), *opt, _ptr(gu), _ptr(gx), _ptr(gwT[i]), gb, _ptr(scratch[i]), b0, b1, L, d, K
        )

    _run_rows(rows, b)
    return gx, gwT.sum(0), None if bias is None else gbias.sum(0)
