"""Faults a long run meets: stop signals (preemption), NaN/inf losses, corrupt or foreign checkpoints,
bad inputs found once the run starts. CLI cases run `decision-seq` in subprocesses; the numerical ones drive
`Trainer` in-process with a tiny model and a sampler that injects NaN at chosen steps."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from decision_seq.training.trainer import NonFiniteError, Trainer, TrainingPreempted
from tests.helpers import TINY, cli, cli_env, main_in_process, read_results


# ------------------------------------------------------------------------------------ preemption
def test_sigterm_checkpoints_exits_75_and_relaunch_completes(pendulum_dataset_id, tmp_path, capsys, restore_logging):
    run = tmp_path / "preempt"
    args = [
        "train",
        "trainer.steps=400",
        "trainer.checkpoint_every=20",
        "eval.every=0",
        "logger=none",
        f"hydra.run.dir={run}",
        *TINY,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "decision_seq", *args],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ckpts = run / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpts.glob("step_*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, out
    assert "SIGTERM received: stopped at step" in out
    res = read_results(run)
    saved = torch.load(ckpts / "last.pt", weights_only=True)["step"]
    assert res["status"] == "preempted" and res["signal"] == "SIGTERM" and res["evaluations"] == []
    assert 0 < res["steps"] == saved < 400
    capsys.readouterr()
    assert main_in_process(*args) == 0  # the same output dir resumes from checkpoints/last.pt
    assert f"resumed from {ckpts / 'last.pt'} at step {saved}" in "".join(capsys.readouterr())
    res = read_results(run)
    assert res["status"] == "completed" and res["steps"] == 400


# -------------------------------------------------------------------------------- numerical faults
class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def loss(self, batch: dict) -> torch.Tensor:
        return (self.lin(batch["x"]) ** 2).mean() * batch["scale"]


class _NaNSampler:
    """Batches whose loss is NaN at the given 1-based steps."""

    def __init__(self, bad_steps=(), signal_at: int | None = None):
        self.i, self.bad_steps, self.signal_at = 0, set(bad_steps), signal_at

    def sample(self) -> dict:
        self.i += 1
        if self.i == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)
        scale = float("nan") if self.i in self.bad_steps else 1.0
        return {"x": torch.randn(4, 2), "scale": torch.tensor(scale)}

    def state_dict(self) -> dict:
        return {"i": self.i}

    def load_state_dict(self, state: dict) -> None:
        self.i = state["i"]


def _params_finite(model: nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_loss_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(
        _Linear(),
        _NaNSampler(bad_steps={7}),
        steps=20,
        warmup_steps=1,
        log_every=5,
        checkpoint_every=2,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(NonFiniteError, match="at step 7;") as err:
        trainer.fit()
    assert err.value.step == 7 and _params_finite(trainer.model)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["step"] == 6 and all(torch.isfinite(v).all() for v in last["model"].values())


def test_skip_nonfinite_counts_skips(tmp_path, caplog):
    torch.manual_seed(0)
    trainer = Trainer(
        _Linear(),
        _NaNSampler(bad_steps={3, 4, 9}),
        steps=12,
        warmup_steps=1,
        log_every=5,
        checkpoint_dir=tmp_path,
        progress=False,
        skip_nonfinite=True,
    )
    with caplog.at_level(logging.WARNING):
        trainer.fit()
    assert trainer.step == 12 and trainer.nonfinite_skips == 3 and _params_finite(trainer.model)
    assert "step 9: update skipped (3 so far)" in caplog.text
    assert torch.load(tmp_path / "last.pt", weights_only=True)["nonfinite_skips"] == 3


def test_nonfinite_cli_exit_code_and_results(pendulum_dataset_id, tmp_path):
    run = tmp_path / "nan"
    # lr=1e38 (finite, so accepted) throws the weights to about 1e37 at step 1: the loss overflows at step 2
    proc = cli(
        "train",
        "trainer.steps=6",
        "trainer.lr=1e38",
        "eval.every=0",
        "logger=none",
        f"hydra.run.dir={run}",
        *TINY,
        check=False,
    )
    assert proc.returncode == 3
    assert "non-finite training loss (nan) or gradient norm (nan) at step 2" in proc.stdout + proc.stderr
    res = read_results(run)
    assert res["status"] == "failed" and "at step 2" in res["error"]
    assert not (run / "checkpoints" / "last.pt").exists()


def test_signal_in_process_saves_and_restores_handlers(tmp_path):
    before = signal.getsignal(signal.SIGUSR1)
    trainer = Trainer(
        _Linear(), _NaNSampler(signal_at=5), steps=100, warmup_steps=1, checkpoint_dir=tmp_path, progress=False
    )
    with pytest.raises(TrainingPreempted, match="SIGUSR1 received: stopped at step 5"):
        trainer.fit()
    assert signal.getsignal(signal.SIGUSR1) is before
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 5


# ------------------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def dt_run(pendulum_dataset_id, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dt_run")
    cli("train", "trainer.steps=5", "eval.every=0", "logger=none", f"hydra.run.dir={run}", *TINY)
    return run


def _foreign(tmp: Path) -> str:
    torch.save({"weights": torch.zeros(3)}, tmp / "foreign.pt")
    return f"trainer.resume={tmp / 'foreign.pt'}"


def _truncated(tmp: Path, dt_run: Path) -> str:
    data = (dt_run / "checkpoints" / "last.pt").read_bytes()
    (tmp / "truncated.pt").write_bytes(data[: len(data) // 2])
    return f"trainer.resume={tmp / 'truncated.pt'}"


# Bad inputs found once the run starts (checkpoints); bad config values are refused before Hydra starts
# (tests/experiment/test_validation.py).
BAD_INPUTS = {
    "other backbone's checkpoint": (
        lambda tmp, run: f"model=dmamba trainer.resume={run}",
        "has backbone='transformer' but this run's model has backbone='mamba'",
    ),
    "other embed size's checkpoint": (
        lambda tmp, run: f"model.net.embed_dim=32 trainer.resume={run}",
        "has embed_dim=16 but this run's model has embed_dim=32",
    ),
    "foreign checkpoint": (lambda tmp, run: _foreign(tmp), "is not a decision-seq checkpoint"),
    "truncated checkpoint": (_truncated, "cannot be read safely"),
    "resume=true without checkpoint": (lambda tmp, run: "trainer.resume=true", "there is no checkpoint at"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_one_line_exit_2(case, dt_run, tmp_path, capsys, restore_logging):
    from decision_seq.cli import main

    make_override, message = BAD_INPUTS[case]
    overrides = make_override(tmp_path, dt_run).split()
    # In process (the real entry point, Hydra included): seconds instead of a subprocess's imports each.
    # TINY first: the case's overrides win (Hydra applies the last value of a key).
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "train",
                "trainer.steps=5",
                "eval.every=0",
                "logger=none",
                f"hydra.run.dir={tmp_path / 'run'}",
                *TINY,
                *overrides,
            ]
        )
    out = "".join(capsys.readouterr())
    assert exit_.value.code == 2, out
    assert message in out and "Traceback" not in out
    assert not (tmp_path / "run" / "results.json").exists()


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.02)
    assert predicate(), "the training process never reached the moment to kill it"


# `decision-seq ARGS` with every checkpoint write slowed down: each one pauses for 2 s between writing its
# temp file and renaming it over the target, so a test can SIGKILL the run in the middle of a write.
_SLOW_CHECKPOINT_WRITES = textwrap.dedent("""
    import sys
    import time

    import decision_seq.training.checkpoint as checkpoint
    from decision_seq.cli import main

    atomic_write = checkpoint.atomic_write


    def slow_atomic_write(path, write):
        def slow_write(tmp):
            write(tmp)
            time.sleep(2.0)

        atomic_write(path, slow_write)


    checkpoint.atomic_write = slow_atomic_write
    main(sys.argv[1:])
