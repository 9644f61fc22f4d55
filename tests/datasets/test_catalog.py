"""decision_seq.datasets.catalog: the catalog and the Hydra `dataset=` names cover every known target; info
on a dataset that is not local says how to get it and never builds."""

from __future__ import annotations

import pytest

from decision_seq.data.episodes import DatasetNotFoundError
from decision_seq.datasets.builtin import CARTPOLE_DATASET_ID
from decision_seq.datasets.catalog import LOCAL_ONLY_KINDS, catalog, catalog_entry, dataset_info, hydra_dataset_names
from decision_seq.datasets.minari_io import dataset_exists_locally
from decision_seq.datasets.naming import d4rl_task


def test_catalog_and_hydra_names_cover_every_target():
    ids = {e.dataset_id for e in catalog()}
    names = hydra_dataset_names()
    for env in ("hopper", "halfcheetah", "walker2d"):
        for level in ("random", "medium", "medium-replay", "expert", "medium-expert"):
            assert names[f"decision-seq/{env}/{level}-v0"] == [f"{env}-{level}"]
            assert names[f"d4rl/{env}/{level}-v2"] == [f"d4rl-{env}-{level}"]
            assert {f"decision-seq/{env}/{level}-v0", f"d4rl/{env}/{level}-v2"} <= ids


def test_catalog_ids_are_unique_and_follow_the_naming_rules():
    entries = catalog()
    assert len({e.dataset_id for e in entries}) == len(entries)
    for entry in entries:
        if entry.kind in LOCAL_ONLY_KINDS:  # rebuilds and imports: the leaderboard can tell their D4RL task
            assert d4rl_task(entry.dataset_id) is not None, entry.dataset_id
    assert catalog_entry("d4rl/hopper/medium-v2").ref_scores == (-20.272305, 3234.3)
    assert catalog_entry("nobody/nothing-v0") is None


def test_info_on_a_dataset_that_is_not_local(fresh_minari_root):
    with pytest.raises(DatasetNotFoundError, match="not built yet; it is built on first use"):
        dataset_info(CARTPOLE_DATASET_ID)
    assert not dataset_exists_locally(CARTPOLE_DATASET_ID)  # info never builds
    with pytest.raises(DatasetNotFoundError, match="d4rl import.*import-d4rl hopper_medium-v2.hdf5"):
        dataset_info("d4rl/hopper/medium-v2")
