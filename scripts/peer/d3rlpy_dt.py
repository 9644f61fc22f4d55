"""d3rlpy's DecisionTransformer on a dataset exported by scripts/peer_d3rlpy.py: train, evaluate, print JSON.

Runs in d3rlpy's own environment (d3rlpy pins its own gymnasium, so it is kept apart from the project's;
scripts/peer_d3rlpy.py --help says how to make it). It imports nothing from decision-seq.

    /path/to/d3rlpy-venv/bin/python scripts/peer/d3rlpy_dt.py --data export.npz --spec spec.json --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the .npz written by peer_d3rlpy.py")
    p.add_argument("--spec", required=True, help="the JSON run spec written by peer_d3rlpy.py")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="where to write this run's JSON")
    args = p.parse_args()

    import d3rlpy
    import gymnasium as gym
    import numpy as np
    import torch

    with open(args.spec) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    data = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"],
        actions=data["actions"],
        rewards=data["rewards"],
        terminals=data["terminals"],
        timeouts=data["timeouts"],
    )
    d3rlpy.seed(args.seed)
    shape = spec["shape"]
    dt = d3rlpy.algos.DecisionTransformerConfig(
        batch_size=shape["batch_size"],
        context_size=shape["context_len"],
        learning_rate=shape["lr"],
        # A linear state embedding, as DT's (d3rlpy's reproduction script sets it the same way).
        encoder_factory=d3rlpy.models.VectorEncoderFactory([shape["embed_dim"]], exclude_last_activation=True),
        optim_factory=d3rlpy.optimizers.AdamWFactory(
            weight_decay=shape["weight_decay"],
            clip_grad_norm=shape["grad_clip"],
            lr_scheduler_factory=d3rlpy.optimizers.WarmupSchedulerFactory(warmup_steps=shape["warmup_steps"]),
        ),
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(1.0 / spec["rtg_scale"]),
        num_heads=shape["n_head"],
        num_layers=shape["n_layer"],
        attn_dropout=shape["dropout"],
        resid_dropout=shape["dropout"],
        embed_dropout=shape["dropout"],
        max_timestep=spec["max_timestep"],
    ).create(device="cpu:0")

    start = time.perf_counter()
    dt.fit(
        dataset,
        n_steps=spec["steps"],
        n_steps_per_epoch=spec["steps"],
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        save_interval=10**9,
    )
    fit_sec = time.perf_counter() - start

    env = gym.make(spec["env_id"], **spec["env_kwargs"])
    results = []
    start = time.perf_counter()
    for target in spec["targets"]:
        returns = []
        for i in range(spec["episodes"]):
            wrapper = dt.as_stateful_wrapper(target_return=target)
            obs, _ = env.reset(seed=args.seed * 10000 + i)  # the reset seeds decision-seq's evaluation uses
            reward, total, done = 0.0, 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(wrapper.predict(obs, reward))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        results.append({"target": target, "returns": returns})
    out = {
        "seed": args.seed,
        "steps": spec["steps"],
        "fit_sec": fit_sec,
        "steps_per_sec": spec["steps"] / fit_sec,
        "eval_sec": time.perf_counter() - start,
        "results": results,
        "versions": {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "gymnasium": gym.__version__},
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
