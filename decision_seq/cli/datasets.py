"""`decision-seq datasets`: list, inspect, download, build and import the datasets the suite trains on.

    decision-seq datasets list [--remote]          local datasets + the catalog of known ones
    decision-seq datasets info ID [--json]         spaces, sizes, return statistics, reference scores
    decision-seq datasets download ID              Minari remote (network); built-in ids are built locally
    decision-seq datasets build ENV ...            D4RL-style datasets built locally (decision_seq.datasets.sac_build)
    decision-seq datasets import-d4rl FILE...      D4RL HDF5 files (or the DT repo's pickles) -> Minari

Only `download` and `list --remote` touch the network. Bad input ends with one line
`decision-seq datasets: error: ...` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import minari
import yaml
from minari.storage import get_dataset_path
from rich.console import Console
from rich.table import Table

from decision_seq.datasets.builtin import BUILTIN, CARTPOLE_DATASET_ID, DEFAULT_DATASET_ID, dataset_exists_locally
from decision_seq.datasets.d4rl import D4RL_ENVS, D4RL_LEVELS, import_d4rl, plan_import
from decision_seq.data.episodes import DatasetCorruptError, DatasetNotFoundError

log = logging.getLogger(__name__)

PROG = "decision-seq datasets"
EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_INPUT = 0, 1, 2

REMOTE_MUJOCO_LEVELS = ("simple", "medium", "expert")
_BUILTIN_EVAL_ENVS = {DEFAULT_DATASET_ID: "Pendulum-v1", CARTPOLE_DATASET_ID: "CartPole-v1"}


class RemoteUnavailableError(RuntimeError):
    """The Minari remote could not be reached (no network, or its client package is missing)."""


# --------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """A dataset the suite knows how to get, local or not."""

    dataset_id: str
    kind: str  # built-in | minari remote | build | d4rl import
    eval_env: str
    ref_scores: str  # what is known about the reference scores before the data is local
    how: str  # how to get it; "{id}" stands for the dataset id

    def how_to_get(self, placeholder: str | None = None) -> str:
        return self.how.format(id=placeholder or self.dataset_id)


def catalog() -> list[CatalogEntry]:
    """Built-ins, remote Minari MuJoCo sets, `datasets build` targets and `datasets import-d4rl` targets."""
    entries = [
        CatalogEntry(i, "built-in", _BUILTIN_EVAL_ENVS.get(i, "?"), "measured at build",
                     f"built on first use by `decision-seq train`, or `{PROG} download {{id}}`")
        for i in BUILTIN
    ]
    for env, spec in D4RL_ENVS.items():
        entries += [
            CatalogEntry(f"mujoco/{env}/{level}-v0", "minari remote", spec.eval_env_id, "see remote metadata",
                         f"`{PROG} download {{id}}` (network)")
            for level in REMOTE_MUJOCO_LEVELS
        ]
    for env, spec in D4RL_ENVS.items():
        entries += [
            CatalogEntry(f"decision-seq/{env}/{level}-v0", "build", spec.eval_env_id, "set by the build",
                         f"`{PROG} build` (see `{PROG} build --help`)")
            for level in D4RL_LEVELS
        ]
    for env, spec in D4RL_ENVS.items():
        entries += [
            CatalogEntry(f"d4rl/{env}/{level}-v2", "d4rl import", spec.eval_env_id,
                         f"{_num(spec.ref_min_score)} / {_num(spec.ref_max_score)}",
                         f"`{PROG} import-d4rl {env}_{level.replace('-', '_')}-v2.hdf5`")
            for level in D4RL_LEVELS
        ]
    return entries


def hydra_dataset_names() -> dict[str, list[str]]:
    """Dataset id -> the `dataset=` options (YAML files in decision_seq/conf/dataset/) that select it."""
    names: dict[str, list[str]] = {}
    folder = resources.files("decision_seq.conf") / "dataset"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        try:
            cfg = yaml.safe_load(item.read_text()) or {}
        except yaml.YAMLError as err:
            log.warning("cannot read conf/dataset/%s: %s", item.name, err)
            continue
        if isinstance(cfg, dict) and cfg.get("id"):
            names.setdefault(str(cfg["id"]), []).append(item.name[: -len(".yaml")])
    return names


def local_datasets() -> dict[str, dict]:
    """Local dataset id -> Minari metadata. Unreadable datasets are logged and left out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = minari.list_local_datasets()
    for w in caught:
        log.warning("%s", w.message)
    return found


def _num(x: float | int | None, fmt: str = ".10g") -> str:
    return "-" if x is None else format(x, fmt)


def _env_id(metadata: dict) -> str | None:
    """Evaluation env id from Minari metadata (falls back to the collection env, as Minari does)."""
    for key in ("eval_env_spec", "env_spec"):
        spec = metadata.get(key)
        if spec:
            try:
                return json.loads(spec).get("id")
            except (ValueError, AttributeError):
                continue
    return None


def _refs(metadata: dict) -> str:
    lo, hi = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    return "-" if lo is None and hi is None else f"{_num(lo)} / {_num(hi)}"


