"""Training-step cost of every backbone at its paper config, side by side in one run, DT = 1.00x.

One row per model YAML in conf/model/ (dt, dmamba, dmamba2, dc, dlstm, dgru, rvs, bc: each backbone at the
sizes its paper uses), and for the Mamba mixers one row per path (--path): "kernel" (mamba_ssm's CUDA /
Triton kernels; CUDA only, where they import) and "torch" (our pure-PyTorch code). A reference row,
"bare torch transformer" (nn.TransformerEncoder with DT's token layout and sizes, trained on one fixed
batch with no sampling at all), shows what our DT's machinery costs over plain PyTorch.

A step is what the trainer does: sample a batch (B=64 windows of the YAML's K steps; every model gets the
same batch size, so rows compare equal work), forward and loss under the chosen autocast, backward, clip at
0.25, AdamW. Data: a synthetic Hopper-shaped dataset (S=11, A=3, 1000-step episodes). Rows are timed in
interleaved rounds (each round times every row once) and the median is reported, so a load change on a
shared machine hits every row alike. "x DT" is the row's ms/step over DT's: 2.00x = twice as slow.
The exit status is 1 when a row that should run fails (its error stands in the table, the other rows are
still measured and written); skipped rows (the kernel path without CUDA or without mamba_ssm) do not count.

    python scripts/bench_train.py                                  # every backbone, CPU (or CUDA when present)
    python scripts/bench_train.py --backbones transformer,mamba --path both --device cuda --dtype bf16
    python scripts/bench_train.py --device cuda --compile --json out.json --markdown out.md
    python scripts/bench_train.py --quick                          # a few steps: checks it runs (CI)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from bench_common import (
    DTYPES,
    PATHS,
    REFERENCE_MODEL,
    A,
    Row,
    S,
    environment,
    exit_status,
    expand_paths,
    markdown_table,
    paper_configs,
    select_configs,
    synthetic_episodes,
    write_outputs,
)
from torch import nn

from decision_seq.data.sampler import SequenceSampler
from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import param_groups, resolve_device

GRAD_CLIP = 0.25  # the DT paper's
BARE = "bare torch transformer"


class BareCausalTransformer(nn.Module):
    """The reference: nn.TransformerEncoder (pre-LN, causal) with DT's token layout and sizes."""

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
        x = torch.stack((self.embed_r(r), self.embed_s(s), self.embed_a(a)), dim=2).reshape(B, 3 * K, -1)  # (B, 3K, D)
        causal = nn.Transformer.generate_square_subsequent_mask(3 * K, device=s.device)
        h = self.encoder(x, mask=causal, is_causal=True)
        return self.head(h.reshape(B, K, 3, -1)[:, :, 1])  # (B, K, A) from the state tokens


def make_step(loss_fn, model: nn.Module, next_batch, autocast: dict, device: torch.device):
    """One optimization step as the trainer runs it (without its schedule and finiteness checks)."""
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=1e-4, fused=device.type == "cuda")

    def step():
        batch = next_batch()
        with torch.autocast(device.type, **autocast):
            loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()

    return step


def compiled(loss_fn, args):
    """The loss as the trainer runs it: torch.compile'd under --compile (the trainer compiles model.loss)."""
    return torch.compile(loss_fn, backend=args.compile_backend) if args.compile else loss_fn


def build_candidates(rows: list[Row], episodes, args, device) -> dict[str, dict]:
    """label -> {step, params, row}; a row that cannot be built is kept with its error."""
    autocast = {"dtype": torch.bfloat16, "enabled": args.dtype == "bf16"}
    cands: dict[str, dict] = {}
    for i, row in enumerate(rows):
        if row.skip:
            cands[row.label] = {"row": row, "error": f"skipped: {row.skip}"}
            continue
        try:
            torch.manual_seed(i)
            model = TrajectoryModel(state_dim=S, action_dim=A, max_ep_len=1000, **row.net_kwargs()).to(device)
            sampler = SequenceSampler(episodes, row.config.context_len, args.batch_size, device=device, seed=i)
            loss_fn = compiled(model.loss, args)
            cands[row.label] = {
                "row": row,
                "params": sum(p.numel() for p in model.parameters()),
                "step": make_step(loss_fn, model, sampler.sample, autocast, device),
                "K": row.config.context_len,
            }
        except Exception as err:  # one broken row must not hide the others' numbers
            cands[row.label] = {"row": row, "error": f"{type(err).__name__}: {err}"}
    dt = next((r.config for r in rows if r.config.name == REFERENCE_MODEL), None)
    if args.reference and dt is not None:  # DT's sizes, so only beside the DT row
        bk = dt.net.get("backbone_kwargs", {})
        bare = BareCausalTransformer(S, A, dt.net["embed_dim"], bk["n_layer"], bk.get("n_head", 1), dt.net["dropout"])
        bare = bare.to(device)
        K = dt.context_len
        fixed = SequenceSampler(episodes, K, args.batch_size, device=device, seed=len(rows)).sample()

        def bare_loss(batch, model=bare):
            pred = model(batch["states"], batch["actions"], batch["returns_to_go"])
            return ((pred.float() - batch["actions"]) ** 2).mean()

        loss_fn = compiled(bare_loss, args)
        cands[BARE] = {
            "row": None,
            "params": sum(p.numel() for p in bare.parameters()),
            "step": make_step(loss_fn, bare, lambda: fixed, autocast, device),
            "K": K,
        }
    return cands


