"""Trainer: the optimization loop shared by every backbone.

DT recipe (Chen et al. 2021): AdamW, linear warmup, grad-norm clipping, action MSE (cross-entropy for
discrete actions). Learning-rate schedules: `constant` (the DT MuJoCo code: linear warmup by steps, then
constant) or `cosine_tokens` (the DT Atari code's minGPT schedule, by action tokens; `token_lr_multiplier`).
Adds bf16 autocast and `torch.compile` switches, periodic evaluation, periodic atomic checkpoints holding
everything needed to resume exactly (the token count included), and throughput metrics.

Faults: a stop signal (SIGTERM, SIGINT, SIGUSR1 by default) only sets a flag; at the next step
boundary the trainer writes checkpoints/last.pt and raises `TrainingPreempted`. A non-finite loss or
gradient norm raises `NonFiniteError` naming the step (the last checkpoint stays the last good one),
or, with `skip_nonfinite=True`, drops that update and counts it.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from decision_seq.training.checkpoint import copy_checkpoint, rng_state, save_checkpoint, set_rng_state

log = logging.getLogger(__name__)

DEFAULT_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
LR_SCHEDULES = ("constant", "cosine_tokens")


class TrainingPreempted(Exception):
    """A stop signal arrived; training stopped at a step boundary after saving `checkpoint`."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signal_name, self.step, self.checkpoint = signal.Signals(signum).name, step, checkpoint
        where = f"saved {checkpoint}" if checkpoint is not None else "no checkpoint dir, nothing saved"
        super().__init__(
            f"{self.signal_name} received: stopped at step {step} ({where}); relaunch the same run to continue"
        )


class NonFiniteError(FloatingPointError):
    """The loss or gradient norm was NaN/inf at `step`; the model was not updated with it."""

    def __init__(self, step: int, loss: float, grad_norm: float):
        self.step = step
        super().__init__(
            f"non-finite training loss ({loss}) or gradient norm ({grad_norm}) at step {step}; "
            "the last checkpoint was kept, lower trainer.lr or set trainer.skip_nonfinite=true"
        )


