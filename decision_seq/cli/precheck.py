"""Compose and validate a command's config before Hydra starts any work.

`decision-seq train ...` composes the config from the command line with Hydra's compose API, runs the
validation pass (`experiment.validation`) and checks that the output dir can be created, all before
Hydra creates a directory, loads a dataset or builds a model. Any problem is one line
(`ConfigError`), exit code 2. For a `-m` sweep every swept value is composed once (each with the first
value of the other swept keys: the sum of the value counts, not their product, so a 9 x 5 x 2 sweep
costs 16 compositions); each job validates its own full config again when it starts.

Command lines with Hydra flags other than -m (--help, --cfg, --info, -c ...) are left to Hydra.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from decision_seq.experiment.validation import VALIDATORS, ConfigError

MULTIRUN_FLAGS = ("-m", "--multirun")


def _first_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's messages span several lines; keep what names the key and the problem."""
    text = str(err)
    if err.__cause__ is not None and str(err.__cause__) not in text:  # "Error merging override x": why is here
        text += "\n" + str(err.__cause__)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    keep = [
        ln
        for ln in lines
        if not ln.startswith(
            ("Set the environment variable", "Config search path", "provider=", "reference_type=", "object_type=")
        )
    ]
    text = " ".join(keep[:40]) if keep else type(err).__name__  # 40: a group may list many options
    return text.replace("\t", " ")


def check_output_dir(key: str, path: str | Path) -> None:
    """The output dir exists as a directory, or can be created: its nearest existing ancestor is a
    writable directory."""
    p = Path(path).absolute()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{key}={path}: the output dir is a file, not a directory")
        return
    ancestor = p.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{key}={path}: cannot create the output dir: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: cannot create the output dir: no permission to write in {ancestor}")


def _compose(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    from hydra import compose

    try:
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(_first_line(err)) from None


def _sweep(config_name: str, overrides: list[str]) -> tuple[DictConfig, list[str], dict[str, list[str]]]:
    """(the config composed with the fixed overrides, those overrides, swept key -> its `key=value` list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(_first_line(err)) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = _compose(config_name, fixed, with_hydra=True)
    # Swept keys: the command line's, then the config's hydra.sweeper.params (e.g. experiment=dt-paper's).
    swept: dict[str, list[str]] = {}
    preset = [f"{k}={v}" for k, v in (base.hydra.sweeper.get("params") or {}).items()]
    for o in parser.parse_overrides(preset) + parsed:
        if o.is_sweep_override():
            swept[o.get_key_element()] = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        elif o.get_key_element() in swept:  # a fixed command-line value replaces a preset's sweep
            del swept[o.get_key_element()]
    return base, fixed, swept


def _job_overrides(config_name: str, overrides: list[str]) -> tuple[DictConfig, list[list[str]]]:
    """(the config composed with the fixed overrides, one override list per job to validate): every swept
    value once, with the first value of the other swept keys."""
    base, fixed, swept = _sweep(config_name, overrides)
    if not swept:
        return base, [fixed]
    first = {k: v[0] for k, v in swept.items()}
    jobs = []
    for key, values in swept.items():
        for value in values:
            jobs.append(fixed + [first[k] if k != key else value for k in swept])
    return base, jobs


# What `--dry-run` shows of each job (label, config key).
DRY_RUN_COLUMNS = (
    ("dataset", "dataset.name"),
    ("model", "model.name"),
    ("embed", "model.net.embed_dim"),
    ("layers", "model.net.backbone_kwargs.n_layer"),
    ("K", "model.context_len"),
    ("lr", "trainer.lr"),
    ("steps", "trainer.steps"),
    ("targets", "eval.targets"),
    ("episodes", "eval.episodes"),
    ("eval every", "eval.every"),
)


def dry_run(command: str, args: list[str]) -> list[dict]:
    """The jobs `decision-seq COMMAND ARGS` would run, validated, without running them: one row per
    combination of the swept keys other than `seed`, with its seeds and the settings in DRY_RUN_COLUMNS."""
    import itertools

    from hydra import initialize_config_module

    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        _, fixed, swept = _sweep(command, overrides)
        seeds = [v.split("=", 1)[1] for v in swept.pop("seed", [])]
        rows = []
        for combo in itertools.product(*swept.values()):
            cfg = _compose(command, fixed + list(combo))
            OmegaConf.resolve(cfg)
            VALIDATORS[command](cfg)
            row = {label: OmegaConf.select(cfg, key) for label, key in DRY_RUN_COLUMNS}
            row["seeds"] = seeds or [str(cfg.seed)]
            rows.append(row)
    return rows


def precheck(command: str, args: list[str]) -> None:
    """Raise ConfigError (one line) if `decision-seq COMMAND ARGS` would fail on its config."""
    from hydra import initialize_config_module

    validate = VALIDATORS[command]
    flags = [a for a in args if a.startswith("-")]
    if any(f not in MULTIRUN_FLAGS for f in flags):
        return
    multirun = bool(flags)
    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_module(config_module="decision_seq.conf", version_base="1.3"):
        if multirun:
            base, jobs = _job_overrides(command, overrides)
            check_output_dir("hydra.sweep.dir", OmegaConf.select(base, "hydra.sweep.dir"))
        else:
            base, jobs = _compose(command, overrides, with_hydra=True), [None]
            check_output_dir("hydra.run.dir", OmegaConf.select(base, "hydra.run.dir"))
        for job in jobs:
            cfg = base if job is None else _compose(command, job)
            try:
                OmegaConf.resolve(cfg) if job is not None else None
                validate(cfg)
            except OmegaConfBaseException as err:
                raise ConfigError(_first_line(err)) from None