def _console() -> Console:
    # Wide when piped (tests, grep), so an id is never wrapped or cut.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 220)


# --------------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    console = _console()
    hydra_names = hydra_dataset_names()
    local = local_datasets()

    table = Table(title=f"Local datasets ({get_dataset_path()})", title_justify="left")
    for col in ("id", "episodes", "steps", "ref min / max", "eval env", "dataset="):
        table.add_column(col, no_wrap=col == "id", justify="right" if col in ("episodes", "steps") else "left")
    for dataset_id, meta in local.items():
        table.add_row(dataset_id, str(meta.get("total_episodes", "?")), str(meta.get("total_steps", "?")),
                      _refs(meta), _env_id(meta) or "-", ", ".join(hydra_names.get(dataset_id, [])) or "-")
    if local:
        console.print(table)
    else:
        console.print(f"No local datasets under {get_dataset_path()} ($MINARI_DATASETS_PATH).")

    table = Table(title="Known datasets (remote or buildable)", title_justify="left")
    for col in ("id", "kind", "local", "ref min / max", "eval env", "dataset=", "how to get it"):
        table.add_column(col, no_wrap=col == "id")
    for entry in catalog():
        meta = local.get(entry.dataset_id)
        table.add_row(entry.dataset_id, entry.kind, "yes" if meta is not None else "no",
                      _refs(meta) if meta is not None else entry.ref_scores, entry.eval_env,
                      ", ".join(hydra_names.get(entry.dataset_id, [])) or "-", entry.how_to_get("ID"))
    console.print(table)
    console.print(f"Details: `{PROG} info ID`. Train on one: `decision-seq train dataset=<dataset= name>` "
                  f"or `dataset.id=ID`.")

    if args.remote:
        remote = _remote_call(minari.list_remote_datasets, prefix=args.prefix)
        table = Table(title="Minari remote", title_justify="left")
        for col in ("id", "episodes", "steps", "ref min / max", "minari version", "local"):
            table.add_column(col, no_wrap=col == "id")
        for dataset_id, meta in sorted(remote.items()):
            table.add_row(dataset_id, str(meta.get("total_episodes", "?")), str(meta.get("total_steps", "?")),
                          _refs(meta), str(meta.get("minari_version", "?")), "yes" if dataset_id in local else "no")
        console.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------


def _not_local_error(dataset_id: str) -> DatasetNotFoundError:
    entry = next((e for e in catalog() if e.dataset_id == dataset_id), None)
    if entry is None:
        return DatasetNotFoundError(
            f"unknown dataset id {dataset_id!r}: not found locally under {get_dataset_path()} and not in the "
            f"catalog; see `{PROG} list` (a remote Minari id can be fetched with `{PROG} download ID`)"
        )
    if entry.kind == "built-in":
        return DatasetNotFoundError(
            f"{dataset_id} is not built yet; it is built on first use by `decision-seq train` or by "
            f"`{PROG} download {dataset_id}`"
        )
    return DatasetNotFoundError(f"{dataset_id} ({entry.kind}) is not local yet; get it with {entry.how_to_get()}")


def _disk_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def dataset_info(dataset_id: str) -> dict:
    """Everything `datasets info` shows, as plain Python: EpisodeSet.summary() plus Minari metadata.

    Never builds or downloads: a dataset that is not local raises DatasetNotFoundError saying how to get it.
    """
    from decision_seq.data.episodes import corrupt_dataset_error, episodes_from_minari, load_minari_dataset

    if not dataset_exists_locally(dataset_id):
        raise _not_local_error(dataset_id)
    dataset = load_minari_dataset(dataset_id)  # local, so this only loads
    episodes = episodes_from_minari(dataset)
    try:
        metadata = dataset.storage.metadata
    except (OSError, KeyError) as err:
        raise corrupt_dataset_error(dataset_id, err) from err
    path = get_dataset_path(dataset_id)
    size = _disk_size(path)
    info = episodes.summary()
    info.update({
        "episode_length_min": int(episodes.episode_lengths.min()),
        "episode_length_mean": float(episodes.episode_lengths.mean()),
        "observation_space": str(dataset.observation_space),
        "action_space": str(dataset.action_space),
        "eval_env": _env_id(metadata),
        "algorithm": metadata.get("algorithm_name"),
        "author": _plain(metadata.get("author")),
        "description": metadata.get("description"),
        "minari_version": metadata.get("minari_version"),
        "path": str(path),
        "size_bytes": size,
        "hydra_dataset": hydra_dataset_names().get(dataset_id, []),
    })
    return info


def _plain(value):
    """Minari keeps authors as a set; make it JSON-friendly."""
    return sorted(value) if isinstance(value, (set, frozenset)) else value


def cmd_info(args: argparse.Namespace) -> int:
    info = dataset_info(args.dataset_id)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    refs = (f"{_num(info['ref_min_score'])} / {_num(info['ref_max_score'])}"
            if info["ref_min_score"] is not None or info["ref_max_score"] is not None else "none recorded")
    norm = info["normalized_score_mean"]
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
        ("mean normalized score (0-100)", "-" if norm is None else f"{norm:.2f}"),
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
    _console().print(table)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------------

