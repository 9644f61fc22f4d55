"""Every bad config value is refused with one line and exit code 2 before any dataset is loaded or model
built: through the real entry point (`decision_seq.cli.main`, in process, so the data loader can be
watched), and faster than loading a dataset."""

from __future__ import annotations

import time

import pytest

import decision_seq.data.episodes as episodes_mod
import decision_seq.experiment.recipe as recipe
from decision_seq.cli import main
from decision_seq.experiment.validation import ConfigError, validate_train_config
from decision_seq.models.backbones import available_backbones
from tests.helpers import REPO, compose_train

MODEL_OPTIONS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))

# (overrides, what the one line must say): the list, then more.
BAD_VALUES = [
    (["trainer.steps=-1"], "trainer.steps=-1: must be an integer >= 1"),
    (["trainer.batch_size=0"], "trainer.batch_size=0: must be an integer >= 1"),
    (["model.context_len=0"], "model.context_len=0: must be an integer >= 1"),
    (["eval.episodes=0"], "eval.episodes=0: must be an integer >= 1"),
    (["dataset.targets=[]"], "dataset.targets=[]: give a non-empty list of target returns"),
    (
        ["dataset.targets=[abc]"],
        "Value 'abc' of type 'str' could not be converted to Float full_key: dataset.targets[0]",
    ),
    (["dataset.rtg_scale=0"], "dataset.rtg_scale=0.0: must be a finite number > 0"),
    (["trainer.lr=-1"], "trainer.lr=-1.0: must be a finite number > 0"),
    (["trainer.grad_clip=nan"], "trainer.grad_clip=nan: must be a finite number > 0"),
    (["trainer.device=tpu"], "trainer.device=tpu: valid devices: auto, cpu, cuda, cuda:N, mps"),
    (["eval.mode=recurrent", "model=dt"], "eval.mode=recurrent: backbone 'transformer' has no O(1) recurrent step"),
    (["model.net.backbone_kwargs.n_head=3"], "d_model=128 must be divisible by n_head=3"),
    (["eval.mode=sideways"], "eval.mode=sideways: valid values: window, recurrent"),
    (["eval.targets=[1,nan]"], "eval.targets=[1,nan]: every target must be a finite number"),
    (["eval.every=-5"], "eval.every=-5: must be an integer >= 0"),
    (["eval.num_envs=0"], "eval.num_envs=0: must be an integer >= 1 or null"),
    (["eval.max_steps=0"], "eval.max_steps=0: must be an integer >= 1 or null"),
    (["trainer.betas=[0.9,1.5]"], "trainer.betas[1]=1.5: must be a finite number >= 0 and < 1"),
    (["trainer.num_threads=0"], "trainer.num_threads=0: must be an integer >= 1 or null"),
    (["trainer.stop_signals=[SIGNOPE]"], "SIGNOPE is not a signal"),
    (["trainer.resume=/no/such/run"], "trainer.resume=/no/such/run: no such run dir or checkpoint file"),
    (["model.net.dropout=1.0"], "model.net.dropout=1.0: must be a finite number >= 0 and < 1"),
    (["model.net.backbone=nope"], f"model.net.backbone=nope: valid backbones: {', '.join(available_backbones())}"),
    (["model.net.backbone_kwargs.n_layer=0"], "n_layer must be an integer >= 1, got 0"),
    (["+model.net.backbone_kwargs.n_heads=2"], "model.net.backbone_kwargs.n_heads=2: not an argument of backbone"),
    (["logger.mode=sometimes"], "logger.mode=sometimes: valid values: online, offline, disabled"),
    (["seed=-1"], "seed=-1: must be an integer >= 0"),
    (["dataset.top_fraction=1.5"], "dataset.top_fraction=1.5: must be a finite number > 0 and <= 1"),
    (["trainer.steps=many"], "Value 'many' of type 'str' could not be converted to Integer"),
    (["trainer.stepz=5"], "Could not override 'trainer.stepz'"),
    (["model=nope"], f"Could not find 'model/nope' Available options in 'model': {' '.join(MODEL_OPTIONS)}"),
    (["-m", "model=dt,dmamba", "seed=0,-2"], "seed=-2: must be an integer >= 0"),
    (["-m", "experiment=smoke", "trainer.lr=0"], "trainer.lr=0.0: must be a finite number > 0"),
]


