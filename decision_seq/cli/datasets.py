"""`decision-seq datasets`: list, inspect, download, build and import the datasets the suite trains on.

    decision-seq datasets list [--remote]          local datasets + the catalog of known ones
    decision-seq datasets info ID [--json]         spaces, sizes, return statistics, reference scores
    decision-seq datasets download ID              Minari remote (network); built-in ids are built locally
    decision-seq datasets build ENV ...            D4RL-style datasets built locally (cli/build.py, datasets/sac/)
    decision-seq datasets import-d4rl FILE...      D4RL HDF5 files (or the DT repo's pickles) -> Minari

Only `download` and `list --remote` touch the network. Bad input ends with one line
`decision-seq datasets: error: ...` on stderr and exit code 2. What the commands show comes from
decision_seq/datasets/catalog.py; this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import minari
from minari.storage import get_dataset_path
from rich.table import Table

from decision_seq.cli.console import fmt_num, make_console
from decision_seq.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNEXPECTED
from decision_seq.data.episodes import DatasetCorruptError, DatasetNotFoundError
from decision_seq.datasets.builtin import BUILTIN, ensure_builtin_dataset
from decision_seq.datasets.catalog import (
    DATASETS_COMMAND,
    LOCAL_ONLY_KINDS,
    catalog,
    catalog_entry,
    dataset_info,
    eval_env_id,
    hydra_dataset_names,
    local_datasets,
)
from decision_seq.datasets.d4rl import D4RL_ENVS, import_d4rl, plan_import
from decision_seq.datasets.minari_io import RemoteUnavailableError, dataset_exists_locally, remote_call
from decision_seq.datasets.naming import LEVELS

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
        table.add_row(dataset_id, str(meta.get("total_episodes", "?")), str(meta.get("total_steps", "?")),
                      _meta_refs(meta), eval_env_id(meta) or "-", ", ".join(hydra_names.get(dataset_id, [])) or "-")
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
        table.add_row(entry.dataset_id, entry.kind, "yes" if meta is not None else "no", refs, entry.eval_env,
                      ", ".join(hydra_names.get(entry.dataset_id, [])) or "-", entry.how_to_get("ID"))
    console.print(table)
    console.print(f"Details: `{PROG} info ID`. Train on one: `decision-seq train dataset=<dataset= name>` "
                  f"or `dataset.id=ID`.")

    if args.remote:
        remote = remote_call(minari.list_remote_datasets, prefix=args.prefix)
        table = Table(title="Minari remote", title_justify="left")
        for col in ("id", "episodes", "steps", "ref min / max", "minari version", "local"):
            table.add_column(col, no_wrap=col == "id")
        for dataset_id, meta in sorted(remote.items()):
            table.add_row(dataset_id, str(meta.get("total_episodes", "?")), str(meta.get("total_steps", "?")),
                          _meta_refs(meta), str(meta.get("minari_version", "?")),
                          "yes" if dataset_id in local else "no")
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
    refs = (_refs(info["ref_min_score"], info["ref_max_score"])
            if info["ref_min_score"] is not None or info["ref_max_score"] is not None else "none recorded")
    rows = [
        ("id", info["dataset_id"]),
        ("path", f"{info['path']} ({_human_bytes(info['size_bytes'])})"),
        ("observation space", info["observation_space"]),
        ("action space", info["action_space"]),
        ("episodes", str(info["episodes"])),
        ("steps", str(info["steps"])),
        ("episode length min / mean / max",
         f"{info['episode_length_min']} / {info['episode_length_mean']:.1f} / {info['max_episode_length']}"),
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
    if entry is not None and entry.kind in LOCAL_ONLY_KINDS:
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
    plans = [plan_import(f, env=args.env, level=args.level, dataset_id=args.id, overwrite=args.overwrite)
             for f in files]
    ids = [p[2] for p in plans]
    if len(set(ids)) != len(ids):
        raise ValueError(f"several files map to the same dataset id: {ids}")
    hydra_names = hydra_dataset_names()
    for f, (env, level, dataset_id) in zip(files, plans, strict=True):
        dataset = import_d4rl(f, env=env, level=level, dataset_id=dataset_id, overwrite=args.overwrite,
                              allow_pickle=args.allow_pickle, progress=not args.no_progress)
        names = hydra_names.get(dataset_id)
        train = f"dataset={names[0]}" if names else f"dataset.id={dataset_id}"
        print(f"imported {f} as {dataset_id} ({dataset.total_episodes} episodes, {dataset.total_steps} steps); "
              f"train with `decision-seq train {train}`")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------------------


class _FMT(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps texts with line breaks (the examples) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser(with_build_args: bool = False) -> argparse.ArgumentParser:
    """The argparse tree. The `build` arguments come from decision_seq/cli/build.py and are added only
    when `with_build_args` (that module, and the SAC build behind it, is imported only then)."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_FMT,
        description="List, inspect, download, build and import the datasets decision-seq trains on "
                    "(Minari datasets under $MINARI_DATASETS_PATH, default ~/.minari/datasets).",
        epilog="examples:\n"
               f"  {PROG} list                                  # local + known datasets, `dataset=` names\n"
               f"  {PROG} info decision-seq/pendulum/mixed-v0\n"
               f"  {PROG} download mujoco/hopper/medium-v0      # needs network\n"
               f"  {PROG} build --help                          # D4RL-style datasets built locally\n"
               f"  {PROG} import-d4rl hopper_medium_replay-v2.hdf5\n"
               "Only `download` and `list --remote` use the network.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="local datasets and the catalog of known ones", formatter_class=_FMT,
                       description="Local datasets (id, episodes, steps, reference scores, eval env) and the "
                                   "datasets decision-seq knows how to get: built-ins, remote Minari MuJoCo sets, "
                                   "`build` targets and D4RL imports, with the Hydra `dataset=` name of each.",
                       epilog=f"examples:\n  {PROG} list\n  {PROG} list --remote --prefix mujoco/   # needs network")
    p.add_argument("--remote", action="store_true", help="also list the Minari remote (needs network)")
    p.add_argument("--prefix", default=None, help="with --remote: only ids starting with this, e.g. mujoco/")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="details and return statistics of a local dataset", formatter_class=_FMT,
                       description="Spaces, episodes, steps, episode returns (min/mean/max/std), reference scores "
                                   "and the dataset's mean normalized score, eval env, algorithm, author, "
                                   "description and size on disk. Never builds or downloads.",
                       epilog=f"examples:\n  {PROG} info decision-seq/pendulum/mixed-v0\n"
                              f"  {PROG} info d4rl/hopper/medium-replay-v2 --json")
    p.add_argument("dataset_id", metavar="ID", help="a Minari dataset id")
    p.add_argument("--json", action="store_true", help="print the information as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="fetch a Minari remote dataset (built-in ids are built locally)",
                       formatter_class=_FMT,
                       description="Download a dataset from the Minari remote with minari.download_dataset "
                                   "(needs network). Built-in ids (decision-seq/pendulum/mixed-v0, "
                                   "decision-seq/cartpole/mixed-v0) are built locally instead.",
                       epilog=f"examples:\n  {PROG} download mujoco/hopper/medium-v0\n"
                              f"  {PROG} download decision-seq/pendulum/mixed-v0   # built locally, no network")
    p.add_argument("dataset_id", metavar="ID", help="a Minari dataset id")
    p.add_argument("--force", action="store_true", help="download (or build) again even if it is local")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("build", help="build a D4RL-style dataset locally (decision-seq/<env>/<level>-v0)",
                       formatter_class=_FMT,
                       description="Build a D4RL-style MuJoCo dataset (levels "
                                   f"{', '.join(LEVELS)}) locally; see the arguments below.",
                       epilog="The datasets it makes are selected with `decision-seq train dataset=<env>-<level>`, "
                              "e.g. dataset=hopper-medium-replay.")
    if with_build_args:
        from decision_seq.cli.build import add_build_arguments

        add_build_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("import-d4rl", help="convert D4RL HDF5 files (or DT pickles) to local Minari datasets",
                       formatter_class=_FMT,
                       description="Convert D4RL MuJoCo files (hopper, halfcheetah, walker2d; levels "
                                   f"{', '.join(LEVELS)}) to Minari datasets `d4rl/<env>/<level>-v2` with "
                                   "D4RL's reference returns and the Gymnasium v5 env for evaluation (D4RL's data "
                                   "came from the mujoco-py v3 envs: close, not identical). Episodes end at "
                                   "terminals or timeouts; see decision_seq/datasets/d4rl_files.py for the details.",
                       epilog="examples:\n"
                              f"  {PROG} import-d4rl ~/.d4rl/datasets/hopper_medium_replay-v2.hdf5\n"
                              f"  {PROG} import-d4rl data.hdf5 --env walker2d --level medium-expert\n"
                              f"  {PROG} import-d4rl hopper-medium-replay-v2.pkl --allow-pickle   # DT repo's pickles\n"
                              "then: decision-seq train dataset=d4rl-hopper-medium-replay")
    p.add_argument("files", nargs="+", metavar="FILE", help="D4RL .hdf5 files (or .pkl with --allow-pickle)")
    p.add_argument("--id", default=None, help="dataset id (default d4rl/<env>/<level>-v2); one FILE only")
    p.add_argument("--env", default=None, choices=list(D4RL_ENVS), help="env, if the file name does not say")
    p.add_argument("--level", default=None, help=f"level, if the file name does not say: {', '.join(LEVELS)}")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read .pkl files (unpickling runs any code the file contains: trusted files only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_d4rl)
    return parser


