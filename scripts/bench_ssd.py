"""Mamba-2 training-step timing: the chunked SSD scan vs the sequential reference scan, same model, one run.

Paper config (Decision Mamba, MuJoCo): batch 64, K=20 (60 tokens), embed 128, 3 layers, dropout 0.1, plus
Mamba-2's scaled defaults (conf/model/dmamba2.yaml: d_state 64, headdim 32). A step is forward, an MSE loss,
backward and an AdamW update of the Mamba-2 backbone on left-padded windows (mask as in training).
The one model switches scans (Mamba2Mixer.scan_impl) between cases; cases are timed in interleaved rounds
and the median is reported, so a noisy shared machine does not favour either. --chunk-sizes also times the
chunked scan at several chunk sizes (how the default chunk size was chosen).

    python scripts/bench_ssd.py
    python scripts/bench_ssd.py --chunk-sizes 8 16 32 64 --repeats 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from decision_seq.models.backbones.mamba2 import Mamba2Backbone
from decision_seq.models.ops.ssd import DEFAULT_CHUNK_SIZE


def set_scan(net: Mamba2Backbone, impl: str, chunk_size: int) -> None:
    for block in net.blocks:
        block.mixer.scan_impl = impl
        block.mixer.chunk_size = chunk_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=60, help="tokens (3 per timestep: 60 = K 20)")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--headdim", type=int, default=32)
    p.add_argument("--chunk-sizes", type=int, nargs="*", default=[], help="extra chunk sizes to time")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per case (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; batch {args.batch}, seq "
        f"{args.seq_len}, d_model {args.d_model}, {args.n_layer} layers, d_state {args.d_state}, headdim "
        f"{args.headdim}; median of {args.repeats}"
    )

    torch.manual_seed(0)
    net = Mamba2Backbone(
        d_model=args.d_model, n_layer=args.n_layer, d_state=args.d_state, headdim=args.headdim, use_kernels=False
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.seq_len, args.d_model, generator=g)  # (B, T, D)
    target = torch.randn(args.batch, args.seq_len, args.d_model, generator=g)
    lengths = torch.randint(1, args.seq_len + 1, (args.batch,), generator=g)
    mask = torch.arange(args.seq_len) >= args.seq_len - lengths[:, None]  # (B, T) left padding

    with torch.no_grad():  # both scans compute the same function
        net.eval()
        set_scan(net, "reference", DEFAULT_CHUNK_SIZE)
        y_ref = net(x, mask)
        set_scan(net, "chunked", DEFAULT_CHUNK_SIZE)
        y = net(x, mask)
        net.train()
    print(f"max |chunked - reference| (eval forward): {(y - y_ref).abs().max().item():.2e}")

    cases = {
        "reference": ("reference", DEFAULT_CHUNK_SIZE),
        f"chunked Q={DEFAULT_CHUNK_SIZE}": ("chunked", DEFAULT_CHUNK_SIZE),
    }
    cases |= {f"chunked Q={q}": ("chunked", q) for q in args.chunk_sizes if q != DEFAULT_CHUNK_SIZE}

    def step(impl: str, q: int) -> float:
        set_scan(net, impl, q)
        t0 = time.perf_counter()
        loss = (net(x, mask) - target)[mask].square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return (time.perf_counter() - t0) * 1e3

    for case in cases.values():  # warm-up
        step(*case)
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            times[name].append(step(*case))
    ms = {name: statistics.median(t) for name, t in times.items()}

    print(f"\n{'scan':<20}{'ms/step':>10}")
    for name, value in ms.items():
        print(f"{name:<20}{value:>10.1f}")
    default = f"chunked Q={DEFAULT_CHUNK_SIZE}"
    print(f"speedup reference / {default}: {ms['reference'] / ms[default]:.2f}x")


if __name__ == "__main__":
    main()
