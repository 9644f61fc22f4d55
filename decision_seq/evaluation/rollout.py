"""Batched return-conditioned rollouts on Gymnasium vector envs.

Every (episode, target return) pair is one sub-environment of a vector env, and all of them go
through one batched SequencePolicy call per env step (`mode` "window": the model sees the last K
steps, as in training, like the official DT evaluation loop but batched; "recurrent": Mamba's O(1)
step over the whole episode; see evaluation/policy.py). Autoreset is disabled, so each
sub-environment contributes exactly one episode: no extra or partial episodes are ever counted.
Episode i of every target uses the same reset seed (seed + i), so targets are compared on the same
initial states.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from decision_seq.data.frames import FRAME_STACK
from decision_seq.evaluation.policy import SequencePolicy, check_discrete_action, check_mode
from decision_seq.models.encoders import is_image_shape


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
    discrete_action: str = "argmax",
) -> dict[float, dict[str, list]]:
    """Run `episodes` episodes for each target return; returns {target: {returns, lengths, seeds}}.

    `num_envs` caps how many episodes run at once (default: all pairs together). Episodes stop at the
    env's own time limit, or at `max_episode_steps` (default: the env's own cap, `episode_cap`, else the
    model's timestep embedding size) as a hard cap. `mode` is one of evaluation.policy.EVAL_MODES; discrete actions
    are picked by `discrete_action` (evaluation.policy.DISCRETE_ACTIONS), draws seeded by each chunk's first seed.
    """
    check_mode(mode)  # before any env is built
    check_discrete_action(discrete_action)
    if episodes < 1:
        raise ValueError(f"eval.episodes must be >= 1, got {episodes}")
    if not targets:
        raise ValueError("eval.targets must name at least one target return")
    jobs = [(float(target), i) for target in targets for i in range(episodes)]
    chunk = len(jobs) if not num_envs else max(1, int(num_envs))
    out = {float(t): {"returns": [], "lengths": [], "seeds": []} for t in targets}
    # A bar only in a terminal: in a log file each redraw would be another line (the result is logged anyway).
    live = progress and sys.stderr.isatty()
    bar = tqdm(total=len(jobs), desc="eval", unit="ep", dynamic_ncols=True, disable=not live, leave=False)
    try:
        for lo in range(0, len(jobs), chunk):
            part = jobs[lo : lo + chunk]
            seeds = [seed + i for _, i in part]
            returns, lengths = _run_chunk(
                model,
                env_fn,
                [t for t, _ in part],
                seeds,
                context_len,
                obs_mean,
                obs_std,
                rtg_scale,
                max_episode_steps,
                torch.device(device),
                bar,
                mode,
                discrete_action,
            )
            for (target, _), s, r, n in zip(part, seeds, returns, lengths, strict=True):
                out[target]["returns"].append(float(r))
                out[target]["lengths"].append(int(n))
                out[target]["seeds"].append(int(s))
    finally:
        bar.close()
    return out


def episode_cap(spec: gym.envs.registration.EnvSpec | None) -> int | None:
    """The env's own episode limit in agent steps: its TimeLimit, else the ALE's frame cap (e.g. DQN-Replay's
    108k frames) over the frame skip, so Atari episodes run to their end as in the DT Atari evaluation (the
    model clamps timesteps past its embedding, as that code does), not to the data's longest episode."""
    if spec is None:
        return None
    if spec.max_episode_steps:
        return int(spec.max_episode_steps)
    frames = spec.kwargs.get("max_num_frames_per_episode")
    if not frames:
        return None
    skip = spec.kwargs.get("frameskip", 1)
    skip = skip if isinstance(skip, int) else max(skip)  # a (low, high) range: the fewest agent steps
    for wrapper in spec.additional_wrappers:
        skip *= int(wrapper.kwargs.get("frame_skip", 1))
    return math.ceil(frames / skip)


@torch.no_grad()
def _run_chunk(
    model, env_fn, targets, seeds, K, obs_mean, obs_std, rtg_scale, max_steps, device, bar, mode, discrete_action
):
    n = len(targets)
    envs = gym.vector.SyncVectorEnv([env_fn] * n, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    try:
        H = int(max_steps or episode_cap(envs.envs[0].spec) or model.max_ep_len)
        policy = SequencePolicy(
            model,
            batch_size=n,
            context_len=K,
            max_steps=H,
            mode=mode,
            device=device,
            discrete_action=discrete_action,
            seed=seeds[0],
        )
        obs, _ = envs.reset(seed=seeds)
        mean = torch.as_tensor(obs_mean, dtype=policy.dtype, device=device)
        std = torch.as_tensor(obs_std, dtype=policy.dtype, device=device)
        # Image observations: the env gives one frame per step and the model reads the last FRAME_STACK.
        frames = _FrameStack(n) if is_image_shape(model.obs_shape) else None
        rtg_now = np.asarray(targets, dtype=np.float64)
        returns = np.zeros(n)
        lengths = np.zeros(n, dtype=np.int64)
        active = np.ones(n, dtype=bool)
        for _ in range(H):
            obs_t = torch.as_tensor(obs, dtype=policy.dtype, device=device)
            if frames is not None:
                state = frames.push(obs_t)  # (n, FRAME_STACK, 84, 84); mean 0, std 1 for frames
            else:
                state = (obs_t.reshape(n, -1) - mean) / std  # (n, S)
            rtg = torch.as_tensor(rtg_now / rtg_scale, dtype=policy.dtype, device=device)[:, None]  # (n, 1)
            action = policy.act(state, rtg)
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
                if frames is not None:
                    frames.restart(ended)
        bar.update(int(active.sum()))  # episodes stopped by the hard cap
        return returns, lengths
    finally:
        envs.close()


class _FrameStack:
    """The last FRAME_STACK frames of each of n envs. A new episode's first frame fills its whole stack, as
    the sampler repeats an episode's first frame in training (data/sampler.py)."""

    def __init__(self, n: int):
        self.stack: torch.Tensor | None = None  # (n, FRAME_STACK, H, W)
        self.fresh = np.ones(n, dtype=bool)

    def push(self, frame: torch.Tensor) -> torch.Tensor:
        """frame (n, H, W) -> the stacks (n, FRAME_STACK, H, W) ending with it."""
        if self.stack is None:
            self.stack = frame[:, None].repeat(1, FRAME_STACK, 1, 1)
        else:
            self.stack = torch.cat([self.stack[:, 1:], frame[:, None]], dim=1)
        if self.fresh.any():
            fresh = torch.as_tensor(self.fresh, device=frame.device)
            self.stack[fresh] = frame[fresh, None].expand(-1, FRAME_STACK, -1, -1)
            self.fresh[:] = False
        return self.stack

    def restart(self, envs: np.ndarray) -> None:
        """These envs were reset: their next frame starts a new stack."""
        self.fresh |= envs