def _subcommand(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


@contextlib.contextmanager
def _stderr_logging() -> Iterator[None]:
    """INFO logs of decision_seq.* to stderr while a command runs (removed after, so nothing leaks)."""
    logger = logging.getLogger("decision_seq")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


_USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, DatasetNotFoundError, DatasetCorruptError,
                RemoteUnavailableError)


def _disk_error_message(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    try:
        root = str(get_dataset_path())
    except OSError:  # the root itself may be what failed
        root = "the Minari root"
    return (f"disk error: {err.strerror or err}{where}. Datasets are written to a hidden temp dir and "
            f"renamed into place when complete, so no partial dataset was left in {root}; "
            f"free space or fix permissions and rerun (`datasets build` resumes from its work dir)")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run `decision-seq datasets ARGV`; returns the exit code (0 ok, 2 bad input, 1 unexpected)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with _stderr_logging():
        try:
            parser = build_parser(with_build_args=_subcommand(argv) == "build")
        except Exception as err:  # only `build` imports the SAC build
            return _fail(f"the SAC dataset build (decision_seq.datasets.sac) cannot be imported: "
                         f"{type(err).__name__}: {err}", EXIT_UNEXPECTED)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help, or a usage error argparse already printed
            code = exit_.code
            return EXIT_OK if code is None else code if isinstance(code, int) else EXIT_BAD_INPUT
        if args.command is None:
            parser.print_help()
            return EXIT_OK
        try:
            return int(args.func(args))
        except _USER_ERRORS as err:
            return _fail(str(err))
        except OSError as err:  # full disk, no permission, read-only filesystem: not the user's input
            return _fail(_disk_error_message(err), EXIT_UNEXPECTED)
