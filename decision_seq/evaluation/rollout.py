"""Batched return-conditioned rollouts on Gymnasium vector envs.

Every (episode, target return) pair is one sub-environment of a vector env, and all of them go
through one batched model forward per env step ("window" mode: the model sees the last K steps, as
in training, like the official DT evaluation loop but batched). Autoreset is disabled, so each
sub-environment contributes exactly one episode: no extra or partial episodes are ever counted.
Episode i of every target uses the same reset seed (seed + i), so targets are compared on the same
initial states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

EVAL_MODES = ("window",)  # the model sees the last K steps, exactly as in training


def rollout(
    model,
    env_fn: Callable[[], gym.Env],
    *,
    targets: Sequence[float],
    episodes: int,
    context_len: int,
    obs_mean: np.ndarray,
    obs_std: np.ndarray,
    rtg_scale: float,
    seed: int = 0,
    num_envs: int | None = None,
    max_episode_steps: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    mode: str = "window",
) -> dict[float, dict[str, list]]:
    """Run `episodes` episodes for each target return; returns {target: {returns, lengths, seeds}}.

    `num_envs` caps how many episodes run at once (default: all pairs together). Episodes stop at the
    env's own time limit, or at `max_episode_steps` (default: the env spec's, else the model's
    timestep embedding size) as a hard cap.
    """
    if mode not in EVAL_MODES:
        raise ValueError(f"eval.mode={mode!r} is not available; valid modes: {', '.join(EVAL_MODES)}")
    if episodes < 1:
        raise ValueError(f"eval.episodes must be >= 1, got {episodes}")
    if not targets:
        raise ValueError("eval.targets must name at least one target return")
    jobs = [(float(target), i) for target in targets for i in range(episodes)]
    chunk = len(jobs) if not num_envs else max(1, int(num_envs))
    out = {float(t): {"returns": [], "lengths": [], "seeds": []} for t in targets}
    bar = tqdm(total=len(jobs), desc="eval", unit="ep", dynamic_ncols=True, disable=not progress, leave=False)
    try:
        for lo in range(0, len(jobs), chunk):
            part = jobs[lo : lo + chunk]
            seeds = [seed + i for _, i in part]
            returns, lengths = _run_chunk(
                model, env_fn, [t for t, _ in part], seeds, context_len, obs_mean, obs_std, rtg_scale,
                max_episode_steps, torch.device(device), bar,
            )
            for (target, _), s, r, n in zip(part, seeds, returns, lengths):
                out[target]["returns"].append(float(r))
                out[target]["lengths"].append(int(n))
                out[target]["seeds"].append(int(s))
    finally:
        bar.close()
    return out


@torch.no_grad()
def _run_chunk(model, env_fn, targets, seeds, K, obs_mean, obs_std, rtg_scale, max_steps, device, bar):
    n = len(targets)
    envs = gym.vector.SyncVectorEnv([env_fn] * n, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    try:
        spec_limit = envs.envs[0].spec.max_episode_steps if envs.envs[0].spec is not None else None
        H = int(max_steps or spec_limit or model.max_ep_len)
        obs, _ = envs.reset(seed=seeds)
        S, discrete = model.state_dim, model.discrete
        mean = torch.as_tensor(obs_mean, dtype=torch.float32, device=device)
        std = torch.as_tensor(obs_std, dtype=torch.float32, device=device)
        # Histories of the whole episode; the model reads the last K steps of them.
        states = torch.zeros(n, H, S, device=device)  # (n, H, S)
        actions = torch.zeros((n, H) if discrete else (n, H, model.action_dim),
                              dtype=torch.long if discrete else torch.float32, device=device)
        rtg = torch.zeros(n, H, 1, device=device)  # (n, H, 1)
        timesteps = torch.arange(H, device=device).expand(n, H)  # (n, H)
        rtg_now = np.asarray(targets, dtype=np.float64)
        returns = np.zeros(n)
        lengths = np.zeros(n, dtype=np.int64)
        active = np.ones(n, dtype=bool)
        for t in range(H):
            states[:, t] = (torch.as_tensor(obs, dtype=torch.float32, device=device).reshape(n, S) - mean) / std
            rtg[:, t, 0] = torch.as_tensor(rtg_now / rtg_scale, dtype=torch.float32, device=device)
            lo = max(0, t + 1 - K)
            win = slice(lo, t + 1)
            action = model.act(*_left_pad(K, states[:, win], actions[:, win], rtg[:, win], timesteps[:, win]))
            actions[:, t] = action
            obs, reward, term, trunc, _ = envs.step(action.cpu().numpy())
            reward = np.where(active, reward, 0.0)
            returns += reward
            rtg_now -= reward  # the target shrinks by the reward received, as in the DT paper
            lengths += active
            done = active & (term | trunc)
            if done.any():
                active &= ~done
                bar.update(int(done.sum()))
            if not active.any():
                break
            ended = term | trunc
            if ended.any():
                # With autoreset disabled a finished sub-env must be reset before the next step; its new
                # episode is never counted (`active` stays False), it only keeps the batch shape.
                obs, _ = envs.reset(options={"reset_mask": ended})
        bar.update(int(active.sum()))  # episodes stopped by the hard cap
        return returns, lengths
    finally:
        envs.close()


def _left_pad(K: int, states, actions, rtg, timesteps):
    """Left-pad windows shorter than K with zeros and return them with their mask, as in training."""
    n, L = states.shape[:2]
    mask = torch.ones(n, K, dtype=torch.bool, device=states.device)
    if L == K:
        return states, actions, rtg, timesteps, mask
    pad = K - L
    mask[:, :pad] = False

    def lp(x):
        return torch.cat([x.new_zeros((n, pad, *x.shape[2:])), x], dim=1)

    return lp(states), lp(actions), lp(rtg), lp(timesteps), mask
