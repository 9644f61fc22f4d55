"""The `decision-seq datasets` subcommands (list, info, download, build, build-atari, import-d4rl,
import-dqn-replay): each takes the parsed arguments, prints, and returns an exit code. Parsing and error
handling are in cli/datasets.py."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import minari
from minari.storage import get_dataset_path
from rich.table import Table

from decision_seq.cli.console import fmt_num, make_console
from decision_seq.cli.exit_codes import EXIT_OK
from decision_seq.datasets.builtin import BUILTIN, ensure_builtin_dataset
from decision_seq.datasets.catalog import (
    DATASETS_COMMAND,
    LOCAL_ATARI_KINDS,
    LOCAL_ONLY_KINDS,
    catalog,
    catalog_entry,
    dataset_info,
    eval_env_id,
    hydra_dataset_names,
    local_datasets,
)
from decision_seq.datasets.d4rl import import_d4rl, plan_import
from decision_seq.datasets.dqn_replay import import_dqn_replay
from decision_seq.datasets.minari_io import RemoteUnavailableError, dataset_exists_locally, remote_call

log = logging.getLogger(__name__)

PROG = DATASETS_COMMAND


def _refs(lo: float | None, hi: float | None) -> str:
    """Reference scores (random / expert) as a table cell."""
    return "-" if lo is None and hi is None else f"{fmt_num(lo, '.10g')} / {fmt_num(hi, '.10g')}"


def _meta_refs(metadata: dict) -> str:
    return _refs(metadata.get("ref_min_score"), metadata.get("ref_max_score"))


# --------------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    console = make_console()
    hydra_names = hydra_dataset_names()
    local = local_datasets()

    table = Table(title=f"Local datasets ({get_dataset_path()})", title_justify="left")
    for col in ("id", "episodes", "steps", "ref min / max", "eval env", "dataset="):
        table.add_column(col, no_wrap=col == "id", justify="right" if col in ("episodes", "steps") else "left")
    for dataset_id, meta in local.items():
        table.add_row(
            dataset_id,
            str(meta.get("total_episodes", "?")),
            str(meta.get("total_steps", "?")),
            _meta_refs(meta),
            eval_env_id(meta) or "-",
            ", ".join(hydra_names.get(dataset_id, [])) or "-",
        )
    if local:
        console.print(table)
    else:
        console.print(f"No local datasets under {get_dataset_path()} ($MINARI_DATASETS_PATH).")

    table = Table(title="Known datasets (remote or buildable)", title_justify="left")
    for col in ("id", "kind", "local", "ref min / max", "eval env", "dataset=", "how to get it"):
        table.add_column(col, no_wrap=col == "id")
    for entry in catalog():
        meta = local.get(entry.dataset_id)
        if meta is not None:
            refs = _meta_refs(meta)
        else:
            refs = _refs(*entry.ref_scores) if entry.ref_scores is not None else entry.ref_note
        table.add_row(
            entry.dataset_id,
            entry.kind,
            "yes" if meta is not None else "no",
            refs,
            entry.eval_env,
            ", ".join(hydra_names.get(entry.dataset_id, [])) or "-",
            entry.how_to_get("ID"),
        )
    console.print(table)
    console.print(
        f"Details: `{PROG} info ID`. Train on one: `decision-seq train dataset=<dataset= name>` or `dataset.id=ID`."
    )

    if args.remote:
        remote = remote_call(minari.list_remote_datasets, prefix=args.prefix)
        table = Table(title="Minari remote", title_justify="left")
        for col in ("id", "episodes", "steps", "ref min / max", "minari version", "local"):
            table.add_column(col, no_wrap=col == "id")
        for dataset_id, meta in sorted(remote.items()):
            table.add_row(
                dataset_id,
                str(meta.get("total_episodes", "?")),
                str(meta.get("total_steps", "?")),
                _meta_refs(meta),
                str(meta.get("minari_version", "?")),
                "yes" if dataset_id in local else "no",
            )
        console.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def cmd_info(args: argparse.Namespace) -> int:
    info = dataset_info(args.dataset_id)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    refs = (
        _refs(info["ref_min_score"], info["ref_max_score"])
        if info["ref_min_score"] is not None or info["ref_max_score"] is not None
        else "none recorded"
    )
    rows = [
        ("id", info["dataset_id"]),
        ("path", f"{info['path']} ({_human_bytes(info['size_bytes'])})"),
        ("observation space", info["observation_space"]),
        ("action space", info["action_space"]),
        ("episodes", str(info["episodes"])),
        ("steps", str(info["steps"])),
        (
            "episode length min / mean / max",
            f"{info['episode_length_min']} / {info['episode_length_mean']:.1f} / {info['max_episode_length']}",
        ),
        ("return min / mean / max", f"{info['return_min']:.2f} / {info['return_mean']:.2f} / {info['return_max']:.2f}"),
        ("return std", f"{info['return_std']:.2f}"),
        ("reference scores (random / expert)", refs),
        ("mean normalized score (0-100)", fmt_num(info["normalized_score_mean"], ".2f")),
        ("eval env", info["eval_env"] or "-"),
        ("algorithm", str(info["algorithm"] or "-")),
        ("author", ", ".join(info["author"]) if isinstance(info["author"], list) else str(info["author"] or "-")),
        ("minari version", str(info["minari_version"] or "-")),
        ("dataset=", ", ".join(info["hydra_dataset"]) or f"- (use dataset.id={info['dataset_id']})"),
        ("description", str(info["description"] or "-")),
    ]
    table = Table(show_header=False, title=info["dataset_id"], title_justify="left")
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    make_console().print(table)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------------


def cmd_download(args: argparse.Namespace) -> int:
    dataset_id = args.dataset_id
    path = get_dataset_path(dataset_id)
    if dataset_id in BUILTIN:
        # Built-in ids are never on the remote: build them here.
        if dataset_exists_locally(dataset_id) and not args.force:
            print(f"{dataset_id} is already built at {path}")
            return EXIT_OK
        if args.force and path.exists():
            shutil.rmtree(path)
        ensure_builtin_dataset(dataset_id)
        print(f"built {dataset_id} at {path}")
        return EXIT_OK
    entry = catalog_entry(dataset_id)
    if entry is not None and entry.kind in LOCAL_ONLY_KINDS + LOCAL_ATARI_KINDS:
        raise ValueError(f"{dataset_id} is not on the Minari remote; it is made locally: {entry.how_to_get()}")
    if dataset_exists_locally(dataset_id) and not args.force:
        print(f"{dataset_id} is already local at {path} (--force downloads it again)")
        return EXIT_OK
    existed = path.exists()
    try:
        remote_call(minari.download_dataset, dataset_id, force_download=args.force)
    except RemoteUnavailableError:
        if not existed and path.exists():
            shutil.rmtree(path, ignore_errors=True)  # leave no partial download behind
        raise
    print(f"downloaded {dataset_id} to {path}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# build (cli/build.py, imported only for `build`) and import-d4rl
# --------------------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    from decision_seq.cli.build import run_build  # only here, so the other commands work without the SAC build

    return int(run_build(args))


def cmd_import_d4rl(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files]
    if len(files) > 1 and (args.id or args.env or args.level):
        raise ValueError("--id, --env and --level name one dataset: give them with a single FILE")
    # Resolve every id and refuse existing ones before converting anything.
    plans = [
        plan_import(f, env=args.env, level=args.level, dataset_id=args.id, overwrite=args.overwrite) for f in files
    ]
    ids = [p[2] for p in plans]
    if len(set(ids)) != len(ids):
        raise ValueError(f"several files map to the same dataset id: {ids}")
    for f, (env, level, dataset_id) in zip(files, plans, strict=True):
        dataset = import_d4rl(
            f,
            env=env,
            level=level,
            dataset_id=dataset_id,
            overwrite=args.overwrite,
            allow_pickle=args.allow_pickle,
            progress=not args.no_progress,
        )
        print(f"imported {f} as {_made(dataset)}")
    return EXIT_OK


def _made(dataset) -> str:
    """'<id> (N episodes, M steps); train with `decision-seq train dataset=<entry>`' for a new dataset."""
    names = hydra_dataset_names().get(dataset.id)
    train = f"dataset={names[0]}" if names else f"dataset.id={dataset.id}"
    return (
        f"{dataset.id} ({dataset.total_episodes} episodes, {dataset.total_steps} steps); "
        f"train with `decision-seq train {train}`"
    )


def cmd_import_dqn_replay(args: argparse.Namespace) -> int:
    dataset = import_dqn_replay(
        args.directory,
        game=args.game,
        steps=args.steps,
        seed=args.seed,
        dataset_id=args.id,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"imported {args.directory} as {_made(dataset)}")
    return EXIT_OK


def cmd_build_atari(args: argparse.Namespace) -> int:
    from decision_seq.datasets.atari_build import build_atari  # imports stable-baselines3 only when building

    dataset = build_atari(
        args.game,
        agent_steps=args.agent_steps,
        steps=args.steps,
        random_prob=args.random_prob,
        seed=args.seed,
        level=args.level,
        dataset_id=args.id,
        work_dir=args.work_dir,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"built {_made(dataset)}")
    return EXIT_OK