""")


# The write itself is the moment that matters most; the other two run with -m slow (~17 s each).
@pytest.mark.parametrize(
    "moment",
    [
        pytest.param("before_first_checkpoint", marks=pytest.mark.slow),
        pytest.param("between_checkpoints", marks=pytest.mark.slow),
        "during_checkpoint_write",
    ],
)
def test_sigkill_at_any_moment_then_relaunch_completes(moment, pendulum_dataset_id, tmp_path, capsys, restore_logging):
    """SIGKILL leaves the previous good checkpoint (or none) intact; relaunching the same dir finishes."""
    run = tmp_path / moment
    ckpts = run / "checkpoints"
    args = [
        "train",
        "trainer.steps=400",
        "trainer.checkpoint_every=20",
        "eval.every=0",
        "logger=none",
        f"hydra.run.dir={run}",
        *TINY,
    ]
    command = [sys.executable, "-m", "decision_seq"]
    if moment == "during_checkpoint_write":
        (tmp_path / "slow_checkpoints.py").write_text(_SLOW_CHECKPOINT_WRITES)
        command = [sys.executable, str(tmp_path / "slow_checkpoints.py")]
    proc = subprocess.Popen([*command, *args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if moment == "before_first_checkpoint":
            _wait_for(lambda: (run / ".hydra").is_dir())
        elif moment == "between_checkpoints":
            _wait_for(lambda: bool(list(ckpts.glob("step_*.pt"))))
        else:  # while last.pt is being replaced by the second checkpoint
            _wait_for(lambda: (ckpts / "last.pt").exists() and bool(list(ckpts.glob(".last.pt.tmp*"))))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "results.json").exists()
    if moment == "during_checkpoint_write":
        assert list(ckpts.glob(".last.pt.tmp*"))  # the torn write was never renamed over last.pt ...
        assert torch.load(ckpts / "last.pt", weights_only=True)["step"] == 20  # ... which is the previous good one
    saved = torch.load(ckpts / "last.pt", weights_only=True)["step"] if (ckpts / "last.pt").exists() else 0
    assert 0 <= saved < 400
    capsys.readouterr()
    assert main_in_process(*args) == 0  # same output dir: continues from checkpoints/last.pt, or starts over
    out = "".join(capsys.readouterr())
    if saved:
        assert f"resumed from {ckpts / 'last.pt'} at step {saved}" in out
    res = read_results(run)
    assert res["status"] == "completed" and res["steps"] == 400
    assert torch.load(ckpts / "last.pt", weights_only=True)["step"] == 400
    assert not list(ckpts.glob(".*.tmp*"))  # the torn temp file was cleaned up


@pytest.mark.slow  # ~15 s: a run, damage, a resumed run
def test_damaged_last_checkpoint_falls_back_to_newest_step_file(pendulum_dataset_id, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "trainer.steps=30",
        "trainer.checkpoint_every=10",
        "trainer.keep_checkpoints=3",
        "eval.every=0",
        "logger=none",
        f"hydra.run.dir={run}",
        *TINY,
    ]
    cli(*args[:1], "trainer.steps=20", *args[2:])  # stops at step 20: step_10, step_20 and last.pt
    ckpts = run / "checkpoints"
    last = ckpts / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # torn copy
    (ckpts / "step_00000020.pt").write_bytes(b"\0" * 64)  # and the newest periodic one unreadable too
    proc = cli(*args)
    out = proc.stdout + proc.stderr
    assert "cannot be read safely" in out and f"resuming from {ckpts / 'step_00000010.pt'} instead" in out
    assert f"resumed from {ckpts / 'step_00000010.pt'} at step 10" in out
    assert read_results(run)["status"] == "completed" and torch.load(last, weights_only=True)["step"] == 30
