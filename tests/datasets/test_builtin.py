"""decision_seq.datasets.builtin: the built-in Pendulum / CartPole recipes are real Minari datasets, built once,
atomically and reproducibly."""

from __future__ import annotations

import minari
import numpy as np
import pytest

from decision_seq.data.episodes import episodes_from_minari, load_minari_dataset
from decision_seq.datasets import builtin
from decision_seq.datasets.builtin import DEFAULT_DATASET_ID, build_pendulum_mixed, ensure_builtin_dataset
from decision_seq.datasets.minari_io import dataset_exists_locally


def test_default_dataset_is_a_real_minari_dataset(pendulum_dataset_id, minari_root):
    assert pendulum_dataset_id == DEFAULT_DATASET_ID
    ds = minari.load_dataset(pendulum_dataset_id)
    assert ds.total_episodes == 30 and ds.total_steps == 30 * 200
    assert pendulum_dataset_id in minari.list_local_datasets()
    meta = ds.storage.metadata
    ref_min, ref_max = meta["ref_min_score"], meta["ref_max_score"]
    # the expert is far above the uniform random policy (about -150 vs -1200)
    assert ref_max > -300 and ref_min < -900 and ref_max - ref_min > 600
    assert minari.get_normalized_score(ds, np.array([ref_max]))[0] == pytest.approx(1.0)

    env = ds.recover_environment(eval_env=True)
    assert env.spec.id == "Pendulum-v1" and env.spec.max_episode_steps == 200
    env.close()

    ep = episodes_from_minari(ds)
    assert ep.eval_env_spec.id == "Pendulum-v1"
    assert 0.0 < ep.summary()["normalized_score_mean"] < 100.0
    returns = ep.episode_returns
    assert returns.max() - returns.min() > 500  # mixed quality: returns spread widely
    # no build temp dirs left in the Minari root
    assert not [p.name for p in minari_root.iterdir() if p.name.startswith(".")]


def test_builtin_is_built_on_first_load_and_not_rebuilt(fresh_minari_root, monkeypatch):
    calls = []

    def small_build(dataset_id):
        calls.append(dataset_id)
        return build_pendulum_mixed(dataset_id, num_episodes=3, num_reference_episodes=2, progress=False)

    monkeypatch.setitem(builtin.BUILTIN, DEFAULT_DATASET_ID, small_build)
    assert not dataset_exists_locally(DEFAULT_DATASET_ID)
    ds = load_minari_dataset(DEFAULT_DATASET_ID)
    assert ds.total_episodes == 3 and calls == [DEFAULT_DATASET_ID]
    assert load_minari_dataset(DEFAULT_DATASET_ID).total_episodes == 3 and len(calls) == 1
    # a direct call with another size loads the existing dataset instead of rebuilding it
    assert build_pendulum_mixed(num_episodes=5, progress=False).total_episodes == 3
    assert ensure_builtin_dataset(DEFAULT_DATASET_ID).total_episodes == 3
    assert sorted(p.name for p in fresh_minari_root.iterdir()) == ["decision-seq"]


def test_failed_build_leaves_nothing_behind(fresh_minari_root, monkeypatch):
    real_create = minari.create_dataset_from_buffers

    def create_then_crash(*args, **kwargs):
        real_create(*args, **kwargs)  # data fully written into the temp dir...
        raise RuntimeError("interrupted")  # ...but the build dies before the rename

    monkeypatch.setattr(minari, "create_dataset_from_buffers", create_then_crash)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_pendulum_mixed("tests/crash-v0", num_episodes=2, num_reference_episodes=1, progress=False)
    assert not dataset_exists_locally("tests/crash-v0")
    assert list(fresh_minari_root.iterdir()) == []


def test_builds_are_reproducible(fresh_minari_root):
    kw = dict(num_episodes=3, num_reference_episodes=2, progress=False)
    a = episodes_from_minari(build_pendulum_mixed("tests/pend-a-v0", seed=3, **kw))
    b = episodes_from_minari(build_pendulum_mixed("tests/pend-b-v0", seed=3, **kw))
    c = episodes_from_minari(build_pendulum_mixed("tests/pend-c-v0", seed=4, **kw))
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert a.ref_min_score == b.ref_min_score == c.ref_min_score  # references do not depend on the seed
    assert not np.array_equal(a.observations, c.observations)
