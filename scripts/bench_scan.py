"""Selective-scan timing: the reference loop vs the PyTorch scan vs the fused CPU kernel, and the full MambaMixer.

Defaults are the Decision Mamba paper config (Ota 2024): batch 64, K=20 steps = 60 tokens, d_model 128
(d_inner 256), d_state 16, fp32. Both scans are checked against each other first, then timed in
interleaved rounds (median per call), so a noisy shared machine does not favour either one.

    python scripts/bench_scan.py
    python scripts/bench_scan.py --batch 16 --seq-len 120 --repeats 20 --threads 1
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from decision_seq.models.backbones.mamba import MambaMixer
from decision_seq.models.ops.scan_cpu import load_scan_cpu
from decision_seq.models.ops.selective_scan import selective_scan, selective_scan_ref


def scan_inputs(batch, seq_len, d_inner, d_state, dtype, grad):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, seq_len, d_inner, generator=g, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(batch, seq_len, d_inner, generator=g, dtype=dtype) - 2)
    A = -torch.arange(1, d_state + 1, dtype=dtype).repeat(d_inner, 1)  # (d_inner, d_state), S4D-real
    B = torch.randn(batch, seq_len, d_state, generator=g, dtype=dtype)
    C = torch.randn(batch, seq_len, d_state, generator=g, dtype=dtype)
    D = torch.ones(d_inner, dtype=dtype)
    ins = [u, delta, A, B, C, D]
    return [x.requires_grad_(grad) for x in ins]


def timer(fn, backward: bool):
    """A callable running fn once (plus backward of a scalar loss) and returning its wall time in ms."""

    def run():
        t0 = time.perf_counter()
        if backward:
            fn().square().mean().backward()
        else:
            with torch.no_grad():
                fn()
        return (time.perf_counter() - t0) * 1e3

    return run


def bench(cases: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median ms per call for each case, timed round-robin."""
    for run in cases.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            times[name].append(run())
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=60, help="tokens (3 per timestep: 60 = K 20)")
    p.add_argument("--d-model", type=int, default=128, help="d_inner = 2 * d_model")
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10, help="timed calls per case (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d_inner = 2 * args.d_model
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; batch {args.batch}, "
        f"seq {args.seq_len}, d_model {args.d_model} (d_inner {d_inner}), d_state {args.d_state}, "
        f"median of {args.repeats}"
    )

    ins = scan_inputs(args.batch, args.seq_len, d_inner, args.d_state, torch.float32, grad=True)
    scans = {"loop": selective_scan_ref, "torch": functools.partial(selective_scan, impl="torch")}
    if load_scan_cpu(torch.float32) is not None:
        scans["fused"] = functools.partial(selective_scan, impl="fused")
    y_ref = selective_scan_ref(*ins)
    for name, f in scans.items():
        print(f"max |{name} - loop| forward: {(f(*ins) - y_ref).abs().max().item():.2e}")

    results = {}
    for backward in (False, True):
        results[backward] = bench(
            {name: timer(lambda f=f: f(*ins), backward) for name, f in scans.items()}, args.repeats
        )
    print()
    print(f"{'scan':<22}{'forward ms':>12}{'fwd+bwd ms':>12}{'x loop':>8}")
    for name in scans:
        ratio = results[True][name] / results[True]["loop"]
        print(f"{name:<22}{results[False][name]:>12.2f}{results[True][name]:>12.2f}{ratio:>8.3f}")

    torch.manual_seed(0)
    mixer = MambaMixer(d_model=args.d_model, d_state=args.d_state, use_kernels=False)
    x = torch.randn(args.batch, args.seq_len, args.d_model)
    mix = {bw: bench({"mixer": timer(lambda: mixer(x), bw)}, args.repeats)["mixer"] for bw in (False, True)}
    print(f"{'MambaMixer (fast)':<22}{mix[False]:>12.2f}{mix[True]:>12.2f}")


if __name__ == "__main__":
    main()
