"""decision_seq.cli.datasets: list, info, download (offline), build delegation, help, Hydra dataset entries."""

from __future__ import annotations

import json
import sys

import h5py
import minari
import numpy as np
import pytest
import requests

from decision_seq import cli as cli_main
from decision_seq.cli.datasets import main as datasets_main
from decision_seq.data.episodes import load_episodes
from decision_seq.datasets import builtin
from decision_seq.datasets.builtin import CARTPOLE_DATASET_ID, build_cartpole_mixed
from decision_seq.datasets.minari_io import dataset_exists_locally

ERROR = "decision-seq datasets: error:"


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything calls Minari's remote."""

    def refuse(*args, **kwargs):
        raise AssertionError("the Minari remote was called")

    monkeypatch.setattr(minari, "list_remote_datasets", refuse)
    monkeypatch.setattr(minari, "download_dataset", refuse)


def test_list_shows_local_datasets_and_the_catalog(pendulum_dataset_id, no_network, capsys):
    assert datasets_main(["list"]) == 0
    out = capsys.readouterr().out
    meta = minari.list_local_datasets()[pendulum_dataset_id]
    local_row = next(line for line in out.splitlines() if pendulum_dataset_id in line)
    assert str(meta["total_episodes"]) in local_row and str(meta["total_steps"]) in local_row
    assert "Pendulum-v1" in local_row and "default" in local_row  # eval env, `dataset=` name
    for expected in (
        "decision-seq/cartpole/mixed-v0",
        "mujoco/walker2d/expert-v0",
        "see remote metadata",
        "minari-walker2d-expert",
        "decision-seq/halfcheetah/medium-replay-v0",
        "halfcheetah-medium-replay",
        "d4rl/hopper/medium-expert-v2",
        "-20.272305 / 3234.3",
        "d4rl-hopper-medium-expert",
    ):
        assert expected in out, expected
    # The built-in row in the catalog says it is built and shows its measured reference scores.
    catalog_row = [line for line in out.splitlines() if pendulum_dataset_id in line][-1]
    assert " yes " in catalog_row and format(meta["ref_min_score"], ".10g") in catalog_row


