"""Peer parity: our Decision Transformer (and Decision Mamba) against d3rlpy's DecisionTransformer on the
same data, shape, schedule, evaluation seeds and targets, several seeds, means with 95% bootstrap CIs.

Ours runs through `decision-seq train` (this environment); d3rlpy runs in its own environment (it pins its
own gymnasium, so keep it apart), through scripts/peer/d3rlpy_dt.py. Make that environment once:

    python3 -m venv ~/d3rlpy-venv
    ~/d3rlpy-venv/bin/pip install torch==2.13.0                      # the CPU build here; any torch elsewhere
    ~/d3rlpy-venv/bin/pip install d3rlpy==2.8.1 'gymnasium[mujoco]==1.0.0'

Then, for example (the issue's budget; a dataset the factory builds, `decision-seq datasets build Hopper-v5`):

    python scripts/peer_d3rlpy.py --dataset hopper-medium --d3rlpy-python ~/d3rlpy-venv/bin/python \\
        --seeds 0,1,2,3,4 --steps 4000 --out reports/peer/hopper-medium-4k

Both sides: the dataset's episodes as decision-seq loads them (observations standardized with the dataset's
mean and std, returns-to-go divided by the dataset entry's rtg_scale), the same transformer shape and
optimizer (--shape), one CPU thread each (--threads), and evaluation on the dataset's evaluation env with
reset seeds seed x 10000 + i, the same targets and episodes. Scores are D4RL-normalized with the dataset's
reference returns. Finished runs are kept and skipped on a rerun (delete a run's folder to redo it); the
output folder is tied to the dataset build it started on (OUT/dataset.json), so a rerun after a rebuild
on another machine is refused rather than mixing two datasets' runs.
Writes OUT/peer.json and OUT/peer.md after every finished run (an interrupted check keeps a table of what
finished; missing seeds show as "-") and prints the table at the end. `--report` rewrites them from the
finished runs in OUT without training (for a check that is still going or was stopped).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

# The issue-21 shape: DT's tokens at a CPU-sized width. "paper" is the DT paper's MuJoCo configuration.
SHAPES = {
    "small": dict(
        context_len=20, embed_dim=64, n_layer=2, n_head=1, dropout=0.1, batch_size=64, lr=1e-3,
        warmup_steps=500, weight_decay=1e-4, grad_clip=0.25,
    ),
    "paper": dict(
        context_len=20, embed_dim=128, n_layer=3, n_head=1, dropout=0.1, batch_size=64, lr=1e-4,
        warmup_steps=10000, weight_decay=1e-4, grad_clip=0.25,
    ),
}  # fmt: skip
OURS = ("dt", "dmamba")  # our model YAMLs this check runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="hopper-medium", help="a Hydra dataset entry (conf/dataset/NAME.yaml)")
    p.add_argument("--d3rlpy-python", default=os.environ.get("D3RLPY_PYTHON"), help="python of d3rlpy's env")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds (default: 0..4)")
    p.add_argument("--steps", type=int, default=4000, help="training steps per run (default: 4000)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="small", help="model and optimizer (default: small)")
    p.add_argument("--targets", default=None, help="comma-separated return targets (default: the DT paper's)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per target (default: 10)")
    p.add_argument("--ours", default="dt,dmamba", help=f"our models to run, of {', '.join(OURS)} (default: both)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (default: 1)")
    p.add_argument(
        "--jobs", type=int, default=1,
        help="runs at once (default: 1); with more, every run shares the machine alike, so steps/s still compare",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="output folder (runs, peer.json, peer.md)")
    p.add_argument(
        "--report", action="store_true",
        help="train nothing: summarize the finished runs in OUT (with the steps, targets and episodes they ran)",
    )  # fmt: skip
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
        args.targets = None if args.targets is None else [float(t) for t in args.targets.split(",")]
    except ValueError:
        p.error("--seeds and --targets take comma-separated numbers, e.g. --seeds 0,1,2 --targets 3600,1800")
    args.ours = [m for m in args.ours.split(",") if m]
    if unknown := [m for m in args.ours if m not in OURS]:
        p.error(f"--ours: unknown model {unknown[0]!r}; valid: {', '.join(OURS)}")
    for name in ("steps", "episodes", "threads", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if not args.report and (args.d3rlpy_python is None or not Path(args.d3rlpy_python).exists()):
        p.error("--d3rlpy-python (or $D3RLPY_PYTHON): the python of an environment with d3rlpy; see --help")
    return args


def dataset_entry(name: str) -> dict:
    """The dataset entry with the DT paper's targets for its task (from experiment=dt-paper)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=dt-paper", f"dataset={name}"])
    return {
        "id": cfg.dataset.id,
        "rtg_scale": float(cfg.dataset.rtg_scale),
        "targets": [float(t) for t in OmegaConf.to_container(cfg.eval.targets, resolve=True)],
    }


