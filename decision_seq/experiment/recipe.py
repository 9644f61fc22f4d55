"""The training recipe: seed -> data -> model -> Trainer -> evaluate -> results.json.

`run_training` takes the composed Hydra config (the edge); everything it calls takes explicit
arguments. `run_eval` evaluates a saved checkpoint with the same machinery.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from decision_seq.cli.console import fmt_num
from decision_seq.data.episodes import EpisodeSet, load_episodes
from decision_seq.data.sampler import SequenceSampler
from decision_seq.experiment.evaluate import check_targets, default_targets, evaluate_model
from decision_seq.experiment.report import print_results_table
from decision_seq.experiment.resources import job_resources, return_freed_memory
from decision_seq.experiment.results import (
    RESULTS_FILE,
    dataset_build,
    eval_score,
    git_commit,
    summarize,
    versions,
    write_json_atomic,
)
from decision_seq.experiment.resume import check_compatible, load_resume_checkpoint, resume_path
from decision_seq.experiment.tracking import make_logger
from decision_seq.experiment.validation import validate_eval_config, validate_train_config
from decision_seq.training.checkpoint import CheckpointError, load_checkpoint, remove_stale_temp_files
from decision_seq.training.trainer import NonFiniteError, Trainer, TrainingPreempted, resolve_device

log = logging.getLogger("decision_seq")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_kwargs_for(net_cfg: dict, episodes: EpisodeSet, max_ep_len: int) -> dict:
    """Constructor arguments of TrajectoryModel: the config's plus sizes read from the dataset."""
    kwargs = {k: v for k, v in net_cfg.items() if k != "_target_"}
    kwargs.update(
        state_dim=episodes.state_dim, action_dim=episodes.action_dim, discrete=episodes.discrete, max_ep_len=max_ep_len
    )
    if episodes.is_image:
        kwargs["obs_shape"] = list(episodes.obs_shape)  # (84, 84) frames -> the image encoder
    if not episodes.discrete:
        kwargs.update(
            action_low=[float(x) for x in episodes.action_low], action_high=[float(x) for x in episodes.action_high]
        )
    return kwargs


def _eval_env_id(episodes: EpisodeSet) -> str | None:
    """The evaluation env's id (e.g. Hopper-v4), recorded in results.json: runs on different envs never pool."""
    return episodes.eval_env_spec.id if episodes.eval_env_spec is not None else None


def _env_limit(episodes: EpisodeSet) -> int | None:
    env = episodes.make_eval_env()
    try:
        return env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()