def test_list_remote_offline_is_one_clear_line(monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Max retries exceeded (Failed to resolve 'huggingface.co')")

    monkeypatch.setattr(minari, "list_remote_datasets", offline)
    assert datasets_main(["list", "--remote"]) == 2
    err = capsys.readouterr().err
    assert f"{ERROR} could not reach the Minari remote (offline?)" in err and "huggingface.co" in err


def test_info_matches_episode_summary(pendulum_dataset_id, no_network, capsys):
    assert datasets_main(["info", pendulum_dataset_id, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    summary = load_episodes(pendulum_dataset_id).summary()
    assert {k: info[k] for k in summary} == summary
    assert info["eval_env"] == "Pendulum-v1" and info["author"] == ["decision-seq"]
    assert info["size_bytes"] > 0 and info["hydra_dataset"] == ["default"]

    assert datasets_main(["info", pendulum_dataset_id]) == 0
    out = capsys.readouterr().out
    for text in (
        f"{summary['return_min']:.2f} / {summary['return_mean']:.2f} / {summary['return_max']:.2f}",
        f"{summary['return_std']:.2f}",
        f"{summary['normalized_score_mean']:.2f}",
        str(summary["episodes"]),
        str(summary["steps"]),
        "Box(",
        "Pendulum-v1",
    ):
        assert text in out, text


def test_info_unknown_and_not_built(fresh_minari_root, no_network, capsys):
    assert datasets_main(["info", "nobody/nothing-v0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{ERROR} unknown dataset id 'nobody/nothing-v0'") and "datasets list" in err
    assert len(err.splitlines()) == 1

    assert datasets_main(["info", CARTPOLE_DATASET_ID]) == 2
    err = capsys.readouterr().err
    assert "not built yet; it is built on first use by `decision-seq train`" in err
    assert not dataset_exists_locally(CARTPOLE_DATASET_ID)  # info never builds

    assert datasets_main(["info", "d4rl/hopper/medium-v2"]) == 2
    assert "import-d4rl" in capsys.readouterr().err


def test_download_offline_gives_clear_error(fresh_minari_root, monkeypatch, capsys):
    dataset_id = "mujoco/hopper/medium-v0"

    def offline(dataset_id, force_download=False):
        # What Minari's HF client raises without network, after it may have created the folder.
        (fresh_minari_root / dataset_id / "data").mkdir(parents=True)
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded"
        )

    monkeypatch.setattr(minari, "download_dataset", offline)
    assert datasets_main(["download", dataset_id]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"{ERROR} could not reach the Minari remote (offline?): ConnectionError: "
        f"HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded"
    )
    assert not dataset_exists_locally(dataset_id)  # the partial download was removed

    def no_client(dataset_id, force_download=False):
        raise ImportError('huggingface_hub is not installed. Please install it using `pip install "minari[hf]"`')

    monkeypatch.setattr(minari, "download_dataset", no_client)
    assert datasets_main(["download", dataset_id]) == 2
    assert "minari[hf]" in capsys.readouterr().err

    def unknown(dataset_id, force_download=False):
        raise ValueError(f"Couldn't find any version for dataset {dataset_id} in the remote Farama server.")

    monkeypatch.setattr(minari, "download_dataset", unknown)
    assert datasets_main(["download", "mujoco/ant/nothing-v0"]) == 2
    assert "Couldn't find any version" in capsys.readouterr().err


def test_download_builds_builtins_and_refuses_local_only_ids(fresh_minari_root, monkeypatch, no_network, capsys):
    small = lambda dataset_id: build_cartpole_mixed(  # noqa: E731
        dataset_id, num_episodes=3, num_reference_episodes=2, progress=False
    )
    monkeypatch.setitem(builtin.BUILTIN, CARTPOLE_DATASET_ID, small)
    assert datasets_main(["download", CARTPOLE_DATASET_ID]) == 0
    assert dataset_exists_locally(CARTPOLE_DATASET_ID)
    assert "built" in capsys.readouterr().out
    assert datasets_main(["download", CARTPOLE_DATASET_ID]) == 0
    assert "already built" in capsys.readouterr().out

    assert datasets_main(["download", "d4rl/walker2d/medium-v2"]) == 2
    assert "import-d4rl" in capsys.readouterr().err
    assert datasets_main(["download", "decision-seq/hopper/medium-v0"]) == 2
    assert "datasets build" in capsys.readouterr().err


def test_help_texts(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["datasets", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("list", "info", "download", "build", "import-d4rl", "examples:"):
        assert cmd in out
    for cmd in ("list", "info", "download", "import-d4rl"):
        assert datasets_main([cmd, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out
    assert datasets_main([]) == 0
    assert datasets_main(["frobnicate"]) == 2


def test_broken_sac_build_does_not_break_other_commands(monkeypatch, pendulum_dataset_id, no_network, capsys):
    import decision_seq.cli

    # Importing the SAC build now raises ImportError, even where an earlier test imported it.
    for name in ["decision_seq.datasets.sac", *[m for m in sys.modules if m.startswith("decision_seq.datasets.sac.")]]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "decision_seq.cli.build", raising=False)  # imported afresh by `build`
    monkeypatch.delattr(decision_seq.cli, "build", raising=False)
    assert datasets_main(["list"]) == 0
    capsys.readouterr()
    assert datasets_main(["build", "hopper"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{ERROR} the SAC dataset build (decision_seq.datasets.sac) cannot be imported")


def test_build_delegates_to_the_sac_build(capsys):
    assert datasets_main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    assert "build" in out and "--train-steps" in out and "--levels" in out


def test_train_resolves_hydra_dataset_entries(capsys, restore_logging):
    from decision_seq.cli import main

    main(["train", "dataset=d4rl-hopper-medium-replay", "logger=none", "--cfg", "job"])  # in process
    out = capsys.readouterr().out
    assert "id: d4rl/hopper/medium-replay-v2" in out
    assert "- 3600" in out and "rtg_scale: 1000" in out

    with pytest.raises(SystemExit) as exit_:  # Hydra's --help exits 0
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("hopper-medium-replay", "d4rl-walker2d-medium-expert", "halfcheetah-random"):
        assert name in out


def test_import_then_info_and_list(tmp_path, fresh_minari_root, no_network, capsys):
    """An imported D4RL file shows up in list (with its `dataset=` name) and info."""
    path = tmp_path / "walker2d_medium-v2.hdf5"
    n = 6
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((n, 17), np.float32)
        f["actions"] = np.zeros((n, 6), np.float32)
        f["rewards"] = np.arange(n, dtype=np.float32)
        f["terminals"] = np.arange(n) == 2
        f["timeouts"] = np.zeros(n, bool)
    assert datasets_main(["import-d4rl", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    assert datasets_main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "d4rl/walker2d/medium-v2" in line)
    assert "d4rl-walker2d-medium" in row and "Walker2d-v4" in row and "1.629008 / 4592.3" in row
    assert datasets_main(["info", "d4rl/walker2d/medium-v2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # rows 0-2 end on a terminal; rows 3-5 are a partial episode that loses its last transition (no next obs)
    assert info["episodes"] == 2 and info["steps"] == 5 and info["eval_env"] == "Walker2d-v4"
    assert (info["return_min"], info["return_max"]) == (0 + 1 + 2, 3 + 4)


def test_info_on_a_corrupt_dataset_is_one_line(fresh_minari_root, make_minari_dataset, capsys):
    make_minari_dataset("tests/broken-v0", [[1.0, 2.0], [3.0]])
    data_file = next((fresh_minari_root / "tests" / "broken-v0" / "data").glob("*.hdf5"))
    data_file.write_bytes(data_file.read_bytes()[:200])  # truncated
    assert datasets_main(["info", "tests/broken-v0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(ERROR) and "corrupt" in err and len(err.splitlines()) == 1
