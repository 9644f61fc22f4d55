"""Training-step throughput, side by side in one run: our DT vs a bare PyTorch causal transformer of
the same shape, and our DMamba vs our DT.

Paper config (DT, MuJoCo): batch 64, K=20 (60 tokens), embed 128, 3 layers, 1 head, dropout 0.1,
AdamW, grad clip 0.25. Data: a synthetic Hopper-shaped dataset (S=11, A=3, 1000-step episodes).
Our steps include sampling from the dataset; the bare baseline trains on one fixed random batch
(no sampling at all), so the comparison is conservative for us. Candidates are timed in interleaved
rounds and the median is reported, which keeps a noisy shared machine from favouring one of them.

    python scripts/bench_train.py                 # paper config on the CPU (or CUDA when present)
    python scripts/bench_train.py --device cuda --rounds 5 --steps 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from decision_seq.data.episodes import episodes_from_arrays
from decision_seq.data.sampler import SequenceSampler
from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import param_groups, resolve_device


class BareCausalTransformer(nn.Module):
    """The baseline: nn.TransformerEncoder (pre-LN, causal) with the same token layout and sizes."""

    def __init__(self, state_dim, action_dim, embed_dim, n_layer, n_head, dropout):
        super().__init__()
        self.embed_s = nn.Linear(state_dim, embed_dim)
        self.embed_a = nn.Linear(action_dim, embed_dim)
        self.embed_r = nn.Linear(1, embed_dim)
        layer = nn.TransformerEncoderLayer(
            embed_dim, n_head, 4 * embed_dim, dropout, activation="relu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(embed_dim, action_dim), nn.Tanh())

    def forward(self, s, a, r):
        B, K, _ = s.shape
        x = torch.stack((self.embed_r(r), self.embed_s(s), self.embed_a(a)), dim=2).reshape(B, 3 * K, -1)
        causal = nn.Transformer.generate_square_subsequent_mask(3 * K, device=s.device)
        h = self.encoder(x, mask=causal, is_causal=True)
        return self.head(h.reshape(B, K, 3, -1)[:, :, 1])


def synthetic_episodes(n_episodes: int, length: int, S: int, A: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return episodes_from_arrays(
        [rng.standard_normal((length + 1, S)).astype(np.float32) for _ in range(n_episodes)],
        [rng.uniform(-1, 1, (length, A)).astype(np.float32) for _ in range(n_episodes)],
        [rng.standard_normal(length).astype(np.float32) for _ in range(n_episodes)],
        action_low=-np.ones(A, np.float32),
        action_high=np.ones(A, np.float32),
        dataset_id="synthetic",
    )


def make_ours(backbone: str, args, S: int, A: int, device):
    kw = (
        {"n_layer": args.n_layer, "n_head": args.n_head, "activation": "relu"}
        if backbone == "transformer"
        else {"n_layer": args.n_layer}
    )
    return TrajectoryModel(
        state_dim=S,
        action_dim=A,
        embed_dim=args.embed_dim,
        max_ep_len=1000,
        dropout=args.dropout,
        backbone=backbone,
        backbone_kwargs=kw,
    ).to(device)


def step_fn_ours(model, sampler, clip, bf16, device):
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=1e-4, fused=device.type == "cuda")

    def step():
        batch = sampler.sample()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    return step


def step_fn_bare(model, batch, clip, bf16, device):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    s, a, r = batch["states"], batch["actions"], batch["returns_to_go"]

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = ((model(s, a, r).float() - a) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    return step


def timed(step, n: int, device) -> float:
    """Seconds per step over n steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--context-len", type=int, default=20)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--n-head", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for every candidate")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    S, A = 11, 3
    episodes = synthetic_episodes(100, 1000, S, A)
    samplers = {
        name: SequenceSampler(episodes, args.context_len, args.batch_size, device=device, seed=i)
        for i, name in enumerate(("dt", "dmamba"))
    }
    fixed = samplers["dt"].sample()
    bare = BareCausalTransformer(S, A, args.embed_dim, args.n_layer, args.n_head, args.dropout).to(device)
    dt = make_ours("transformer", args, S, A, device)
    dm = make_ours("mamba", args, S, A, device)
    cands = {
        "bare torch causal transformer": step_fn_bare(bare, fixed, 0.25, args.bf16, device),
        "ours: DT (transformer)": step_fn_ours(dt, samplers["dt"], 0.25, args.bf16, device),
        "ours: DMamba (mamba)": step_fn_ours(dm, samplers["dmamba"], 0.25, args.bf16, device),
    }
    sample_cost = timed(samplers["dt"].sample, 200, device)
    params = {"bare torch causal transformer": bare, "ours: DT (transformer)": dt, "ours: DMamba (mamba)": dm}
    for step in cands.values():
        timed(step, args.warmup, device)
    times = {k: [] for k in cands}
    for _ in range(args.rounds):
        for name, step in cands.items():
            times[name].append(timed(step, args.steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"K={args.context_len} embed={args.embed_dim} layers={args.n_layer} bf16={args.bf16} "
        f"rounds={args.rounds}x{args.steps} steps"
    )
    print(f"{'candidate':34s} {'params':>9s} {'ms/step':>9s} {'steps/s':>9s}")
    for name, t in med.items():
        n = sum(q.numel() for q in params[name].parameters())
        print(f"{name:34s} {n:9d} {1e3 * t:9.2f} {1 / t:9.1f}")
    base, ours_dt, ours_dm = med.values()
    print(f"ratio DT steps/s / bare transformer steps/s: {base / ours_dt:.2f}")
    print(f"ratio DMamba steps/s / DT steps/s:           {ours_dt / ours_dm:.2f}")
    print(f"sampling one batch: {1e3 * sample_cost:.3f} ms = {100 * sample_cost / ours_dt:.1f}% of a DT step")


if __name__ == "__main__":
    main()
