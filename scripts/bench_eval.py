"""Evaluation throughput: our batched SequencePolicy rollout vs the official DT's one-episode-at-a-time loop.

The baseline follows the official Decision Transformer evaluation (`evaluate_episode_rtg` in
kzl/decision-transformer): one env, histories as tensors grown with torch.cat every step, and a model
forward over the last K steps (left-padded, masked) for every action. Ours runs every (episode, target)
pair as one sub-env of a vector env with one batched policy call per step ("window" mode: exact; for
Mamba also "recurrent" mode: O(1) per step). Same model, same episodes (reset seeds), one run each.
Also checks that batched window mode and the sequential baseline give the same returns.

    python scripts/bench_eval.py                      # DT and DMamba, random init, Pendulum-v1
    python scripts/bench_eval.py --checkpoint /tmp/demo_sweep3/1_dmamba_pendulum-mixed_seed0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from decision_seq.evaluation.rollout import rollout
from decision_seq.models.trajectory import TrajectoryModel


@torch.no_grad()
def sequential_episode(model, env, *, seed, target, K, obs_mean, obs_std, rtg_scale, max_steps):
    """One episode in the official DT evaluation style; returns (return, length)."""
    S, A = model.state_dim, model.action_dim
    mean, std = torch.as_tensor(obs_mean, dtype=torch.float32), torch.as_tensor(obs_std, dtype=torch.float32)
    obs, _ = env.reset(seed=seed)
    states = torch.as_tensor(obs, dtype=torch.float32).reshape(1, S)  # (t+1, S)
    actions = torch.zeros(0, A)  # (t, A)
    rtg_raw = float(target)  # kept unscaled in float64, as our rollout does, so both see the same inputs
    rtgs = torch.tensor([[rtg_raw / rtg_scale]], dtype=torch.float32)  # (t+1, 1)
    timesteps = torch.zeros(1, dtype=torch.long)  # (t+1,)
    episode_return, length = 0.0, 0
    for t in range(max_steps):
        actions = torch.cat([actions, torch.zeros(1, A)])  # zero placeholder for a_t, as in the official loop
        s, a, r, ts = ((states - mean) / std)[-K:], actions[-K:], rtgs[-K:], timesteps[-K:]
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


def make_model(backbone: str, args, env) -> tuple[TrajectoryModel, dict]:
    if args.checkpoint:
        path = Path(args.checkpoint)
        path = path / "checkpoints" / "last.pt" if path.is_dir() else path
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model = TrajectoryModel(**ckpt["model_kwargs"])
        model.load_state_dict(ckpt["model"])
        norm = ckpt["normalization"]
        stats = dict(
            obs_mean=norm["obs_mean"].numpy(),
            obs_std=norm["obs_std"].numpy(),
            rtg_scale=float(norm["rtg_scale"]),
            K=int(ckpt["context_len"]),
        )
        return model.eval(), stats
    torch.manual_seed(0)
    S, A = env.observation_space.shape[0], env.action_space.shape[0]
    model = TrajectoryModel(
        state_dim=S,
        action_dim=A,
        embed_dim=args.embed_dim,
        max_ep_len=1000,
        dropout=0.1,
        backbone=backbone,
        backbone_kwargs={"n_layer": args.n_layer},
        action_low=env.action_space.low.tolist(),
        action_high=env.action_space.high.tolist(),
    )
    return model.eval(), dict(obs_mean=np.zeros(S), obs_std=np.ones(S), rtg_scale=args.rtg_scale, K=args.context_len)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--env", default="Pendulum-v1", help="Gymnasium env id (the default dataset's env)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per target")
    p.add_argument("--targets", type=float, nargs="+", default=[-150.0, -400.0], help="target returns")
    p.add_argument("--backbones", nargs="+", default=["transformer", "mamba"], choices=["transformer", "mamba"])
    p.add_argument(
        "--checkpoint", default=None, help="a decision-seq checkpoint (.pt or run dir) instead of random init"
    )
    p.add_argument("--context-len", type=int, default=20, help="K (random init only)")
    p.add_argument("--embed-dim", type=int, default=128, help="random init only")
    p.add_argument("--n-layer", type=int, default=3, help="random init only")
    p.add_argument("--rtg-scale", type=float, default=100.0, help="random init only")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for our batched evaluator")
    p.add_argument(
        "--baseline-threads",
        type=int,
        default=1,
        help="torch CPU threads for the sequential baseline (1 is its fastest: batch-1 forwards do not scale)",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--seed", type=int, default=0, help="episode i uses reset seed seed + i")
    args = p.parse_args()

    env = gym.make(args.env)
    max_steps = env.spec.max_episode_steps
    backbones = args.backbones
    if args.checkpoint:
        ckpt = torch.load(
            Path(args.checkpoint) / "checkpoints" / "last.pt" if Path(args.checkpoint).is_dir() else args.checkpoint,
            map_location="cpu",
            weights_only=False,
        )
        backbones = [ckpt["model_kwargs"]["backbone"]]
    times: dict[tuple[str, str], list[float]] = {}
    steps_of: dict[tuple[str, str], int] = {}
    for backbone in backbones:
        model, st = make_model(backbone, args, env)
        common = dict(obs_mean=st["obs_mean"], obs_std=st["obs_std"], rtg_scale=st["rtg_scale"])
        base_name = "sequential window (official DT loop)"

        def sequential(model=model, st=st, common=common):  # called in this iteration only
            torch.set_num_threads(args.baseline_threads)
            return {
                t: [
                    sequential_episode(
                        model, env, seed=args.seed + i, target=t, K=st["K"], max_steps=max_steps, **common
                    )
                    for i in range(args.episodes)
                ]
                for t in args.targets
            }

        def batched(mode, model=model, st=st, common=common):
            torch.set_num_threads(args.threads)
            return rollout(
                model,
                lambda: gym.make(args.env),
                targets=args.targets,
                episodes=args.episodes,
                context_len=st["K"],
                seed=args.seed,
                progress=False,
                mode=mode,
                **common,
            )

        modes = ["window", "recurrent"] if model.backbone.constant_time_step else ["window"]
        outs = {}
        for _ in range(args.rounds):  # interleaved, so load changes on a shared machine hit every candidate
            start = time.perf_counter()
            seq = sequential()
            times.setdefault((backbone, base_name), []).append(time.perf_counter() - start)
            steps_of[(backbone, base_name)] = sum(n for res in seq.values() for _, n in res)
            for mode in modes:
                start = time.perf_counter()
                outs[mode] = batched(mode)
                times.setdefault((backbone, f"batched {mode}"), []).append(time.perf_counter() - start)
                steps_of[(backbone, f"batched {mode}")] = sum(sum(r["lengths"]) for r in outs[mode].values())
        ref = np.array([r for t in args.targets for r, _ in seq[t]])
        got = np.array([r for t in args.targets for r in outs["window"][t]["returns"]])
        diff = float(np.abs(ref - got).max())
        print(
            f"[check] {backbone}: batched window vs sequential returns, max |diff| = {diff:.3g} "
            f"over {len(ref)} episodes -> {'IDENTICAL (<1e-3)' if diff < 1e-3 else 'DIFFERENT'}"
        )
        if "recurrent" in outs:
            rec = np.array([r for t in args.targets for r in outs["recurrent"][t]["returns"]])
            print(
                f"[info] {backbone}: mean return recurrent {rec.mean():.1f} vs window {got.mean():.1f} "
                f"(differ once t >= K = {st['K']}: recurrent sees the whole episode)"
            )

    weights = (
        f"checkpoint {args.checkpoint}"
        if args.checkpoint
        else f"random init (embed {args.embed_dim}, {args.n_layer} layers, K={args.context_len})"
    )
    print(
        f"\n{args.env}, {args.episodes} episodes x {len(args.targets)} targets, ours {args.threads} threads, "
        f"baseline {args.baseline_threads}, median of {args.rounds} interleaved rounds, {weights}"
    )
    print(f"{'backbone':<12} {'evaluator':<38} {'env steps':>9} {'sec':>8} {'steps/s':>9}")
    by = {}
    for key, secs in times.items():
        sec = float(np.median(secs))
        by[key] = steps_of[key] / sec
        print(f"{key[0]:<12} {key[1]:<38} {steps_of[key]:>9} {sec:>8.2f} {by[key]:>9.0f}")
    print()
    for backbone in backbones:
        base = by[(backbone, "sequential window (official DT loop)")]
        print(f"{backbone}: batched window / sequential = {by[(backbone, 'batched window')] / base:.1f}x")
        if (backbone, "batched recurrent") in by:
            recurrent, window = by[(backbone, "batched recurrent")], by[(backbone, "batched window")]
            print(
                f"{backbone}: batched recurrent / sequential = {recurrent / base:.1f}x, "
                f"recurrent / batched window = {recurrent / window:.1f}x"
            )


if __name__ == "__main__":
    main()
