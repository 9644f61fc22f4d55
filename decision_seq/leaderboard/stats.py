"""Statistics for the leaderboard: per-cell mean, std and bootstrap CIs; aggregate mean and IQM with
stratified bootstrap CIs across datasets.

The methods follow rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"): the interquartile mean (IQM) of all run scores pooled over tasks, and
percentile confidence intervals from a stratified bootstrap that resamples runs with replacement
independently within each task. They are reimplemented here in plain numpy because rliable 1.2.0
does not import with pandas 3 (its dependency `arch` fails in `deprecate_kwarg` with a TypeError).

Conventions (deterministic given `seed`):
- One `numpy.random.default_rng(seed)` per interval. For task t (in the order given) with n_t runs,
  the resampled indices are ONE call `rng.integers(0, n_t, size=(reps, n_t))`; replicate r uses row
  r of every task. A test can reproduce an interval exactly from this description.
- Percentile interval: `np.percentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)])` with
  numpy's default linear interpolation.
- IQM = `scipy.stats.trim_mean(x, 0.25)` of the flattened scores: sort, drop `int(0.25 * n)` values
  at each end, average the rest (rliable's definition).
- Aggregate mean = mean over tasks of each task's mean over runs (equal to the pooled mean when every
  task has the same number of runs, as in rliable's runs x tasks matrix). IQM pools all runs, so a
  task with more runs weighs more in it.
- Sample std uses ddof=1 and is NaN for a single run; a CI needs at least 2 runs (NaN otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_REPS = 2000
DEFAULT_SEED = 0
DEFAULT_ALPHA = 0.05  # 95% intervals


def iqm(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% (drop int(0.25 n) values at each end).

    axis=None flattens (rliable); axis=-1 works row-wise on a (reps, n) batch of resamples.
    """
    x = np.asarray(x, dtype=np.float64)
    if axis is None:
        x, axis = x.ravel(), -1
    x = np.sort(x, axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of an empty array")
    cut = int(0.25 * n)
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def sample_std(x: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than 2 values."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.std(ddof=1)) if x.size >= 2 else float("nan")


def percentile_interval(replicates: np.ndarray, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) percentiles of bootstrap replicates."""
    lo, hi = np.percentile(np.asarray(replicates, dtype=np.float64), [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


# A batched statistic maps one (reps, n_t) array per task to (reps,) values.
BatchedStatistic = Callable[[list[np.ndarray]], np.ndarray]


def mean_of_task_means(tasks: list[np.ndarray]) -> np.ndarray:
    """(reps,) mean over tasks of the per-task mean over runs; tasks: [(reps, n_t), ...]."""
    return np.mean([t.mean(axis=-1) for t in tasks], axis=0)


def pooled_iqm(tasks: list[np.ndarray]) -> np.ndarray:
    """(reps,) IQM of all runs of all tasks pooled; tasks: [(reps, n_t), ...]."""
    return np.atleast_1d(iqm(np.concatenate(tasks, axis=-1), axis=-1))


def stratified_bootstrap_ci(
    tasks: Sequence[Sequence[float]],
    statistic: BatchedStatistic = mean_of_task_means,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[float, float]:
    """Percentile CI of `statistic` under resampling of runs with replacement within each task.

    tasks: one sequence of run scores per task (runs may differ in number). NaN interval when no task
    has 2 runs or more (nothing to resample).
    """
    arrays = [np.asarray(t, dtype=np.float64) for t in tasks]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("every task needs at least one run")
    if max(a.size for a in arrays) < 2:
        return float("nan"), float("nan")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    rng = np.random.default_rng(seed)
    resampled = [a[rng.integers(0, a.size, size=(reps, a.size))] for a in arrays]  # [(reps, n_t)]
    return percentile_interval(statistic(resampled), alpha)


def bootstrap_ci(
    x: Sequence[float],
    statistic: BatchedStatistic = mean_of_task_means,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[float, float]:
    """Percentile bootstrap CI over the runs of one task (the one-task stratified bootstrap)."""
    return stratified_bootstrap_ci([x], statistic, reps=reps, seed=seed, alpha=alpha)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile bootstrap interval (NaN bounds when not computable)."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class SeedSummary:
    """One leaderboard cell: scores over seeds."""

    n: int
    mean: float
    std: float  # ddof=1, NaN for n=1
    ci_low: float
    ci_high: float


def summarize_seeds(
    scores: Sequence[float], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED, alpha: float = DEFAULT_ALPHA
) -> SeedSummary:
    """n, mean, sample std and the bootstrap CI of the mean over seeds."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no scores to summarize")
    lo, hi = bootstrap_ci(x, reps=reps, seed=seed, alpha=alpha)
    return SeedSummary(n=int(x.size), mean=float(x.mean()), std=sample_std(x), ci_low=lo, ci_high=hi)


def aggregate(
    tasks: Sequence[Sequence[float]], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED, alpha: float = DEFAULT_ALPHA
) -> dict[str, Estimate]:
    """Across tasks: {"mean": mean of task means, "iqm": pooled IQM}, each with a stratified CI.

    Both intervals use the same seed, hence the same resampled runs.
    """
    arrays = [np.asarray(t, dtype=np.float64) for t in tasks]
    out = {}
    for name, stat in (("mean", mean_of_task_means), ("iqm", pooled_iqm)):
        value = float(stat([a[None, :] for a in arrays])[0])
        lo, hi = stratified_bootstrap_ci(arrays, stat, reps=reps, seed=seed, alpha=alpha)
        out[name] = Estimate(value, lo, hi)
    return out
