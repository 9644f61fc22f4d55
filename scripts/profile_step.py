"""Where a DMamba training step spends its time on the CPU, beside a DT step of the same shape.

For each config: a torch.profiler per-op table (self CPU time, top ops) of a few DMamba and DT training
steps, then DMamba and DT steps timed in interleaved rounds; the median of the per-round ratios
DMamba ms/step / DT ms/step is the figure of merit (issue 18 target: <= 1.5). A step is what the
trainer does: sample a batch, loss, backward, clip 0.25, AdamW.

Configs: paper = batch 64, K=20 (60 tokens), embed 128, 3 layers (DT: 1 head, relu), dropout 0.1
(conf/model/dt.yaml, conf/model/dmamba.yaml); demo = the same with embed 64 and 1 layer
(conf/experiment/demo.yaml). Data: a synthetic Hopper-shaped dataset (S=11, A=3, 1000-step episodes).

    python scripts/profile_step.py                          # both configs, tables and ratios, 1 thread
    python scripts/profile_step.py --config paper --no-profile --rounds 15
    python scripts/profile_step.py --eval                   # also: evaluation (window / recurrent) timings
    python scripts/profile_step.py --no-profile --baseline HEAD   # before (HEAD's Mamba code and C kernels) / after
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_common import A, S, synthetic_episodes
from torch import nn

from decision_seq.data.sampler import SequenceSampler
from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import param_groups

CONFIGS = {
    "paper": {"batch": 64, "context_len": 20, "embed_dim": 128, "n_layer": 3},
    "demo": {"batch": 64, "context_len": 20, "embed_dim": 64, "n_layer": 1},
}


def make_model(backbone: str, cfg: dict) -> TrajectoryModel:
    kw = {"n_layer": cfg["n_layer"]}
    if backbone == "transformer":
        kw |= {"n_head": 1, "activation": "relu"}
    else:
        kw |= {"use_kernels": False}
    torch.manual_seed(0)
    return TrajectoryModel(
        state_dim=S,
        action_dim=A,
        embed_dim=cfg["embed_dim"],
        max_ep_len=1000,
        dropout=0.1,
        backbone=backbone,
        backbone_kwargs=kw,
    )


def make_step(model: TrajectoryModel, sampler: SequenceSampler):
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=1e-4)

    def step():
        loss = model.loss(sampler.sample())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()

    return step


def timed(fn, n: int) -> float:
    """ms per call over n calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def op_table(fn, n: int, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=44)


def interleaved(cands: dict, rounds: int, steps: int, warmup: int = 3) -> dict[str, list[float]]:
    """ms per call of each candidate in each round, candidates alternating within a round."""
    for fn in cands.values():
        timed(fn, warmup)
    times = {k: [] for k in cands}
    for _ in range(rounds):
        for name, fn in cands.items():
            times[name].append(timed(fn, steps))
    return times


def report_ratio(times: dict[str, list[float]], num: str, den: str) -> str:
    ratios = [a / b for a, b in zip(times[num], times[den], strict=True)]
    q = sorted(ratios)
    return (
        f"{num} {statistics.median(times[num]):.1f} ms, {den} {statistics.median(times[den]):.1f} ms; "
        f"ratio {num}/{den}: median {statistics.median(ratios):.2f} (min {q[0]:.2f}, max {q[-1]:.2f})"
    )


def baseline_backbone(rev: str, model: TrajectoryModel):
    """The Mamba backbone of `model` rebuilt from git revision `rev` (its backbones/mamba.py, ops/selective_scan.py,
    ops/causal_conv.py, and ops/scan_cpu.py with the C kernels of that revision's scan_cpu.c, built on the spot),
    with the same weights: the "before" of a before/after in one run."""
    import subprocess
    import sys
    import tempfile
    import types
    from pathlib import Path

    def show(path: str) -> str | None:
        done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else None

    renames = {f"decision_seq.models.ops.{m}": f"_baseline_{m}" for m in ("scan_cpu", "selective_scan", "causal_conv")}

    def module(name: str, path: str, patch=lambda src: src):
        src = show(path)
        if src is None:
            raise SystemExit(f"--baseline {rev}: {path} does not exist at that revision")
        for new, old in renames.items():
            src = src.replace(new, old)
        mod = types.ModuleType(name)
        sys.modules[name] = mod
        exec(compile(patch(src), f"{rev}:{path}", "exec"), mod.__dict__)
        return mod

    ops = "decision_seq/models/ops"
    c_source = show(f"{ops}/scan_cpu.c")
    if c_source is not None:  # revisions before the fused kernels have neither file
        c_path = Path(tempfile.mkdtemp(prefix="baseline_scan_")) / "scan_cpu.c"
        c_path.write_text(c_source)
        module(
            "_baseline_scan_cpu",
            f"{ops}/scan_cpu.py",
            lambda src: src.replace(
                'SOURCE = Path(__file__).with_name("scan_cpu.c")', f"SOURCE = Path({str(c_path)!r})"
            ),
        )
    if show(f"{ops}/causal_conv.py") is not None:
        module("_baseline_causal_conv", f"{ops}/causal_conv.py")
    module("_baseline_selective_scan", f"{ops}/selective_scan.py")
    old = module(
        "_baseline_mamba",
        "decision_seq/models/backbones/mamba.py",
        lambda src: src.replace('@register_backbone("mamba")', ""),  # already registered by the current module
    )
    torch.manual_seed(0)
    n_layer = len(model.backbone.blocks)
    backbone = old.MambaBackbone(model.embed_dim, n_layer=n_layer, dropout=0.1, use_kernels=False)
    backbone.load_state_dict(model.backbone.state_dict())
    return backbone


