"""Resources of one job in a multirun sweep: how many jobs share this machine, and from that which
GPU and how many CPU threads the job takes.

Launchers that run several jobs at once on one machine (hydra-joblib-launcher: `hydra/launcher=local`
or `=joblib`) would otherwise give every job all cores (torch's default thread count) and the same
GPU. Launchers that give each job its own allocation (SLURM through submitit, Ray) and the basic
launcher (one job at a time) leave the job's defaults alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / cgroup CPU sets
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch CUDA runtime: no GPUs
        return 0


def parallel_jobs_default() -> int:
    """`hydra/launcher=local`'s n_jobs: one job per GPU on a GPU machine, else one per 2 CPU cores."""
    gpus = _gpu_count()
    return gpus if gpus > 0 else max(1, _cpu_count() // 2)


def concurrent_jobs() -> int:
    """How many jobs of the current sweep may run at once on this machine (1 outside a local parallel sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return 1
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or "JoblibLauncher" not in str(hc.launcher.get("_target_", "")):
        return 1
    n = int(hc.launcher.get("n_jobs") or 1)
    if n < 0:  # joblib: -1 = all CPUs, -2 = all but one, ...
        n = _cpu_count() + 1 + n
    return max(1, n)


def _job_num() -> int:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.num)


def job_resources(device: str, num_threads: int | None) -> tuple[str, int | None]:
    """(device, torch CPU threads) for this job: in a local parallel sweep, job i of n concurrent jobs gets
    cuda:(i mod #GPUs) when `device` is "auto" and there are several GPUs, and cores // n threads when
    `num_threads` is unset. Explicit settings are kept."""
    jobs = concurrent_jobs()
    if jobs <= 1:
        return device, num_threads
    job_num = _job_num()
    gpus = _gpu_count()
    if device == "auto" and gpus > 1:
        device = f"cuda:{job_num % gpus}"
    if num_threads is None:
        num_threads = max(1, _cpu_count() // jobs)
    log.info("job %d of a %d-way parallel sweep: device %s, %s CPU threads", job_num, jobs, device, num_threads)
    return device, num_threads


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """Make glibc give blocks of `threshold` bytes or more back to the system when they are freed.

    By default glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after which
    such blocks are served from the heap and stay in the process's RSS once freed: a run's RSS keeps the
    high-water mark of its freed activations (about 1 GiB at the Atari presets; docs/benchmarks.md). Used for
    image datasets, where memory is the constraint. Linux with glibc only; True when it was set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