def timed(step, n: int, device: torch.device) -> float:
    """Seconds per step over n steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / n


def run(cands: dict[str, dict], args, device: torch.device) -> None:
    """Warm up each candidate (compiles there), then interleaved timed rounds; fills ms/step into cands."""
    live = {k: c for k, c in cands.items() if "error" not in c}
    for label, c in live.items():
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            timed(c["step"], args.warmup, device)
            c["warmup_s"] = time.perf_counter() - t0
            if device.type == "cuda":
                c["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        except Exception as err:
            c["error"] = f"{type(err).__name__}: {err}"
            print(f"[error] {label}: {c['error']}", flush=True)
    live = {k: c for k, c in live.items() if "error" not in c}
    times: dict[str, list[float]] = {k: [] for k in live}
    for r in range(args.rounds):
        for label, c in live.items():
            if "error" in c:
                continue
            try:
                times[label].append(timed(c["step"], args.steps, device))
            except Exception as err:
                c["error"] = f"{type(err).__name__}: {err}"
                print(f"[error] {label}: {c['error']}", flush=True)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    for label, secs in times.items():
        if "error" not in live[label]:
            live[label]["seconds_per_step"] = statistics.median(secs)


def report(cands: dict[str, dict], args, env: dict) -> tuple[dict, str]:
    ref = cands.get(REFERENCE_MODEL, {}).get("seconds_per_step")
    results = []
    for label, c in cands.items():
        row: Row | None = c["row"]
        out = {
            "row": label,
            "model": row.config.name if row else None,
            "backbone": row.config.backbone if row else "transformer (nn.TransformerEncoder)",
            "path": row.path if row else "-",
            "K": c.get("K", row.config.context_len if row else None),
            "params": c.get("params"),
        }
        if "seconds_per_step" in c:
            t = c["seconds_per_step"]
            out |= {"ms_per_step": 1e3 * t, "steps_per_s": 1 / t, "x_dt": t / ref if ref else None}
            out |= {k: c[k] for k in ("warmup_s", "peak_mib") if k in c}
        else:
            out["error"] = c.get("error", "not timed")
        results.append(out)
    settings = {
        k: getattr(args, k)
        for k in (
            "batch_size",
            "dtype",
            "compile",
            "compile_backend",
            "path",
            "steps",
            "rounds",
            "warmup",
            "quick",
            "preset",
            "backbones",
        )
    }
    result = {"benchmark": "train", "settings": settings, "environment": env, "results": results}

    title = (
        f"Training step, {env['device_name']} ({env['device']}), torch {env['torch']}, {args.dtype}, "
        f"{f'experiment={args.preset} sizes' if args.preset else 'paper configs'}, "
        f"{f'torch.compile ({args.compile_backend})' if args.compile else 'eager'}, batch {args.batch_size}, "
        f"median of {args.rounds} interleaved rounds x {args.steps} steps"
    )
    header = ["row", "backbone", "path", "K", "params", "ms/step", "steps/s", "x DT"]
    table = []
    for r in results:
        nums = (
            [f"{r['ms_per_step']:.2f}", f"{r['steps_per_s']:.1f}", f"{r['x_dt']:.2f}x" if r["x_dt"] else "-"]
            if "ms_per_step" in r
            else [r["error"].replace("|", "/")[:160], "", ""]
        )
        params = f"{r['params']:,}" if r["params"] else "-"
        table.append([r["row"], r["backbone"], r["path"], str(r["K"]), params, *nums])
    return result, f"{title}\n\n{markdown_table(header, table)}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default=None, help="comma list of backbone or model names (default: every one)")
    p.add_argument("--exclude", default=None, help="comma list of backbone or model names to leave out")
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="apply conf/experiment/NAME.yaml's model sizes to every YAML (e.g. demo: embed 64, 1 layer)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="bf16 = bf16 autocast, as trainer.bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss, as trainer.compile")
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (default inductor, the trainer's; 'eager' only traces: a fast smoke test)",
    )
    p.add_argument(
        "--path",
        default="both",
        choices=PATHS,
        help="Mamba / Mamba-2 mixer path: kernel (mamba_ssm kernels, CUDA only), torch, or both (default)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="windows per step (default: the DT paper's 64; 8 with --quick)"
    )
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per row first (compilation happens here)")
    p.add_argument(
        "--no-reference", dest="reference", action="store_false", help="drop the bare transformer row (shown with dt)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--quick", action="store_true", help="2 rounds x 1 step, 1 warmup, batch 8, small dataset: a smoke run (CI)"
    )
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--markdown", default=None, metavar="OUT", help="write the table as Markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.warmup = 1, 2, 1
    if args.batch_size is None:
        args.batch_size = 8 if args.quick else 64
    for name in ("batch_size", "steps", "rounds", "warmup"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except RuntimeError as err:
        raise SystemExit(f"--device: {err}") from None
    rows = expand_paths(select_configs(paper_configs(args.preset), args.backbones, args.exclude), args.path, device)
    episodes = synthetic_episodes(10, 200, seed=0) if args.quick else synthetic_episodes(100, 1000, seed=0)
    cands = build_candidates(rows, episodes, args, device)
    run(cands, args, device)
    result, markdown = report(cands, args, environment(device))
    print(markdown)
    write_outputs(result, markdown, args.json, args.markdown)
    sys.exit(exit_status(result["results"]))  # after the outputs: a failed row still leaves the others' numbers


if __name__ == "__main__":
    main()
