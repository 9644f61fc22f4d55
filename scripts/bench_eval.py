"""Evaluation cost of every backbone at its paper config, side by side in one run, DT's window mode = 1.00x.

Each row runs our evaluator (`evaluation.rollout`: every (episode, target) pair is one sub-env of a vector
env, one batched policy call per env step) with a randomly initialised model built from a model YAML in
conf/model/ (dt, dmamba, dmamba2, dc, dlstm, dgru, rvs, bc), in each evaluation mode the backbone has:
"window" (a forward over the last K steps per action: exact, O(K) per step) and, for backbones with an O(1)
`step` (Mamba, Mamba-2, DC, LSTM/GRU, MLP), "recurrent" (one token at a time over the whole episode). The Mamba
mixers get one row per path (--path): "kernel" (mamba_ssm's kernels, CUDA only) and "torch".

A reference row, "sequential (official DT loop)", runs DT the way the official Decision Transformer code
evaluates (`evaluate_episode_rtg` in kzl/decision-transformer: one episode at a time, histories grown with
torch.cat, a forward over the last K steps per action) on the CPU; its returns are checked against our
batched window mode (they must agree, the same model on the same reset seeds).

Rows are timed in interleaved rounds and the median is reported. "x DT" is the row's seconds over DT's
window-mode seconds (2.00x = twice as slow); every row runs the same episodes, so it is also the inverse
ratio of env steps/s.
The exit status is 1 when a row that should run fails (its error stands in the table, the other rows are
still measured and written); skipped rows (the kernel path without CUDA or without mamba_ssm) do not count.

    python scripts/bench_eval.py                                   # every backbone, Pendulum-v1, CPU
    python scripts/bench_eval.py --device cuda --json out.json --markdown out.md
    python scripts/bench_eval.py --backbones transformer,mamba --episodes 50
    python scripts/bench_eval.py --quick                           # short episodes: checks it runs (CI)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from bench_common import (
    PATHS,
    REFERENCE_MODEL,
    Row,
    environment,
    exit_status,
    expand_paths,
    markdown_table,
    paper_configs,
    select_configs,
    write_outputs,
)

from decision_seq.evaluation.policy import EVAL_MODES
from decision_seq.evaluation.rollout import rollout
from decision_seq.models.backbones import get_backbone_class
from decision_seq.models.trajectory import TrajectoryModel
from decision_seq.training.trainer import resolve_device

SEQUENTIAL = "sequential (official DT loop)"


@torch.no_grad()
def sequential_episode(model, env, *, seed, target, K, rtg_scale, max_steps):
    """One episode in the official DT evaluation style (unnormalized observations); returns (return, length)."""
    S, A = model.state_dim, model.action_dim
    obs, _ = env.reset(seed=seed)
    states = torch.as_tensor(obs, dtype=torch.float32).reshape(1, S)  # (t+1, S)
    actions = torch.zeros(0, A)  # (t, A)
    rtg_raw = float(target)  # kept unscaled in float64, as our rollout does, so both see the same inputs
    rtgs = torch.tensor([[rtg_raw / rtg_scale]], dtype=torch.float32)  # (t+1, 1)
    timesteps = torch.zeros(1, dtype=torch.long)  # (t+1,)
    episode_return, length = 0.0, 0
    for t in range(max_steps):
        actions = torch.cat([actions, torch.zeros(1, A)])  # zero placeholder for a_t, as in the official loop
        s, a, r, ts = states[-K:], actions[-K:], rtgs[-K:], timesteps[-K:]
        pad = K - s.shape[0]
        mask = torch.cat([torch.zeros(pad, dtype=torch.bool), torch.ones(s.shape[0], dtype=torch.bool)])
        s = torch.cat([torch.zeros(pad, S), s])[None]  # (1, K, S)
        a = torch.cat([torch.zeros(pad, A), a])[None]  # (1, K, A)
        r = torch.cat([torch.zeros(pad, 1), r])[None]  # (1, K, 1)
        ts = torch.cat([torch.zeros(pad, dtype=torch.long), ts])[None]  # (1, K)
        action = model.act(s, a, r, ts, mask[None])[0]  # (A,)
        actions[-1] = action
        obs, reward, term, trunc, _ = env.step(action.numpy())
        episode_return += float(reward)
        length += 1
        if term or trunc:
            break
        rtg_raw -= float(reward)
        states = torch.cat([states, torch.as_tensor(obs, dtype=torch.float32).reshape(1, S)])
        rtgs = torch.cat([rtgs, torch.tensor([[rtg_raw / rtg_scale]], dtype=torch.float32)])
        timesteps = torch.cat([timesteps, torch.tensor([t + 1])])
    return episode_return, length


def make_model(row: Row, env: gym.Env, seed: int) -> TrajectoryModel:
    torch.manual_seed(seed)
    return TrajectoryModel(
        state_dim=env.observation_space.shape[0],
        action_dim=env.action_space.shape[0],
        max_ep_len=1000,
        action_low=env.action_space.low.tolist(),
        action_high=env.action_space.high.tolist(),
        **row.net_kwargs(),
    ).eval()


def build_candidates(rows: list[Row], args, device: torch.device) -> dict[str, dict]:
    """(label, mode) label -> {run: () -> (returns, env steps)}; an unbuildable row keeps its error."""
    env = gym.make(args.env)
    max_steps = args.max_steps or env.spec.max_episode_steps
    S = env.observation_space.shape[0]
    common = dict(obs_mean=np.zeros(S), obs_std=np.ones(S), rtg_scale=args.rtg_scale, seed=args.seed)
    cands: dict[str, dict] = {}
    for i, row in enumerate(rows):
        modes = [m for m in EVAL_MODES if m == "window" or get_backbone_class(row.config.backbone).constant_time_step]
        if row.skip:
            for mode in modes:
                cands[f"{row.label} {mode}"] = {"row": row, "mode": mode, "error": f"skipped: {row.skip}"}
            continue
        try:
            model = make_model(row, env, args.seed).to(device)
        except Exception as err:  # one broken row must not hide the others' numbers
            for mode in modes:
                cands[f"{row.label} {mode}"] = {"row": row, "mode": mode, "error": f"{type(err).__name__}: {err}"}
            continue
        for mode in modes:

            def run(model=model, K=row.config.context_len, mode=mode):
                out = rollout(
                    model,
                    lambda: gym.make(args.env),
                    targets=args.targets,
                    episodes=args.episodes,
                    context_len=K,
                    max_episode_steps=max_steps,
                    device=device,
                    progress=False,
                    mode=mode,
                    **common,
                )
                returns = [r for t in args.targets for r in out[float(t)]["returns"]]
                return returns, sum(n for t in args.targets for n in out[float(t)]["lengths"])

            cands[f"{row.label} {mode}"] = {"row": row, "mode": mode, "run": run, "model": model}
        if args.reference and row.config.name == REFERENCE_MODEL:
            cpu_model = copy.deepcopy(model).cpu()  # the official loop is a CPU loop of batch-1 forwards

            def sequential(model=cpu_model, K=row.config.context_len):
                res = [
                    sequential_episode(
                        model, env, seed=args.seed + i, target=t, K=K, rtg_scale=args.rtg_scale, max_steps=max_steps
                    )
                    for t in args.targets
                    for i in range(args.episodes)
                ]
                return [r for r, _ in res], sum(n for _, n in res)

            cands[SEQUENTIAL] = {"row": row, "mode": "window", "run": sequential, "device": "cpu"}
    return cands


def run(cands: dict[str, dict], args) -> None:
    """Interleaved rounds over every candidate; fills seconds (median), env steps and returns."""
    live = {k: c for k, c in cands.items() if "error" not in c}
    times: dict[str, list[float]] = {k: [] for k in live}
    for r in range(args.rounds):
        for label, c in live.items():
            if "error" in c:
                continue
            try:
                start = time.perf_counter()
                c["returns"], c["env_steps"] = c["run"]()
                times[label].append(time.perf_counter() - start)
            except Exception as err:
                c["error"] = f"{type(err).__name__}: {err}"
                print(f"[error] {label}: {c['error']}", flush=True)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    for label, secs in times.items():
        if "error" not in live[label]:
            live[label]["seconds"] = float(np.median(secs))


def report(cands: dict[str, dict], args, env_info: dict) -> tuple[dict, str]:
    ref = cands.get(f"{REFERENCE_MODEL} window", {}).get("seconds")
    results = []
    for label, c in cands.items():
        row: Row = c["row"]
        out = {
            "row": label,
            "model": row.config.name,
            "backbone": row.config.backbone,
            "path": row.path,
            "mode": c["mode"],
            "evaluator": "sequential" if label == SEQUENTIAL else "batched",
            "device": c.get("device", env_info["device"]),
            "K": row.config.context_len,
        }
        if "seconds" in c:
            sec = c["seconds"]
            out |= {
                "env_steps": c["env_steps"],
                "seconds": sec,
                "env_steps_per_s": c["env_steps"] / sec,
                "x_dt": sec / ref if ref else None,
                "mean_return": float(np.mean(c["returns"])),
            }
        else:
            out["error"] = c.get("error", "not timed")
        results.append(out)
    checks = {}
    seq, win = cands.get(SEQUENTIAL, {}), cands.get(f"{REFERENCE_MODEL} window", {})
    if "returns" in seq and "returns" in win:
        diff = float(np.abs(np.array(seq["returns"]) - np.array(win["returns"])).max())
        checks["dt_window_vs_sequential_max_abs_return_diff"] = diff
        n = len(seq["returns"])
        print(f"[check] DT batched window vs sequential returns: max |diff| = {diff:.3g} over {n} episodes")
    settings = {
        k: getattr(args, k)
        for k in (
            "env",
            "episodes",
            "targets",
            "max_steps",
            "path",
            "rounds",
            "threads",
            "quick",
            "backbones",
            "exclude",
        )
    }
    result = {"benchmark": "eval", "settings": settings, "environment": env_info, "checks": checks, "results": results}

    title = (
        f"Evaluation, {args.env}, {args.episodes} episodes x {len(args.targets)} targets, random init, "
        f"{env_info['device_name']} ({env_info['device']}), torch {env_info['torch']}, {args.threads} CPU thread(s), "
        f"median of {args.rounds} interleaved rounds{f', experiment={args.preset} sizes' if args.preset else ''}"
    )
    header = ["row", "backbone", "path", "mode", "K", "env steps", "sec", "env steps/s", "x DT"]
    table = []
    for r in results:
        nums = (
            [str(r["env_steps"]), f"{r['seconds']:.2f}", f"{r['env_steps_per_s']:.0f}"]
            + [f"{r['x_dt']:.2f}x" if r["x_dt"] else "-"]
            if "seconds" in r
            else [r["error"].replace("|", "/")[:160], "", "", ""]
        )
        table.append([r["row"], r["backbone"], r["path"], r["mode"], str(r["K"]), *nums])
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
    p.add_argument("--device", default="cpu", help="our evaluator's device: cpu (default), auto, cuda or cuda:N")
    p.add_argument(
        "--path",
        default="both",
        choices=PATHS,
        help="Mamba / Mamba-2 mixer path: kernel (mamba_ssm kernels, CUDA only), torch, or both (default)",
    )
    p.add_argument("--env", default="Pendulum-v1", help="Gymnasium env id (the default dataset's env)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per target")
    p.add_argument("--targets", type=float, nargs="+", default=[-150.0, -400.0], help="target returns")
    p.add_argument("--max-steps", type=int, default=None, help="cap on episode length (default: the env's limit)")
    p.add_argument("--rtg-scale", type=float, default=100.0, help="return-to-go scale")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--seed", type=int, default=0, help="episode i uses reset seed seed + i; also the init seed")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest for batch-1 forwards; the default)"
    )
    p.add_argument("--no-reference", dest="reference", action="store_false", help="drop the sequential DT row")
    p.add_argument("--quick", action="store_true", help="2 episodes x 1 target of 10 steps, 1 round: a smoke run (CI)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--markdown", default=None, metavar="OUT", help="write the table as Markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.targets, args.rounds, args.max_steps = 2, args.targets[:1], 1, 10
    for name in ("episodes", "rounds", "threads", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except RuntimeError as err:
        raise SystemExit(f"--device: {err}") from None
    rows = expand_paths(select_configs(paper_configs(args.preset), args.backbones, args.exclude), args.path, device)
    cands = build_candidates(rows, args, device)
    run(cands, args)
    result, markdown = report(cands, args, environment(device))
    print(markdown)
    write_outputs(result, markdown, args.json, args.markdown)
    sys.exit(exit_status(result["results"]))  # after the outputs: a failed row still leaves the others' numbers


if __name__ == "__main__":
    main()
