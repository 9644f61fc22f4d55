"""decision_seq.datasets.d4rl and d4rl_files: D4RL import (episode boundaries, final observations, flags,
reference scores, eval env, names, bad inputs), directly and through `decision-seq datasets import-d4rl`."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import h5py
import minari
import numpy as np
import pytest

from decision_seq.cli.datasets import main as datasets_main
from decision_seq.data.episodes import load_episodes
from decision_seq.datasets.d4rl import (
    D4RL_ENVS,
    d4rl_dataset_id,
    d4rl_file_name,
    import_d4rl,
    parse_d4rl_filename,
)
from decision_seq.datasets.d4rl_files import read_d4rl_hdf5
from decision_seq.datasets.naming import D4RL_ENV_NAMES, LEVELS

# Three hopper episodes in 12 rows: rows 0-3 end on a terminal, 4-8 on a timeout, 9-11 are a trailing
# partial episode (no flag on the last row).
N, OBS_DIM, ACT_DIM = 12, 11, 3
TERMINALS = np.zeros(N, bool)
TERMINALS[3] = True
TIMEOUTS = np.zeros(N, bool)
TIMEOUTS[8] = True
HOPPER_ID = "d4rl/hopper/medium-replay-v2"


def _obs(rows: np.ndarray) -> np.ndarray:
    """obs[i] = i + column / 100: every row identifiable. (len, 11)"""
    return (np.asarray(rows, np.float32)[:, None] + np.arange(OBS_DIM, dtype=np.float32) / 100).astype(np.float32)


def _next_obs(rows) -> np.ndarray:
    return _obs(rows) + np.float32(0.5)  # distinct from every obs row, so its use is visible


def _actions(rows) -> np.ndarray:
    r = np.asarray(rows, np.float32)
    return np.stack([r / 20, -r / 20, np.zeros_like(r)], axis=1).astype(np.float32)  # (len, 3) in [-1, 1]


def _rewards(rows) -> np.ndarray:
    return np.asarray(rows, np.float32) + 1.0


def write_d4rl(
    path: Path,
    *,
    next_observations: bool = True,
    timeouts: bool = True,
    obs_dim: int = OBS_DIM,
    drop: tuple[str, ...] = (),
    rewards_len: int = N,
    scale: float = 1.0,
) -> Path:
    """A small D4RL-layout HDF5 file (hopper sizes by default)."""
    rows = np.arange(N)
    with h5py.File(path, "w") as f:
        data = {
            "observations": np.repeat(_obs(rows), 2, axis=1)[:, :obs_dim] if obs_dim != OBS_DIM else _obs(rows),
            "actions": _actions(rows),
            "rewards": _rewards(np.arange(rewards_len)) * scale,
            "terminals": TERMINALS,
        }
        if timeouts:
            data["timeouts"] = TIMEOUTS
        if next_observations:
            data["next_observations"] = data["observations"] + np.float32(0.5)
        for key, value in data.items():
            if key not in drop:
                f[key] = value
        f["metadata/algorithm"] = b"SAC"
        f["infos/qpos"] = np.zeros((N, 6))
    return path


def _episodes(dataset_id: str) -> list:
    return list(minari.load_dataset(dataset_id).iterate_episodes())


def _assert_episode(ep, obs, act_rows, terminated: bool):
    T = len(act_rows)
    np.testing.assert_array_equal(ep.observations, obs)
    np.testing.assert_array_equal(ep.actions, _actions(act_rows))
    np.testing.assert_array_equal(ep.rewards, _rewards(act_rows))
    flags = np.arange(T) == T - 1
    np.testing.assert_array_equal(ep.terminations, flags & terminated)
    np.testing.assert_array_equal(ep.truncations, flags & (not terminated))


def test_import_with_next_observations(tmp_path, fresh_minari_root, caplog):
    path = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5")
    with caplog.at_level(logging.INFO, logger="decision_seq"):
        dataset = import_d4rl(path, progress=False)
    assert dataset.id == HOPPER_ID
    eps = _episodes(HOPPER_ID)
    assert [len(e.rewards) for e in eps] == [4, 5, 3]
    # The final observation is next_observations of each episode's last row; nothing is dropped.
    _assert_episode(eps[0], np.concatenate([_obs(range(0, 4)), _next_obs([3])]), range(0, 4), terminated=True)
    _assert_episode(eps[1], np.concatenate([_obs(range(4, 9)), _next_obs([8])]), range(4, 9), terminated=False)
    _assert_episode(eps[2], np.concatenate([_obs(range(9, 12)), _next_obs([11])]), range(9, 12), terminated=False)

    # D4RL reference returns, the v4 eval env (the v3 collection env's model), said in the log and the description.
    spec = D4RL_ENVS["hopper"]
    episodes = load_episodes(HOPPER_ID)
    assert (episodes.ref_min_score, episodes.ref_max_score) == (-20.272305, 3234.3)
    assert episodes.eval_env_spec.id == "Hopper-v4"
    metadata = minari.load_dataset(HOPPER_ID).storage.metadata
    assert json.loads(metadata["eval_env_spec"])["id"] == spec.eval_env_id
    assert "Hopper-v3" in metadata["description"] and "Hopper-v4" in metadata["description"]
    assert "SAC" in metadata["algorithm_name"]
    said = [r for r in caplog.records if "mujoco-py Hopper-v3" in r.getMessage()]
    assert said and "Hopper-v4" in said[0].getMessage()
    env = minari.load_dataset(HOPPER_ID).recover_environment(eval_env=True)
    assert env.spec.id == "Hopper-v4"
    env.close()


def test_import_without_next_observations(tmp_path, fresh_minari_root):
    path = write_d4rl(tmp_path / "hopper-medium-replay-v2.hdf5", next_observations=False)
    import_d4rl(path, progress=False)
    eps = _episodes(HOPPER_ID)
    # Terminated: all 4 steps, the last observation repeated as a placeholder final observation.
    _assert_episode(eps[0], np.concatenate([_obs(range(0, 4)), _obs([3])]), range(0, 4), terminated=True)
    # Timeout and trailing partial: the last transition is dropped; its observation becomes the final one.
    _assert_episode(eps[1], _obs(range(4, 9)), range(4, 8), terminated=False)
    _assert_episode(eps[2], _obs(range(9, 12)), range(9, 11), terminated=False)
    assert minari.load_dataset(HOPPER_ID).total_steps == 4 + 4 + 2


def test_file_without_timeouts_ends_episodes_at_terminals_only(tmp_path, fresh_minari_root, caplog):
    path = write_d4rl(tmp_path / "hopper_medium-v0.hdf5", timeouts=False)
    with caplog.at_level(logging.WARNING, logger="decision_seq"):
        dataset = import_d4rl(path, progress=False)
    assert dataset.id == "d4rl/hopper/medium-v0"  # the version in the file name is kept
    assert [len(e.rewards) for e in _episodes(dataset.id)] == [4, 8]
    assert any("no timeouts" in r.getMessage() for r in caplog.records)


def test_env_and_level_from_arguments(tmp_path, fresh_minari_root):
    path = write_d4rl(tmp_path / "data.hdf5")
    with pytest.raises(ValueError, match="cannot tell the D4RL env and level.*--env and --level"):
        import_d4rl(path, progress=False)
    dataset = import_d4rl(path, env="hopper", level="medium_expert", progress=False)
    assert dataset.id == "d4rl/hopper/medium-expert-v2"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("hopper_medium_replay-v2.hdf5", ("hopper", "medium-replay", 2)),
        ("hopper-medium-replay-v2.hdf5", ("hopper", "medium-replay", 2)),
        ("walker2d_medium_expert-v2.hdf5", ("walker2d", "medium-expert", 2)),
        ("halfcheetah-random-v0.pkl", ("halfcheetah", "random", 0)),
        ("HalfCheetah_expert.hdf5", ("halfcheetah", "expert", None)),
    ],
)
def test_parse_filename(name, expected):
    assert parse_d4rl_filename(name) == expected


@pytest.mark.parametrize("name", ["ant_medium-v2.hdf5", "hopper_superb-v2.hdf5", "dataset.hdf5"])
def test_unknown_names_list_valid_ones(name):
    with pytest.raises(ValueError, match="hopper, halfcheetah, walker2d.*random, medium, medium-replay"):
        parse_d4rl_filename(name)
    with pytest.raises(ValueError, match="unknown D4RL env 'ant'; valid envs: hopper"):
        d4rl_dataset_id("ant", "medium")


def test_env_table_matches_naming_and_file_names_round_trip():
    # naming.D4RL_ENV_NAMES (the id patterns) and D4RL_ENVS (reference returns) list the same envs.
    assert tuple(D4RL_ENVS) == D4RL_ENV_NAMES
    for env in D4RL_ENVS:
        for level in LEVELS:
            assert parse_d4rl_filename(d4rl_file_name(env, level)) == (env, level, 2)
    assert d4rl_file_name("hopper", "medium-replay") == "hopper_medium_replay-v2.hdf5"


def _trajectories() -> list[dict]:
    rows_a, rows_b = np.arange(0, 4), np.arange(4, 9)
    term_a = np.zeros(4, bool)
    term_a[-1] = True
    return [
        {
            "observations": _obs(rows_a),
            "next_observations": _next_obs(rows_a),
            "actions": _actions(rows_a),
            "rewards": _rewards(rows_a),
            "terminals": term_a,
        },
        {
            "observations": _obs(rows_b),
            "next_observations": _next_obs(rows_b),
            "actions": _actions(rows_b),
            "rewards": _rewards(rows_b),
            "terminals": np.zeros(5, bool),
        },
    ]


def test_dt_pickle_needs_allow_pickle(tmp_path, fresh_minari_root, caplog):
    path = tmp_path / "hopper-medium-replay-v2.pkl"
    path.write_bytes(pickle.dumps(_trajectories()))
    with pytest.raises(ValueError, match="pickle.*runs any code.*--allow-pickle"):
        import_d4rl(path, progress=False)
    assert not (fresh_minari_root / "d4rl").exists()

    with caplog.at_level(logging.WARNING, logger="decision_seq"):
        import_d4rl(path, allow_pickle=True, progress=False)
    assert any("unpickling" in r.getMessage() and "runs any code" in r.getMessage() for r in caplog.records)
    eps = _episodes(HOPPER_ID)
    _assert_episode(eps[0], np.concatenate([_obs(range(0, 4)), _next_obs([3])]), range(0, 4), terminated=True)
    _assert_episode(eps[1], np.concatenate([_obs(range(4, 9)), _next_obs([8])]), range(4, 9), terminated=False)


def test_cli_pickle_without_flag_is_one_line(tmp_path, fresh_minari_root, capsys):
    path = tmp_path / "hopper-medium-replay-v2.pkl"
    path.write_bytes(pickle.dumps(_trajectories()))
    assert datasets_main(["import-d4rl", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("decision-seq datasets: error:") and "--allow-pickle" in err[-1]


@pytest.mark.parametrize(
    "kind, match",
    [
        ("text", "not an HDF5 file"),
        ("no-rewards", "missing rewards"),
        ("length", "inconsistent lengths"),
        ("dims", "observations have 22 features.*Hopper-v4 .* has 11"),
        ("next-obs", "next_observations has shape"),
    ],
)
def test_bad_files_are_named_and_explained(tmp_path, fresh_minari_root, kind, match):
    path = tmp_path / "hopper_medium-v2.hdf5"
    if kind == "text":
        path.write_text("observations,actions\n1,2\n")
    elif kind == "next-obs":
        write_d4rl(path)
        with h5py.File(path, "a") as f:
            del f["next_observations"]
            f["next_observations"] = np.zeros((N, 5), np.float32)
    else:
        write_d4rl(
            path,
            drop=("rewards",) if kind == "no-rewards" else (),
            rewards_len=N - 1 if kind == "length" else N,
            obs_dim=22 if kind == "dims" else OBS_DIM,
        )
    with pytest.raises(ValueError, match=match) as info:
        import_d4rl(path, progress=False)
    assert str(path) in str(info.value)
    assert not (fresh_minari_root / "d4rl" / "hopper" / "medium-v2").exists()


def test_read_reports_shapes(tmp_path):
    data = read_d4rl_hdf5(write_d4rl(tmp_path / "hopper_medium-v2.hdf5"))
    assert data.observations.shape == (N, OBS_DIM) and data.rewards.shape == (N,)
    assert data.metadata["algorithm"] == "SAC"


def test_existing_id_needs_overwrite(tmp_path, fresh_minari_root, capsys):
    first = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5")
    assert datasets_main(["import-d4rl", str(first), "--no-progress"]) == 0
    assert "imported" in capsys.readouterr().out

    # Different data under the same id: refused, the existing dataset is untouched.
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = write_d4rl(second_dir / "hopper_medium_replay-v2.hdf5", scale=10.0, next_observations=False)
    assert datasets_main(["import-d4rl", str(second), "--no-progress"]) == 2
    assert "already exists locally; pass --overwrite" in capsys.readouterr().err
    ds = minari.load_dataset(HOPPER_ID)
    assert ds.total_steps == N
    np.testing.assert_array_equal(next(ds.iterate_episodes()).rewards, _rewards(range(4)))

    assert datasets_main(["import-d4rl", str(second), "--overwrite", "--no-progress"]) == 0
    ds = minari.load_dataset(HOPPER_ID)
    assert ds.total_steps == 10
    np.testing.assert_array_equal(next(ds.iterate_episodes()).rewards, _rewards(range(4)) * 10)
    hidden = [p.name for p in fresh_minari_root.iterdir() if p.name.startswith(".")]
    assert hidden == []  # no temp dir left behind


def test_cli_imports_several_files_and_checks_all_ids_first(tmp_path, fresh_minari_root, capsys):
    a = write_d4rl(tmp_path / "hopper_medium-v2.hdf5")
    b = write_d4rl(tmp_path / "hopper_expert-v2.hdf5")
    assert datasets_main(["import-d4rl", str(a), "--no-progress"]) == 0
    # b would be new, but a exists: nothing is converted.
    assert datasets_main(["import-d4rl", str(b), str(a), "--no-progress"]) == 2
    assert not (fresh_minari_root / "d4rl" / "hopper" / "expert-v2").exists()
    assert datasets_main(["import-d4rl", str(b), str(a), "--overwrite", "--no-progress"]) == 0
    assert {"d4rl/hopper/medium-v2", "d4rl/hopper/expert-v2"} <= set(minari.list_local_datasets())
    assert datasets_main(["import-d4rl", str(a), str(b), "--id", "x/y-v0"]) == 2
    assert "single FILE" in capsys.readouterr().err
    assert datasets_main(["import-d4rl", str(tmp_path / "missing_hopper_medium-v2.hdf5")]) == 2


def test_pickle_with_wrong_layout(tmp_path, fresh_minari_root):
    path = tmp_path / "hopper-medium-v2.pkl"
    path.write_bytes(pickle.dumps({"observations": np.zeros((3, 11))}))
    with pytest.raises(ValueError, match="holds a dict; expected a list of dicts"):
        import_d4rl(path, allow_pickle=True, progress=False)
    trajectories = _trajectories()
    del trajectories[1]["rewards"]
    path.write_bytes(pickle.dumps(trajectories))
    with pytest.raises(ValueError, match="trajectory 1 lacks rewards"):
        import_d4rl(path, allow_pickle=True, progress=False)


def test_disk_full_mid_write_leaves_no_partial_dataset(tmp_path, fresh_minari_root, monkeypatch, capsys):
    """ENOSPC after Minari has written part of the new dataset: one line naming the disk error (exit 1),
    the existing dataset under the same id intact, and nothing half-written (or hidden) left in the root."""
    import errno

    first = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5")
    assert datasets_main(["import-d4rl", str(first), "--no-progress"]) == 0
    before = sorted(p.relative_to(fresh_minari_root) for p in fresh_minari_root.rglob("*"))
    capsys.readouterr()

    real_create = minari.create_dataset_from_buffers

    def create_then_disk_full(dataset_id, *args, **kwargs):
        dataset = real_create(dataset_id, *args, **kwargs)  # files written into the temp root
        raise OSError(errno.ENOSPC, "No space left on device", str(dataset.spec.data_path))

    monkeypatch.setattr(minari, "create_dataset_from_buffers", create_then_disk_full)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = write_d4rl(second_dir / "hopper_medium_replay-v2.hdf5", scale=10.0)
    assert datasets_main(["import-d4rl", str(second), "--overwrite", "--no-progress"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "disk error: No space left on device" in errors[0]
    assert "no partial dataset was left" in errors[0]

    assert sorted(p.relative_to(fresh_minari_root) for p in fresh_minari_root.rglob("*")) == before
    ds = minari.load_dataset(HOPPER_ID)
    assert ds.total_steps == N
    np.testing.assert_array_equal(next(ds.iterate_episodes()).rewards, _rewards(range(4)))


def test_eval_envs_keep_the_collection_models():
    """Each D4RL env evaluates on Gymnasium's v4: the v3 model (XML) and reward on the maintained bindings.
    v5 differs: Walker2d-v5's model sets the foot friction 1.9 where v3/v4 have 0.9 (docs/eval-envs.md)."""
    import gymnasium as gym

    for name, spec in D4RL_ENVS.items():
        assert spec.collection_env_id.endswith("-v3") and spec.eval_env_id == spec.collection_env_id[:-1] + "4", name
        env = gym.make(spec.eval_env_id)
        try:
            assert env.spec.max_episode_steps == 1000
        finally:
            env.close()
    v4, v5 = gym.make("Walker2d-v4").unwrapped, gym.make("Walker2d-v5").unwrapped
    foot = v4.model.geom("foot_geom").id
    assert v4.model.geom_friction[foot][0] == pytest.approx(0.9)
    assert v5.model.geom_friction[foot][0] == pytest.approx(1.9)