@pytest.fixture
def watched_loader(monkeypatch):
    """Record any dataset load (the recipe imports the loader by name, so patch both references)."""
    calls = []

    def loader(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a dataset was loaded for a config that is invalid")

    monkeypatch.setattr(episodes_mod, "load_minari_dataset", loader)
    monkeypatch.setattr(recipe, "load_episodes", loader)
    return calls


@pytest.fixture(scope="module")
def load_time(minari_root) -> float:
    """Seconds to load a 200-episode Pendulum dataset (the default set has 300), the median of 3: the bar an
    error must beat."""
    from decision_seq.datasets.builtin import build_pendulum_mixed

    build_pendulum_mixed("tests/pendulum-200-v0", num_episodes=200, seed=1, num_reference_episodes=2, progress=False)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        episodes_mod.episodes_from_minari(episodes_mod.load_minari_dataset("tests/pendulum-200-v0"))
        times.append(time.perf_counter() - t0)
    return sorted(times)[1]


def _fail_fast(args: list[str]) -> float:
    """Seconds until `decision-seq ARGS` exits (it must exit)."""
    t0 = time.perf_counter()
    with pytest.raises(SystemExit):
        main(args)
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def warm() -> None:
    """Imports, the backbone registry and Hydra's first composition are paid once per process, not per value."""
    with pytest.raises(SystemExit):
        main(["train", "model.net.backbone_kwargs.n_head=3"])


@pytest.mark.parametrize("overrides,message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_bad_value_is_one_line_exit_2_before_any_load(
    overrides, message, warm, watched_loader, load_time, tmp_path, capsys
):
    args = ["train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    capsys.readouterr()
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("decision-seq train: error: ") and message in err, err
    assert not watched_loader
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()  # Hydra never started
    # A sweep would load one dataset per job before a job's own check failed: its bar is that many loads.
    bar = (4 if "-m" in overrides else 1) * load_time
    if elapsed >= bar:  # the machine is shared: one retry before calling it slow
        elapsed = _fail_fast(args)
    assert elapsed < bar, f"the error took {elapsed:.2f}s, loading a dataset {load_time:.2f}s"


def test_output_dir_under_a_file_is_one_line(tmp_path, watched_loader, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["train", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert f"cannot create the output dir: {tmp_path / 'a_file'} is a file, not a directory" in err
    assert not watched_loader


def test_eval_bad_values(tmp_path, capsys):
    for overrides, message in [
        ([f"checkpoint={tmp_path / 'nope.pt'}"], "no such file or run dir"),
        ([f"checkpoint={tmp_path}", "eval.episodes=0"], "eval.episodes=0"),
        ([f"checkpoint={tmp_path}", "device=gpu9"], "device=gpu9: valid devices"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["eval", *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("decision-seq eval: error: ") and message in err, err


def test_every_shipped_config_is_valid():
    """The defaults and every preset pass the validation they are held to."""
    for overrides in (
        [],
        ["model=dmamba"],
        ["experiment=demo"],
        ["experiment=smoke"],
        ["experiment=dt-paper"],
        ["experiment=dmamba-paper"],
        ["model=dmamba", "eval.mode=recurrent"],
    ):
        validate_train_config(compose_train(overrides))


def test_several_bad_values_are_named_together():
    with pytest.raises(ConfigError) as err:
        validate_train_config(compose_train(["trainer.steps=0", "eval.episodes=0"]))
    assert str(err.value) == (
        "trainer.steps=0: must be an integer >= 1; eval.episodes=0: must be an integer >= 1 (episodes per target)"
    )


def test_explicit_eval_targets_are_checked_under_their_own_key():
    cfg = compose_train(["eval.targets=[]"])
    with pytest.raises(ConfigError, match=r"^eval\.targets=\[\]: give a non-empty list"):
        validate_train_config(cfg)
    validate_train_config(compose_train(["dataset.targets=null"]))  # null: derived from the data