def train_study(name: str, cfg: dict, episodes, args) -> None:
    models = {"dmamba": make_model("mamba", cfg), "dt": make_model("transformer", cfg)}
    if args.baseline:
        before = make_model("mamba", cfg)
        before.backbone = baseline_backbone(args.baseline, before)
        models[f"dmamba@{args.baseline}"] = before
    steps = {
        k: make_step(m, SequenceSampler(episodes, cfg["context_len"], cfg["batch"], seed=i))
        for i, (k, m) in enumerate(models.items())
    }
    print(f"\n## {name}: {cfg}")
    if args.profile:
        for k, fn in steps.items():
            print(f"\n### {k} training step, {args.profile_steps} steps, sorted by self CPU time\n")
            print(op_table(fn, args.profile_steps, args.rows))
    times = interleaved(steps, args.rounds, args.steps)
    print(f"[{name}] training step: {report_ratio(times, 'dmamba', 'dt')}")
    if args.baseline:
        print(f"[{name}] training step: {report_ratio(times, f'dmamba@{args.baseline}', 'dt')}")


def eval_study(name: str, cfg: dict, args) -> None:
    """Acting cost per environment step with the evaluator's policy (evaluation/policy.py) over
    args.eval_batch parallel environments and args.eval_steps steps of an episode: "window" runs the
    backbone over the last K steps (O(K) per action), "recurrent" feeds three tokens per step to the
    backbone's O(1) `step` (DMamba only). Random models and inputs: the cost does not depend on them."""
    from decision_seq.evaluation.policy import SequencePolicy

    b, K = args.eval_batch, cfg["context_len"]
    g = torch.Generator().manual_seed(0)
    states, rtg = torch.randn(args.eval_steps, b, S, generator=g), torch.randn(args.eval_steps, b, 1, generator=g)
    models = {"dt": make_model("transformer", cfg).eval(), "dmamba": make_model("mamba", cfg).eval()}
    modes = [("dt", "window"), ("dmamba", "window"), ("dmamba", "recurrent")]
    if args.baseline:
        key = f"dmamba@{args.baseline}"
        models[key] = make_model("mamba", cfg)
        models[key].backbone = baseline_backbone(args.baseline, models[key])
        models[key].eval()
        modes += [(key, "window"), (key, "recurrent")]

    def episode(model, mode):
        def run():
            policy = SequencePolicy(model, batch_size=b, context_len=K, max_steps=args.eval_steps, mode=mode)
            for t in range(args.eval_steps):
                policy.act(states[t], rtg[t])

        return run

    cands = {f"{k} {mode}": episode(models[k], mode) for k, mode in modes}
    if args.profile:
        for k, fn in cands.items():
            print(f"\n### {k} evaluation, {args.eval_steps} env steps x {b} envs, sorted by self CPU time\n")
            print(op_table(fn, 1, args.rows))
    times = interleaved(cands, args.rounds, 1, warmup=1)
    print(f"\n[{name}] evaluation, {b} envs, ms per env step over {args.eval_steps} steps (median of {args.rounds}):")
    base = statistics.median(times["dt window"])
    for k, v in times.items():
        med = statistics.median(v) / args.eval_steps
        print(f"  {k:20s} {med:8.3f} ms   {statistics.median(v) / base:5.2f}x DT window")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="paper,demo", help="comma-separated: paper, demo")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: comparable on a shared machine)")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds; medians are reported")
    p.add_argument("--steps", type=int, default=5, help="steps per candidate per round")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the per-op tables")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=10, help="ops per table")
    p.add_argument("--no-train", dest="train", action="store_false", help="skip the training-step study")
    p.add_argument("--eval", action="store_true", help="also time evaluation (window and recurrent)")
    p.add_argument(
        "--baseline", default=None, help="also time the DMamba step of this git revision (e.g. HEAD): before/after"
    )
    p.add_argument("--eval-batch", type=int, default=10, help="parallel environments in the evaluation study")
    p.add_argument("--eval-steps", type=int, default=100, help="env steps per evaluation episode")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    episodes = synthetic_episodes(50, 1000)
    for name in args.config.split(","):
        cfg = CONFIGS[name]
        if args.train:
            train_study(name, cfg, episodes, args)
        if args.eval:
            eval_study(name, cfg, args)


if __name__ == "__main__":
    main()