def run_training(cfg: DictConfig, out_dir: Path) -> dict:
    validate_train_config(cfg)  # before any data is loaded (the CLI also checks before Hydra starts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    device_name, num_threads = job_resources(cfg.trainer.device, cfg.trainer.num_threads)
    device = resolve_device(device_name)
    if num_threads:
        torch.set_num_threads(int(num_threads))

    # Seed
    seed_everything(cfg.seed)

    # Load data
    episodes = load_episodes(cfg.dataset.id, download=cfg.dataset.download)
    if episodes.is_image and return_freed_memory():  # Atari: memory, not speed, is the constraint on a CPU
        log.debug("image dataset: freed blocks of 1 MiB or more go back to the system (mallopt)")
    data_summary = episodes.summary()
    log.info(
        "dataset %s: %d episodes, %d steps, mean return %s, mean normalized score %s",
        cfg.dataset.id,
        episodes.num_episodes,
        episodes.num_steps,
        fmt_num(data_summary["return_mean"]),
        fmt_num(data_summary.get("normalized_score_mean")),
    )
    targets = list(cfg.eval.targets) if cfg.eval.targets is not None else default_targets(episodes)
    for warning in check_targets(targets, episodes):
        log.warning("%s", warning)
    max_ep_len = max(episodes.max_episode_length, _env_limit(episodes) or 0)
    K = int(cfg.model.context_len)
    train_episodes = episodes
    if cfg.dataset.top_fraction is not None:  # filtered %BC: the best episodes only (DT paper, Table 3)
        train_episodes = episodes.top_fraction(cfg.dataset.top_fraction)
        log.info(
            "training on the best %d of %d episodes (%d of %d steps; dataset.top_fraction=%g)",
            train_episodes.num_episodes,
            episodes.num_episodes,
            train_episodes.num_steps,
            episodes.num_steps,
            cfg.dataset.top_fraction,
        )
    sampler = SequenceSampler(
        train_episodes,
        context_len=K,
        batch_size=cfg.trainer.batch_size,
        rtg_scale=cfg.dataset.rtg_scale,
        max_ep_len=max_ep_len,
        device=device,
        seed=cfg.seed,
    )

    # Create model
    model_kwargs = model_kwargs_for(OmegaConf.to_container(cfg.model.net, resolve=True), episodes, max_ep_len)
    model_target = cfg.model.net._target_
    model = hydra.utils.get_class(model_target)(**model_kwargs).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model %s (%s backbone): %.2fM parameters, device %s",
        cfg.model.name,
        model.backbone_name,
        n_params / 1e6,
        device,
    )

    # Create logger
    config = OmegaConf.to_container(cfg, resolve=True)
    run_name = f"{cfg.model.name}_{cfg.dataset.name}_seed{cfg.seed}"
    logger_kwargs = {k: v for k, v in config["logger"].items() if k != "kind"}
    if cfg.logger.kind == "wandb":
        logger_kwargs.update(
            config=config,
            out_dir=out_dir,
            name=run_name,
            tags=list(cfg.logger.tags or []) + [cfg.model.name, cfg.dataset.name],
        )
    logger = make_logger(cfg.logger.kind, **logger_kwargs)

    protocol = {
        "targets": targets,
        "episodes": int(cfg.eval.episodes),
        "mode": cfg.eval.mode,
        "eval_every": int(cfg.eval.every),
        "steps": int(cfg.trainer.steps),
        "context_len": K,
        "rtg_scale": float(cfg.dataset.rtg_scale),
        "dataset_id": cfg.dataset.id,
        "top_fraction": cfg.dataset.top_fraction,
        "discrete_action": cfg.eval.discrete_action if episodes.discrete else None,
        "eval_max_steps": cfg.eval.max_steps,
        "eval_env": _eval_env_id(episodes),
        "dataset_build": dataset_build(data_summary),
        "final": "last evaluation (the DT paper's protocol)",
        "best": "max over evaluations during training (the Decision Mamba paper's protocol)",
        "score": "mean normalized score (0-100) of the best target",
    }
    results = {
        "status": "running",
        "config": config,
        "versions": versions(),
        "git_commit": git_commit(),
        "dataset": {"id": cfg.dataset.id, "name": cfg.dataset.name, **data_summary},
        "backbone": model.backbone_name,
        "model": cfg.model.name,
        "seed": int(cfg.seed),
        "n_params": n_params,
        "device": str(device),
        "protocol": protocol,
        "output_dir": str(out_dir),
    }

    def evaluate(step: int) -> dict:
        t0 = time.perf_counter()
        record = evaluate_model(
            model,
            episodes,
            step,
            eval_cfg=cfg.eval,
            targets=targets,
            context_len=K,
            obs_mean=episodes.obs_mean,
            obs_std=episodes.obs_std,
            rtg_scale=cfg.dataset.rtg_scale,
            seed=cfg.seed,
            device=device,
        )
        record["wall_sec"] = time.perf_counter() - t0
        record["metrics"]["perf/eval_sec"] = record["wall_sec"]
        best = eval_score(record["results"])
        log.info(
            "eval @ step %d: %s",
            step,
            ", ".join(
                f"target {r['target']:g}: return {r['mean_return']:.1f}"
                + (f" (normalized {r['mean_normalized']:.1f})" if r["mean_normalized"] is not None else "")
                for r in record["results"]
            ),
        )
        record["metrics"]["eval/score"] = best
        # Partial results after every evaluation, so an interrupted run keeps what it finished.
        write_json_atomic(out_dir / RESULTS_FILE, {**results, "evaluations": trainer.evaluations + [record]})
        return record

    # Create trainer
    tc = cfg.trainer
    trainer = Trainer(
        model,
        sampler,
        steps=tc.steps,
        lr=tc.lr,
        weight_decay=tc.weight_decay,
        betas=tuple(tc.betas),
        warmup_steps=tc.warmup_steps,
        lr_schedule=tc.lr_schedule,
        warmup_tokens=tc.warmup_tokens,
        final_tokens=tc.final_tokens,
        grad_clip=tc.grad_clip,
        device=device,
        bf16=tc.bf16,
        compile=tc.compile,
        log_every=tc.log_every,
        eval_every=cfg.eval.every,
        checkpoint_every=tc.checkpoint_every,
        checkpoint_dir=out_dir / "checkpoints",
        keep_checkpoints=tc.keep_checkpoints,
        logger=logger,
        evaluate=evaluate,
        progress=tc.progress,
        status_every_sec=tc.status_every_sec,
        skip_nonfinite=tc.skip_nonfinite,
        stop_signals=list(tc.stop_signals),
        checkpoint_extra={
            "model_target": model_target,
            "model_kwargs": model_kwargs,
            "config": config,
            "backbone": model.backbone_name,
            "normalization": {
                "obs_mean": torch.as_tensor(episodes.obs_mean),
                "obs_std": torch.as_tensor(episodes.obs_std),
                "rtg_scale": float(cfg.dataset.rtg_scale),
            },
            "dataset_id": cfg.dataset.id,
            "targets": targets,
            "context_len": K,
        },
    )

    try:
        # Resume
        for stale in remove_stale_temp_files(out_dir / "checkpoints"):
            log.warning("removed %s, left by a process killed while writing a checkpoint", stale)
        ckpt_path = resume_path(tc.resume, out_dir)
        if ckpt_path is not None:
            ckpt_path, ckpt = load_resume_checkpoint(ckpt_path, device)
            check_compatible(ckpt, model_kwargs, str(ckpt_path))
            trainer.load_state_dict(ckpt)
            log.info("resumed from %s at step %d of %d", ckpt_path, trainer.step, tc.steps)

        # Train (evaluations happen inside, and always at the last step)
        try:
            evaluations = trainer.fit()
        except (TrainingPreempted, NonFiniteError) as err:
            # Keep what finished: status, evaluations so far, and the checkpoint a relaunch resumes from.
            preempted = isinstance(err, TrainingPreempted)
            results.update(
                status="preempted" if preempted else "failed",
                error=str(err),
                steps=trainer.step,
                wall_time_sec=time.time() - t_start,
                train_time_sec=trainer.train_time,
                nonfinite_skips=trainer.nonfinite_skips,
                evaluations=trainer.evaluations,
                checkpoint=str(out_dir / "checkpoints" / "last.pt"),
            )
            if preempted:
                results["signal"] = err.signal_name
            write_json_atomic(out_dir / RESULTS_FILE, results)
            raise

        # Results
        final, best = summarize(evaluations)
        wall = time.time() - t_start
        results.update(
            status="completed",
            steps=trainer.step,
            wall_time_sec=wall,
            train_time_sec=trainer.train_time,
            throughput={
                "steps_per_sec": trainer.step / max(trainer.train_time, 1e-9) if trainer.train_time else None,
                "sample_fraction": trainer.sample_time / max(trainer.train_time, 1e-9),
            },
            evaluations=evaluations,
            final=final,
            best=best,
            nonfinite_skips=trainer.nonfinite_skips,
            checkpoint=str(out_dir / "checkpoints" / "last.pt"),
        )
        write_json_atomic(out_dir / RESULTS_FILE, results)
        logger.summary(
            {
                "final/score": final["score"],
                "best/score": best["score"],
                "dataset/mean_normalized_score": data_summary.get("normalized_score_mean"),
                "protocol/eval_env": protocol["eval_env"],
                "protocol/discrete_action": protocol["discrete_action"],
                "protocol/dataset_build": protocol["dataset_build"],
            }
        )
    finally:
        logger.finish()
    print_results_table([results])
    return results


