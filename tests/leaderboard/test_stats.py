"""decision_seq.leaderboard.stats: exact statistics on tiny hand-made inputs, checked against the
independent re-computations in tests.leaderboard.helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decision_seq.leaderboard import stats
from tests.leaderboard.helpers import ci_by_hand


def test_iqm_known_arrays():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert stats.iqm([0, 0, 0, 100]) == 0.0  # drops one value at each end: mean(0, 0)
    assert stats.iqm([5, 1, 100, 2, 3]) == pytest.approx((2 + 3 + 5) / 3)  # n=5: int(1.25) = 1 cut
    assert stats.iqm([[1, 9], [3, 7]]) == pytest.approx(5.0)  # flattened runs x tasks: mean(3, 7)
    batched = stats.iqm(np.array([[1, 2, 3, 4], [10, 0, 0, 0]]), axis=-1)  # row-wise on (reps, n) resamples
    np.testing.assert_allclose(batched, [2.5, 0.0])


def test_iqm_matches_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")  # not a dependency: checked where it is installed
    x = np.random.default_rng(1).normal(size=(7, 3))
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25, axis=None))


def test_seed_summary_by_hand():
    x = [10.0, 20.0, 30.0, 60.0]
    s = stats.summarize_seeds(x, reps=500, seed=3)
    assert s.n == 4 and s.mean == pytest.approx(30.0)
    assert s.std == pytest.approx(math.sqrt((400 + 100 + 0 + 900) / 3))
    lo, hi = ci_by_hand([x], "mean", reps=500, seed=3)
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi), abs=1e-12)
    assert s.ci_low <= s.mean <= s.ci_high
    one = stats.summarize_seeds([42.0])
    assert one.mean == 42.0 and math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)


def test_stratified_aggregate_by_hand():
    tasks = [[10.0, 20.0, 30.0, 60.0], [50.0, 70.0, 80.0]]  # unequal runs per task are allowed
    agg = stats.aggregate(tasks, reps=300, seed=7)
    assert agg["mean"].value == pytest.approx((30.0 + 200.0 / 3) / 2)
    # 7 pooled runs 10 20 30 50 60 70 80: int(1.75) = 1 cut at each end
    assert agg["iqm"].value == pytest.approx((20 + 30 + 50 + 60 + 70) / 5)
    for name in ("mean", "iqm"):
        lo, hi = ci_by_hand(tasks, name, reps=300, seed=7)
        assert (agg[name].ci_low, agg[name].ci_high) == pytest.approx((lo, hi), abs=1e-12)
        assert agg[name].ci_low <= agg[name].value <= agg[name].ci_high


def test_bootstrap_deterministic_and_shrinks_with_seeds():
    rng = np.random.default_rng(0)
    few, many = rng.normal(50, 10, size=4), rng.normal(50, 10, size=64)
    assert stats.bootstrap_ci(few, seed=5) == stats.bootstrap_ci(few, seed=5)
    assert stats.bootstrap_ci(few, seed=5) != stats.bootstrap_ci(few, seed=6)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(stats.bootstrap_ci(many)) < width(stats.bootstrap_ci(few))
    assert stats.aggregate([few, many], seed=2) == stats.aggregate([few, many], seed=2)