# Exceptions of these packages mean the remote did not answer (Minari's HF/GCP clients and their stacks).
_NETWORK_MODULES = {"requests", "urllib3", "httpx", "httpcore", "huggingface_hub", "google", "socket", "ssl",
                    "aiohttp", "fsspec"}


def _is_network_error(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, (ConnectionError, TimeoutError)):  # socket.gaierror etc.: matched by module below
            return True
        if any(cls.__module__.split(".")[0] in _NETWORK_MODULES for cls in type(err).__mro__):
            return True
        err = err.__cause__ or err.__context__
    return False


def _remote_call(fn, *args, **kwargs):
    """Call a Minari remote function; a missing client package or no network -> RemoteUnavailableError."""
    try:
        return fn(*args, **kwargs)
    except ImportError as err:  # Minari imports its remote client (huggingface_hub) lazily
        raise RemoteUnavailableError(f"the Minari remote needs an extra package: {err}") from err
    except ValueError:
        raise  # Minari's own answers: unknown id, incompatible version
    except Exception as err:
        if _is_network_error(err):
            raise RemoteUnavailableError(
                f"could not reach the Minari remote (offline?): {type(err).__name__}: {err}") from err
        raise


def cmd_download(args: argparse.Namespace) -> int:
    from decision_seq.datasets.builtin import ensure_builtin_dataset

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
    entry = next((e for e in catalog() if e.dataset_id == dataset_id), None)
    if entry is not None and entry.kind in ("build", "d4rl import"):
        raise ValueError(f"{dataset_id} is not on the Minari remote; it is made locally: {entry.how_to_get()}")
    if dataset_exists_locally(dataset_id) and not args.force:
        print(f"{dataset_id} is already local at {path} (--force downloads it again)")
        return EXIT_OK
    existed = path.exists()
    try:
        _remote_call(minari.download_dataset, dataset_id, force_download=args.force)
    except RemoteUnavailableError:
        if not existed and path.exists():
            shutil.rmtree(path, ignore_errors=True)  # leave no partial download behind
        raise
    print(f"downloaded {dataset_id} to {path}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# build (delegated) and import-d4rl
# --------------------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    from decision_seq.datasets import sac_build as factory  # imported only for `build`, so the rest works without it

    return int(factory.run_build(args))


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
    for f, (env, level, dataset_id) in zip(files, plans):
        dataset = import_d4rl(f, env=env, level=level, dataset_id=dataset_id, overwrite=args.overwrite,
                              allow_pickle=args.allow_pickle, progress=not args.no_progress)
        train = (f"dataset=d4rl-{env}-{level}" if dataset_id == f"d4rl/{env}/{level}-v2"
                 else f"dataset.id={dataset_id}")
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
    """The argparse tree. The `build` arguments come from decision_seq.datasets.sac_build and are added only
    when `with_build_args` (that module is imported only then)."""
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
                                   f"{', '.join(D4RL_LEVELS)}) locally; see the arguments below.",
                       epilog=f"The datasets it makes are selected with `decision-seq train dataset=<env>-<level>`, "
                              f"e.g. dataset=hopper-medium-replay.")
    if with_build_args:
        from decision_seq.datasets import sac_build as factory

        factory.add_build_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("import-d4rl", help="convert D4RL HDF5 files (or DT pickles) to local Minari datasets",
                       formatter_class=_FMT,
                       description="Convert D4RL MuJoCo files (hopper, halfcheetah, walker2d; levels "
                                   f"{', '.join(D4RL_LEVELS)}) to Minari datasets `d4rl/<env>/<level>-v2` with "
                                   "D4RL's reference returns and the Gymnasium v5 env for evaluation (D4RL's data "
                                   "came from the mujoco-py v3 envs: close, not identical). Episodes end at "
                                   "terminals or timeouts; see decision_seq/data/d4rl.py for the details.",
                       epilog="examples:\n"
                              f"  {PROG} import-d4rl ~/.d4rl/datasets/hopper_medium_replay-v2.hdf5\n"
                              f"  {PROG} import-d4rl data.hdf5 --env walker2d --level medium-expert\n"
                              f"  {PROG} import-d4rl hopper-medium-replay-v2.pkl --allow-pickle   # DT repo's pickles\n"
                              "then: decision-seq train dataset=d4rl-hopper-medium-replay")
    p.add_argument("files", nargs="+", metavar="FILE", help="D4RL .hdf5 files (or .pkl with --allow-pickle)")
    p.add_argument("--id", default=None, help="dataset id (default d4rl/<env>/<level>-v2); one FILE only")
    p.add_argument("--env", default=None, choices=list(D4RL_ENVS), help="env, if the file name does not say")
    p.add_argument("--level", default=None, help=f"level, if the file name does not say: {', '.join(D4RL_LEVELS)}")
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
        except Exception as err:  # only `build` imports the factory
            return _fail(f"the dataset factory (decision_seq.datasets.sac_build) cannot be imported: "
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
