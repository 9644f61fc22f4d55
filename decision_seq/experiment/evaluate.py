"""Evaluation inside a run: the return targets (given, or derived from the dataset's returns, with
warnings for targets the data cannot support) and one evaluation of a model in the dataset's eval env,
as a results.json record. Used by `decision-seq train` (periodic evaluations) and `decision-seq eval`."""

from __future__ import annotations

from decision_seq.data.episodes import EpisodeSet
from decision_seq.evaluation.rollout import rollout
from decision_seq.experiment.results import eval_record


def default_targets(episodes: EpisodeSet) -> list[float]:
    """Targets when the config names none: the dataset's best episode return, and halfway between
    the mean and the best (works for negative returns too)."""
    r = episodes.episode_returns
    return [float(r.max()), float((r.max() + r.mean()) / 2)]


def check_targets(targets: list[float], episodes: EpisodeSet) -> list[str]:
    """Warnings for return targets the dataset cannot support: below its worst episode return, or above
    its best by more than max(|best|, best - worst) (2x the best return for positive-return datasets)."""
    r = episodes.episode_returns
    lo, hi = float(r.min()), float(r.max())
    ceiling = hi + max(abs(hi), hi - lo)
    out = []
    for t in targets:
        if t < lo or t > ceiling:
            out.append(
                f"eval target {t:g} is outside what dataset {episodes.dataset_id!r} supports (episode returns "
                f"{lo:.4g} to {hi:.4g}; sensible targets lie in [{lo:.4g}, {ceiling:.4g}])"
            )
    return out


def evaluate_model(
    model,
    episodes: EpisodeSet,
    step: int,
    *,
    eval_cfg,
    targets,
    context_len: int,
    obs_mean,
    obs_std,
    rtg_scale: float,
    seed: int,
    device,
) -> dict:
    """Roll out every (episode, target) pair in the dataset's eval env; one results.json evaluation record.
    Episode i of every target resets with seed * 10_000 + i, in training and in `decision-seq eval` alike."""
    per_target = rollout(
        model,
        episodes.make_eval_env,
        targets=targets,
        episodes=eval_cfg.episodes,
        context_len=context_len,
        obs_mean=obs_mean,
        obs_std=obs_std,
        rtg_scale=rtg_scale,
        seed=seed * 10_000,  # departure: the official code leaves reset seeds to the env (README: Departures)
        num_envs=eval_cfg.num_envs,
        max_episode_steps=eval_cfg.max_steps,
        device=device,
        progress=eval_cfg.progress,
        discrete_action=eval_cfg.discrete_action,
        mode=eval_cfg.mode,
    )
    return eval_record(step, per_target, episodes.normalized_score if episodes.has_reference_scores else None)