def run_eval(cfg: DictConfig, out_dir: Path) -> dict:
    """Evaluate a checkpoint (a .pt file, or a run dir's checkpoints/last.pt) on its dataset's eval env."""
    validate_eval_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(str(cfg.checkpoint))
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    device = resolve_device(cfg.device)
    ckpt = load_checkpoint(path, map_location=device)
    train_cfg = ckpt["config"]
    episodes = load_episodes(ckpt["dataset_id"], download=cfg.dataset.download)
    kwargs = ckpt["model_kwargs"]
    if (episodes.state_dim, episodes.action_dim, episodes.discrete) != (
        kwargs["state_dim"],
        kwargs["action_dim"],
        kwargs["discrete"],
    ):
        raise CheckpointError(
            f"checkpoint {path} was trained for state_dim={kwargs['state_dim']}, "
            f"action_dim={kwargs['action_dim']} but dataset {ckpt['dataset_id']} now has "
            f"state_dim={episodes.state_dim}, action_dim={episodes.action_dim}"
        )
    model = hydra.utils.get_class(ckpt["model_target"])(**kwargs).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    norm = ckpt["normalization"]
    targets = list(cfg.eval.targets) if cfg.eval.targets is not None else list(ckpt["targets"])
    seed_everything(cfg.seed)
    record = evaluate_model(
        model,
        episodes,
        int(ckpt["step"]),
        eval_cfg=cfg.eval,
        targets=targets,
        context_len=int(ckpt["context_len"]),
        obs_mean=norm["obs_mean"].cpu().numpy(),
        obs_std=norm["obs_std"].cpu().numpy(),
        rtg_scale=norm["rtg_scale"],
        seed=cfg.seed,
        device=device,
    )
    final, _ = summarize([record])
    results = {
        "status": "completed",
        "checkpoint": str(path),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "train_config": train_cfg,
        "versions": versions(),
        "git_commit": git_commit(),
        "dataset": {"id": ckpt["dataset_id"], "name": train_cfg["dataset"]["name"], **episodes.summary()},
        "backbone": ckpt.get("backbone"),
        "model": train_cfg["model"]["name"],
        "seed": int(cfg.seed),
        "steps": int(ckpt["step"]),
        "protocol": {
            "targets": targets,
            "episodes": int(cfg.eval.episodes),
            "mode": cfg.eval.mode,
            "eval_env": _eval_env_id(episodes),
        },
        "evaluations": [record],
        "final": final,
    }
    write_json_atomic(out_dir / "eval_results.json", results)
    print_results_table([results])
    return results