def export(episodes, path: Path) -> None:
    """The episodes as flat per-step arrays in d3rlpy's MDPDataset layout (an episode ends at a terminal or a
    timeout flag on its last step)."""
    ends = episodes.episode_starts + episodes.episode_lengths - 1
    terminals = np.zeros(episodes.num_steps, np.float32)
    terminals[ends] = episodes.terminations[ends]
    timeouts = np.zeros(episodes.num_steps, np.float32)
    timeouts[ends] = 1.0 - terminals[ends]
    np.savez(
        path,
        observations=episodes.observations,
        actions=episodes.actions,
        rewards=episodes.rewards,
        terminals=terminals,
        timeouts=timeouts,
    )


def our_overrides(model: str, dataset: str, shape: dict, args, targets: list[float], seed: int, run: Path):
    targets_arg = "[" + ",".join(f"{t:g}" for t in targets) + "]"
    backbone = [f"model.net.backbone_kwargs.n_layer={shape['n_layer']}"]
    if model == "dt":
        backbone.append(f"model.net.backbone_kwargs.n_head={shape['n_head']}")
    return [
        "train", f"model={model}", f"dataset={dataset}", f"seed={seed}",
        f"model.context_len={shape['context_len']}", f"model.net.embed_dim={shape['embed_dim']}",
        f"model.net.dropout={shape['dropout']}", *backbone,
        f"trainer.steps={args.steps}", f"trainer.batch_size={shape['batch_size']}", f"trainer.lr={shape['lr']}",
        f"trainer.warmup_steps={shape['warmup_steps']}", f"trainer.weight_decay={shape['weight_decay']}",
        f"trainer.grad_clip={shape['grad_clip']}", f"trainer.num_threads={args.threads}", "trainer.device=cpu",
        "trainer.checkpoint_every=0", "trainer.progress=false",
        f"eval.targets={targets_arg}", f"eval.episodes={args.episodes}", "eval.every=0",
        "logger=none", f"hydra.run.dir={run}",
    ]  # fmt: skip


def read_ours(run: Path) -> dict | None:
    """A finished run of ours (its results.json says completed): final returns per target and steps/s."""
    results = run / "results.json"
    if not results.exists():
        return None
    res = json.loads(results.read_text())
    if res.get("status") != "completed":
        return None
    final = res["evaluations"][-1]["results"]
    return {"returns": {r["target"]: r["returns"] for r in final}, "steps_per_sec": res["throughput"]["steps_per_sec"]}


def read_d3rlpy(path: Path) -> dict | None:
    """A finished d3rlpy run (the worker's file is only moved into place once it has finished)."""
    if not path.exists():
        return None
    res = json.loads(path.read_text())
    return {"returns": {r["target"]: r["returns"] for r in res["results"]}, "steps_per_sec": res["steps_per_sec"]}