def signal_numbers(names) -> list[int]:
    """['SIGTERM', 'USR1', 15] -> signal numbers; an unknown name lists the valid ones."""
    out = []
    for name in names:
        if isinstance(name, int):
            out.append(int(signal.Signals(name)))
            continue
        key = str(name).upper()
        key = key if key.startswith("SIG") else f"SIG{key}"
        if key not in signal.Signals.__members__:
            raise ValueError(
                f"unknown signal {name!r} in trainer.stop_signals; valid e.g. SIGTERM, SIGINT, SIGUSR1, SIGUSR2"
            )
        out.append(int(signal.Signals[key]))
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay only weight matrices of Linear/Conv layers.

    Departure from the official DT, which decays every parameter: as in minGPT and mamba_ssm, no decay
    on biases, norms, embeddings, and parameters flagged `_no_weight_decay` (Mamba's A_log and D).
    """
    no_decay: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if (
                name.endswith("bias")
                or isinstance(module, (nn.LayerNorm, nn.Embedding))
                or getattr(p, "_no_weight_decay", False)
            ):
                no_decay.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


def token_lr_multiplier(tokens: int, warmup_tokens: int, final_tokens: int) -> float:
    """The DT Atari code's learning-rate multiplier (minGPT `trainer_atari.py`, `lr_decay=True`) after
    `tokens` action targets: linear warmup over `warmup_tokens`, then a cosine from 1 towards 0 reached at
    `final_tokens`, floored at 0.1.

    Departure: progress is capped at 1, so past `final_tokens` the multiplier stays 0.1; minGPT's cosine
    would rise again there (the official runs stop at about 5/6 of `final_tokens`, so they never get there).
    """
    if tokens < warmup_tokens:
        return tokens / max(1, warmup_tokens)
    progress = min((tokens - warmup_tokens) / max(1, final_tokens - warmup_tokens), 1.0)
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


def schedule_problem(lr_schedule: str, warmup_tokens: int, final_tokens: int) -> str | None:
    """What is wrong with a schedule's settings (the config check and the Trainer share it), or None."""
    if lr_schedule not in LR_SCHEDULES:
        return f"trainer.lr_schedule={lr_schedule}: valid values: {', '.join(LR_SCHEDULES)}"
    for name, value in (("warmup_tokens", warmup_tokens), ("final_tokens", final_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"trainer.{name}={value}: must be an integer >= 0"
    if lr_schedule == "cosine_tokens" and final_tokens <= warmup_tokens:
        return (
            f"trainer.final_tokens={final_tokens}: must be > trainer.warmup_tokens={warmup_tokens} with "
            "lr_schedule=cosine_tokens (the cosine runs from warmup_tokens to final_tokens)"
        )
    return None


def device_problem(device: str) -> str | None:
    """What is wrong with a device name (auto, cpu, cuda, cuda:N or mps; CUDA only where this machine has
    it), or None. The config check and `resolve_device` share it."""
    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return "valid devices: auto, cpu, cuda, cuda:N, mps"
    if dev.type not in ("cpu", "cuda", "mps"):
        return "valid devices: auto, cpu, cuda, cuda:N, mps"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine; use auto or cpu"
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else must pass `device_problem`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    problem = device_problem(device)
    if problem is not None:
        raise RuntimeError(f"device {device!r}: {problem}")
    return torch.device(device)


def status_line(step: int, steps: int, loss: float, steps_per_sec: float) -> str:
    """The plain progress line of logs that are not a terminal: step, loss, speed and time left."""
    left = (steps - step) / steps_per_sec if steps_per_sec > 0 else float("inf")
    eta = "?" if not math.isfinite(left) else time.strftime("%H:%M:%S", time.gmtime(left)) if left < 86400 else ">1 day"
    return (
        f"step {step}/{steps} ({100 * step / steps:.0f}%): loss {loss:.4f}, {steps_per_sec:.1f} steps/s, "
        f"ETA {eta} (training only, evaluations add to it)"
    )


class Trainer:
    """Owns model, optimizer, schedule and sampler stream; `fit()` runs to `steps` total."""

    def __init__(
        self,
        model: nn.Module,
        sampler,
        *,
        steps: int,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 10_000,
        lr_schedule: str = "constant",
        warmup_tokens: int = 0,
        final_tokens: int = 0,
        grad_clip: float = 0.25,
        device: torch.device | str = "cpu",
        bf16: bool = False,
        compile: bool = False,
        log_every: int = 100,
        eval_every: int = 0,
        checkpoint_every: int = 0,
        checkpoint_dir: Path | None = None,
        keep_checkpoints: int = 2,
        logger=None,
        evaluate: Callable[[int], dict] | None = None,
        checkpoint_extra: dict | None = None,
        progress: bool = True,
        status_every_sec: float = 30.0,
        skip_nonfinite: bool = False,
        stop_signals=DEFAULT_STOP_SIGNALS,
    ):
        if steps < 1:
            raise ValueError(f"trainer.steps must be >= 1, got {steps}")
        # clip_grad_norm_ with a NaN/inf/negative max norm silently scales every gradient to NaN or by -1.
        if not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"trainer.grad_clip must be a finite number > 0 (the DT paper uses 0.25), got {grad_clip}")
        for name, value in (("lr", lr), ("weight_decay", weight_decay)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"trainer.{name} must be a finite number >= 0, got {value}")
        problem = schedule_problem(lr_schedule, warmup_tokens, final_tokens)
        if problem is not None:
            raise ValueError(problem)
        self.model, self.sampler = model, sampler
        self.steps, self.grad_clip = steps, grad_clip
        self.device = torch.device(device)
        self.bf16, self.log_every, self.eval_every = bf16, max(1, log_every), eval_every
        self.checkpoint_every, self.checkpoint_dir = checkpoint_every, checkpoint_dir
        self.keep_checkpoints = keep_checkpoints
        self.logger, self.evaluate, self.progress = logger, evaluate, progress
        # Without a live bar (progress off, or a log file / SLURM / CI rather than a terminal) a plain status
        # line is logged at least every `status_every_sec` seconds, so a run is never silent for minutes.
        self.status_every_sec = status_every_sec
        self.checkpoint_extra = checkpoint_extra or {}
        self.skip_nonfinite = skip_nonfinite
        self.stop_signals = signal_numbers(stop_signals)
        self.stop_requested: int | None = None  # signal number, set by the handler
        self.nonfinite_skips = 0
        self._bad_step = self._bad_stats = None  # CUDA fail mode: device-side first-bad-step flag (see _train_step)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, fused=fused)
        # Action targets (non-padding steps) trained on so far: the clock of the cosine_tokens schedule.
        self.tokens = 0
        self.lr_schedule = lr_schedule
        if lr_schedule == "constant":
            warmup = max(1, warmup_steps)
            # Linear warmup from lr/warmup to lr, then constant, as in the official DT.
            multiplier = lambda s: min((s + 1) / warmup, 1.0)  # noqa: E731
        else:
            # The DT Atari code sets the lr after each update from the tokens counted so far, so update n+1
            # uses the multiplier of the tokens of updates 1..n: LambdaLR does the same at scheduler.step().
            # Departure: the first update uses multiplier(0) = 0 (minGPT's first update runs at the full lr,
            # the optimizer's initial value, before its schedule is first applied). warmup_steps is unused.
            multiplier = lambda _: token_lr_multiplier(self.tokens, warmup_tokens, final_tokens)  # noqa: E731
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, multiplier)
        self.loss_fn = torch.compile(model.loss) if compile else model.loss
        self.step = 0
        self.evaluations: list[dict] = []
        self.train_time = 0.0  # seconds in optimization steps only (no eval, no checkpoints)
        self.sample_time = 0.0

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "step": self.step,
            "tokens": self.tokens,
            "rng": rng_state(),
            "evaluations": self.evaluations,
            "train_time": self.train_time,
            "nonfinite_skips": self.nonfinite_skips,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["step"])
        self.tokens = int(ckpt.get("tokens", 0))  # absent in checkpoints written before lr_schedule existed
        self.evaluations = list(ckpt.get("evaluations", []))
        self.train_time = float(ckpt.get("train_time", 0.0))
        self.nonfinite_skips = int(ckpt.get("nonfinite_skips", 0))

    def save(self, name: str | None = None) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        path = Path(self.checkpoint_dir) / (name or f"step_{self.step:08d}.pt")
        save_checkpoint(path, **self.state_dict(), **self.checkpoint_extra)
        if path.name != "last.pt":
            copy_checkpoint(path, Path(self.checkpoint_dir) / "last.pt")
        self._prune()
        return path

    def _prune(self) -> None:
        old = sorted(Path(self.checkpoint_dir).glob("step_*.pt"))[: -self.keep_checkpoints or None]
        for p in old:
            p.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------ loop
    def _train_step(self) -> torch.Tensor | None:
        """One update; returns (loss, grad-norm) on the device, or None when a non-finite update was skipped.

        Finiteness is checked before `optimizer.step()`, so a NaN never reaches the weights. On CPU (and
        with skip_nonfinite on CUDA, which needs the answer now) this is a per-step `.item()`: free on
        CPU, one host sync on CUDA. Otherwise on CUDA the check is deferred: a device-side flag records
        the first bad step without a sync and `_check_deferred` reads it at log intervals and before
        every checkpoint/evaluation, so a poisoned model is never saved.
        """
        t0 = time.perf_counter()
        batch = self.sampler.sample()
        self.sample_time += time.perf_counter() - t0
        if self.lr_schedule == "cosine_tokens":
            # The DT Atari code counts the action targets that are not padding (`(y >= 0).sum()`). One host
            # sync per step on CUDA, paid only by this schedule.
            self.tokens += int(batch["mask"].sum())
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        stats = torch.stack((loss.detach().float(), grad_norm.detach().float()))  # (2,)
        finite = torch.isfinite(stats).all()
        if self.device.type != "cuda" or self.skip_nonfinite:
            if not finite.item():
                if not self.skip_nonfinite:
                    loss_v, gnorm_v = stats.tolist()
                    raise NonFiniteError(self.step + 1, loss_v, gnorm_v)
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()  # the step counts (schedule and step stay aligned), the update does not
                self.nonfinite_skips += 1
                log.warning(
                    "non-finite loss or gradient norm at step %d: update skipped (%d so far)",
                    self.step + 1,
                    self.nonfinite_skips,
                )
                return None
        else:
            # first bad step (1-based), 0 while all finite; no host sync
            self._bad_step = torch.where(
                finite | (self._bad_step > 0), self._bad_step, torch.full_like(self._bad_step, self.step + 1)
            )
            self._bad_stats = torch.where(finite | (self._bad_step != self.step + 1), self._bad_stats, stats)
        self.optimizer.step()
        self.scheduler.step()
        return stats

    def _check_deferred(self) -> None:
        """CUDA fail mode: raise if the device-side flag saw a non-finite step (one host sync)."""
        if self._bad_step is None:
            return
        bad = int(self._bad_step.item())
        if bad:
            loss_v, gnorm_v = self._bad_stats.tolist()
            raise NonFiniteError(bad, loss_v, gnorm_v)

    # --------------------------------------------------------------------------------------- signals
    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        self.stop_requested = signum
        # no I/O or logging here: a handler can run in the middle of anything; fit() reports it

    def _install_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal.signal only works in the main thread; elsewhere the caller owns signals
        previous = {}
        for signum in self.stop_signals:
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _run_eval(self) -> None:
        if self.evaluate is None:
            return
        self.model.eval()
        record = self.evaluate(self.step)
        self.model.train()
        self.evaluations.append(record)
        if self.logger is not None:
            self.logger.log(record.get("metrics", {}), step=self.step)

    def fit(self) -> list[dict]:
        """Train to `steps`; raises TrainingPreempted (after saving) on a stop signal, NonFiniteError on NaN/inf."""
        self.model.train()
        self.stop_requested = None
        deferred = self.device.type == "cuda" and not self.skip_nonfinite
        self._bad_step = torch.zeros((), dtype=torch.long, device=self.device) if deferred else None
        self._bad_stats = torch.zeros(2, device=self.device) if deferred else None
        previous = self._install_handlers()
        live_bar = self.progress and sys.stderr.isatty()
        bar = tqdm(
            total=self.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True, disable=not live_bar
        )
        last_status = time.perf_counter()
        acc = torch.zeros(2, device=self.device)  # running (loss, grad-norm) sums: no host sync per step
        n_acc, window_t0, window_train = 0, time.perf_counter(), self.train_time
        try:
            while self.step < self.steps:
                t0 = time.perf_counter()
                stats = self._train_step()
                self.step += 1
                if stats is not None:
                    acc += stats
                    n_acc += 1
                if self.device.type == "cuda" and self.step % self.log_every == 0:
                    torch.cuda.synchronize()
                self.train_time += time.perf_counter() - t0
                bar.update(1)
                status_due = not live_bar and time.perf_counter() - last_status >= self.status_every_sec
                if self.step % self.log_every == 0 or self.step == self.steps or status_due:
                    self._check_deferred()
                    loss, gnorm = (acc / max(n_acc, 1)).tolist() if n_acc else (float("nan"), float("nan"))
                    sps = n_acc / max(self.train_time - window_train, 1e-9)
                    metrics = {
                        "train/loss": loss,
                        "train/grad_norm": gnorm,
                        "train/lr": self.scheduler.get_last_lr()[0],
                        "train/nonfinite_skips": self.nonfinite_skips,
                        "perf/steps_per_sec": sps,
                        "perf/sample_fraction": self.sample_time / max(self.train_time, 1e-9),
                        "perf/wall_sec": time.perf_counter() - window_t0,
                    }
                    bar.set_postfix(loss=f"{loss:.4f}", sps=f"{sps:.1f}", refresh=False)
                    if status_due or (not live_bar and self.step == self.steps):
                        log.info("%s", status_line(self.step, self.steps, loss, sps))
                        last_status = time.perf_counter()
                    if self.logger is not None:
                        self.logger.log(metrics, step=self.step)
                    acc.zero_()
                    n_acc, window_train = 0, self.train_time
                if self.eval_every and self.step % self.eval_every == 0 and self.step < self.steps:
                    self._check_deferred()
                    self._run_eval()
                saved = False
                if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < self.steps:
                    self._check_deferred()
                    self.save()
                    saved = True
                if self.stop_requested is not None and self.step < self.steps:
                    self._check_deferred()  # never checkpoint a poisoned model, even when preempted
                    path = None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / "last.pt"
                    if not saved:
                        self.save()
                    raise TrainingPreempted(self.stop_requested, self.step, path)
            self._check_deferred()
            if not self.evaluations or self.evaluations[-1].get("step") != self.step:
                self._run_eval()  # the final evaluation, at the last step (not repeated on a resumed finished run)
            self.save()
        finally:
            bar.close()
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        return self.evaluations