def run_ours(model, dataset, shape, args, targets, seed) -> dict:
    run = args.out / f"ours-{model}" / f"seed{seed}"
    if (done := read_ours(run)) is not None:
        return done
    cmd = [sys.executable, "-m", "decision_seq", *our_overrides(model, dataset, shape, args, targets, seed, run)]
    print(f"[ours {model} seed {seed}] {' '.join(cmd[3:])}", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if (done := read_ours(run)) is None:
        raise RuntimeError(f"{run}: training exited without a completed results.json; see {run / 'train.log'}")
    return done


def run_d3rlpy(args, data: Path, spec: Path, seed: int) -> dict:
    out = args.out / "d3rlpy-dt" / f"seed{seed}.json"
    if (done := read_d3rlpy(out)) is not None:
        return done
    out.parent.mkdir(parents=True, exist_ok=True)
    worker = Path(__file__).resolve().parent / "peer" / "d3rlpy_dt.py"
    print(f"[d3rlpy dt seed {seed}]", flush=True)
    tmp = out.with_suffix(".tmp")
    cmd = [args.d3rlpy_python, str(worker), "--data", str(data), "--spec", str(spec), "--seed", str(seed)]
    subprocess.run([*cmd, "--out", str(tmp)], check=True, stdout=subprocess.DEVNULL)
    tmp.replace(out)  # a killed run leaves no result that a rerun would take as finished
    return read_d3rlpy(out)


def summarize(runs: dict[str, dict[int, dict]], episodes, targets: list[float]) -> dict:
    """Per method: per seed the normalized score per target and over targets; mean, sd and 95% CI over seeds."""
    from decision_seq.leaderboard.stats import summarize_seeds

    out = {}
    for method, by_seed in runs.items():
        per_seed = {}
        for seed, r in by_seed.items():
            scores = [float(episodes.normalized_score(np.mean(r["returns"][t]))) for t in targets]
            per_seed[seed] = {"scores": scores, "mean": float(np.mean(scores)), "steps_per_sec": r["steps_per_sec"]}
        columns = {f"{t:g}": [s["scores"][i] for s in per_seed.values()] for i, t in enumerate(targets)}
        columns["mean over targets"] = [s["mean"] for s in per_seed.values()]
        out[method] = {
            "per_seed": per_seed,
            "summary": {k: summarize_seeds(v).__dict__ for k, v in columns.items()},
            "steps_per_sec_median": float(np.median([s["steps_per_sec"] for s in per_seed.values()])),
        }
    return out


def _cell(c: dict) -> str:
    """mean ± sd [CI]; one seed has neither a spread nor a CI, so its score alone."""
    if c["n"] < 2:
        return f"{c['mean']:.1f} (1 seed)"
    return f"{c['mean']:.1f} ± {c['std']:.1f} [{c['ci_low']:.1f}, {c['ci_high']:.1f}]"


def markdown(report: dict, targets: list[float]) -> str:
    methods = list(report["methods"])
    tgt = " / ".join(f"{t:g}" for t in targets)
    lines = [f"Normalized score (targets {tgt}), per seed:", "", "| seed | " + " | ".join(methods) + " |"]
    lines.append("|---" * (len(methods) + 1) + "|")
    for seed in report["seeds"]:
        cells = []
        for m in methods:
            run = report["methods"][m]["per_seed"].get(seed)
            cells.append("-" if run is None else " / ".join(f"{s:.1f}" for s in run["scores"]))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines += ["", "| method | " + " | ".join(f"target {t:g}" for t in targets) + " | mean over targets | steps/s |"]
    lines.append("|---" * (len(targets) + 3) + "|")
    for m in methods:
        s = report["methods"][m]["summary"]
        cells = [_cell(c) for c in s.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {report['methods'][m]['steps_per_sec_median']:.1f} |")
    lines.append("")
    lines.append("mean ± sd over seeds [95% percentile bootstrap CI of the mean]; steps/s: median over seeds")
    if missing := [f"{m} {len(r['per_seed'])} of {len(report['seeds'])}" for m, r in report["methods"].items()
                   if len(r["per_seed"]) < len(report["seeds"])]:  # fmt: skip
        lines.append(f"Partial: seeds finished so far: {', '.join(missing)}")
    return "\n".join(lines) + "\n"


class _NotStarted(Exception):
    """A run skipped because an earlier one failed."""


def run_all(tasks: dict, jobs: int, on_done=None) -> dict:
    """{key: fn()} for every task, `jobs` at a time, in the tasks' order. Stops at the first failure, as the
    check did one run at a time: runs not started yet are skipped, runs already going finish (their results
    stay on disk for the rerun), then that failure is raised. on_done(key, result) is called after each
    finished task, one call at a time."""
    failed, lock = threading.Event(), threading.Lock()

    def guarded(key, fn):
        if failed.is_set():
            raise _NotStarted
        try:
            result = fn()
        except BaseException:
            failed.set()
            raise
        if on_done is not None:
            with lock:
                on_done(key, result)
        return result

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:  # each task waits on its own subprocess
        futures = {key: pool.submit(guarded, key, fn) for key, fn in tasks.items()}
    if errors := [e for f in futures.values() if (e := f.exception()) is not None and not isinstance(e, _NotStarted)]:
        raise errors[0]
    return {key: future.result() for key, future in futures.items()}


def claim_out_dir(out: Path, dataset_id: str, build: str | None) -> str | None:
    """Finished runs in OUT are reused, so OUT is tied to one build of the dataset (a rebuild on another CPU
    is other data): the first check records it in OUT/dataset.json; a later one on another build is refused.
    Returns the problem, or None."""
    record = out / "dataset.json"
    mine = {"id": dataset_id, "build": build}
    if record.exists():
        theirs = json.loads(record.read_text())
        if theirs != mine:
            return (
                f"{out} holds runs on {theirs.get('id')} ({theirs.get('build')}), not on {dataset_id} ({build}); "
                "give another --out (or delete that folder to redo its runs)"
            )
    else:
        record.write_text(json.dumps(mine, indent=1))
    return None


def make_report(dataset_id, build, spec, shape_name, seeds, runs, episodes) -> dict:
    """The check's report from the runs finished so far (methods with none are left out)."""
    runs = {m: {seed: by_seed[seed] for seed in sorted(by_seed)} for m, by_seed in runs.items() if by_seed}
    return {
        "dataset": dataset_id, "shape": shape_name, "steps": spec["steps"], "targets": spec["targets"],
        "dataset_build": build, "episodes": spec["episodes"], "seeds": seeds,
        "methods": summarize(runs, episodes, spec["targets"]),
    }  # fmt: skip


def write_report(out: Path, report: dict) -> str:
    """OUT/peer.json and OUT/peer.md, each replaced whole (a reader never sees half a file). Returns the table."""
    md = markdown(report, report["targets"])
    for name, text in (("peer.json", json.dumps(report, indent=1)), ("peer.md", md)):
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    return md


def finished_runs(out: Path) -> dict[str, dict[int, dict]]:
    """Every finished run in OUT, as {method: {seed: result}}: ours first (dt, dmamba), then d3rlpy's."""
    runs: dict[str, dict[int, dict]] = {}
    for model in OURS:
        for run in sorted(out.glob(f"ours-{model}/seed*")):
            if run.name[4:].isdigit() and (r := read_ours(run)) is not None:
                runs.setdefault(f"ours {model}", {})[int(run.name[4:])] = r
    for path in sorted(out.glob("d3rlpy-dt/seed*.json")):
        if path.stem[4:].isdigit() and (r := read_d3rlpy(path)) is not None:
            runs.setdefault("d3rlpy dt", {})[int(path.stem[4:])] = r
    return runs


def report_only(out: Path, entry: dict, episodes, build: str) -> int:
    """--report: the table of the finished runs in OUT, with the steps, targets and episodes they ran."""
    spec_path, record = out / "d3rlpy_spec.json", out / "dataset.json"
    if not (spec_path.exists() and record.exists()):
        print(f"peer_d3rlpy.py: error: {out} holds no peer check (no d3rlpy_spec.json / dataset.json)", file=sys.stderr)
        return 2
    if problem := claim_out_dir(out, entry["id"], build):
        print(f"peer_d3rlpy.py: error: {problem}", file=sys.stderr)
        return 2
    spec = json.loads(spec_path.read_text())
    if not (runs := finished_runs(out)):
        print(f"peer_d3rlpy.py: error: {out} holds no finished run yet", file=sys.stderr)
        return 2
    shape_name = next((name for name, shape in SHAPES.items() if shape == spec["shape"]), "custom")
    seeds = sorted({seed for by_seed in runs.values() for seed in by_seed})
    print(write_report(out, make_report(entry["id"], build, spec, shape_name, seeds, runs, episodes)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from decision_seq.data.episodes import load_episodes
    from decision_seq.experiment.results import dataset_build

    entry = dataset_entry(args.dataset)
    episodes = load_episodes(entry["id"])
    build = dataset_build(episodes.summary())
    if args.report:
        return report_only(args.out, entry, episodes, build)
    targets = args.targets or entry["targets"]
    shape = SHAPES[args.shape]
    args.out.mkdir(parents=True, exist_ok=True)
    if problem := claim_out_dir(args.out, entry["id"], build):
        print(f"peer_d3rlpy.py: error: {problem}", file=sys.stderr)
        return 2
    data, spec_path = args.out / "data.npz", args.out / "d3rlpy_spec.json"
    export(episodes, data)
    env_spec = episodes.eval_env_spec
    spec = {
        "shape": shape, "steps": args.steps, "threads": args.threads, "rtg_scale": entry["rtg_scale"],
        "targets": targets, "episodes": args.episodes, "env_id": env_spec.id, "env_kwargs": dict(env_spec.kwargs),
        "max_timestep": int(max(episodes.max_episode_length, env_spec.max_episode_steps or 0)),
    }  # fmt: skip
    spec_path.write_text(json.dumps(spec, indent=1))

    # seed-major, so an interrupted check has every method on its first seeds
    tasks = {}
    for seed in args.seeds:
        for m in args.ours:
            tasks[(f"ours {m}", seed)] = functools.partial(run_ours, m, args.dataset, shape, args, targets, seed)
        tasks[("d3rlpy dt", seed)] = functools.partial(run_d3rlpy, args, data, spec_path, seed)
    runs: dict[str, dict[int, dict]] = {f"ours {m}": {} for m in args.ours} | {"d3rlpy dt": {}}

    def record(key, result):  # the report after every finished run, so a stopped check keeps its table
        runs[key[0]][key[1]] = result
        write_report(args.out, make_report(entry["id"], build, spec, args.shape, args.seeds, runs, episodes))

    run_all(tasks, args.jobs, on_done=record)
    print((args.out / "peer.md").read_text())  # every task ends in record(), the last one wrote the full table
    return 0


if __name__ == "__main__":
    sys.exit(main())
