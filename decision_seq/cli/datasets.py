"""`decision-seq datasets`: list, inspect, download, build and import the datasets the suite trains on.

    decision-seq datasets list [--remote]          local datasets + the catalog of known ones
    decision-seq datasets info ID [--json]         spaces, sizes, return statistics, reference scores
    decision-seq datasets download ID              Minari remote (network); built-in ids are built locally
    decision-seq datasets build ENV ...            D4RL-style datasets built locally (cli/build.py, datasets/sac/)
    decision-seq datasets import-d4rl FILE...      D4RL HDF5 files (or the DT repo's pickles) -> Minari
    decision-seq datasets import-dqn-replay DIR --game Breakout   DQN-Replay Atari buffers -> Minari (DT sampling)
    decision-seq datasets build-atari GAME ...     Atari data played locally by a PPO agent + random actions

Only `download` and `list --remote` touch the network. Bad input ends with one line
`decision-seq datasets: error: ...` on stderr and exit code 2. What the commands show comes from
decision_seq/datasets/catalog.py; this module parses arguments and handles errors, the commands
themselves are in cli/datasets_commands.py.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from minari.storage import get_dataset_path

from decision_seq.cli.datasets_commands import (
    cmd_build,
    cmd_build_atari,
    cmd_download,
    cmd_import_d4rl,
    cmd_import_dqn_replay,
    cmd_info,
    cmd_list,
)
from decision_seq.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNEXPECTED
from decision_seq.data.episodes import DatasetCorruptError, DatasetNotFoundError
from decision_seq.datasets import atari_build
from decision_seq.datasets.catalog import ATARI_DEMO_BUILD, DATASETS_COMMAND
from decision_seq.datasets.d4rl import D4RL_ENVS
from decision_seq.datasets.dqn_replay import DEFAULT_STEPS, EPISODES_PER_VISIT, GAMES
from decision_seq.datasets.minari_io import RemoteUnavailableError
from decision_seq.datasets.naming import LEVELS

log = logging.getLogger(__name__)

PROG = DATASETS_COMMAND


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
        prog=PROG,
        formatter_class=_FMT,
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

    p = sub.add_parser(
        "list",
        help="local datasets and the catalog of known ones",
        formatter_class=_FMT,
        description="Local datasets (id, episodes, steps, reference scores, eval env) and the "
        "datasets decision-seq knows how to get: built-ins, remote Minari MuJoCo sets, "
        "`build` targets and D4RL imports, with the Hydra `dataset=` name of each.",
        epilog=f"examples:\n  {PROG} list\n  {PROG} list --remote --prefix mujoco/   # needs network",
    )
    p.add_argument("--remote", action="store_true", help="also list the Minari remote (needs network)")
    p.add_argument("--prefix", default=None, help="with --remote: only ids starting with this, e.g. mujoco/")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "info",
        help="details and return statistics of a local dataset",
        formatter_class=_FMT,
        description="Spaces, episodes, steps, episode returns (min/mean/max/std), reference scores "
        "and the dataset's mean normalized score, eval env, algorithm, author, "
        "description and size on disk. Never builds or downloads.",
        epilog=f"examples:\n  {PROG} info decision-seq/pendulum/mixed-v0\n"
        f"  {PROG} info d4rl/hopper/medium-replay-v2 --json",
    )
    p.add_argument("dataset_id", metavar="ID", help="a Minari dataset id")
    p.add_argument("--json", action="store_true", help="print the information as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "download",
        help="fetch a Minari remote dataset (built-in ids are built locally)",
        formatter_class=_FMT,
        description="Download a dataset from the Minari remote with minari.download_dataset "
        "(needs network). Built-in ids (decision-seq/pendulum/mixed-v0, "
        "decision-seq/cartpole/mixed-v0) are built locally instead.",
        epilog=f"examples:\n  {PROG} download mujoco/hopper/medium-v0\n"
        f"  {PROG} download decision-seq/pendulum/mixed-v0   # built locally, no network",
    )
    p.add_argument("dataset_id", metavar="ID", help="a Minari dataset id")
    p.add_argument("--force", action="store_true", help="download (or build) again even if it is local")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "build",
        help="build a D4RL-style dataset locally (decision-seq/<env>/<level>-v0)",
        formatter_class=_FMT,
        description=f"Build a D4RL-style MuJoCo dataset (levels {', '.join(LEVELS)}) locally; see the arguments below.",
        epilog="The datasets it makes are selected with `decision-seq train dataset=<env>-<level>`, "
        "e.g. dataset=hopper-medium-replay.",
    )
    if with_build_args:
        from decision_seq.cli.build import add_build_arguments

        add_build_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "import-d4rl",
        help="convert D4RL HDF5 files (or DT pickles) to local Minari datasets",
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
        "then: decision-seq train dataset=d4rl-hopper-medium-replay",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="D4RL .hdf5 files (or .pkl with --allow-pickle)")
    p.add_argument("--id", default=None, help="dataset id (default d4rl/<env>/<level>-v2); one FILE only")
    p.add_argument("--env", default=None, choices=list(D4RL_ENVS), help="env, if the file name does not say")
    p.add_argument("--level", default=None, help=f"level, if the file name does not say: {', '.join(LEVELS)}")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read .pkl files (unpickling runs any code the file contains: trusted files only)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_d4rl)

    games = ", ".join(g.name for g in GAMES.values())
    p = sub.add_parser(
        "import-dqn-replay",
        help="sample DQN-Replay Atari buffers into a local Minari dataset, as the DT paper did",
        formatter_class=_FMT,
        description="Read a DQN-Replay run's buffers ($store$_{observation,action,reward,terminal}_ckpt.N.gz, "
        "gzip-wrapped numpy arrays; no TensorFlow needed) and sample whole episodes as the Decision "
        f"Transformer paper did (random buffers, {EPISODES_PER_VISIT} consecutive episodes per visit, "
        f"up to --steps steps: 1% of the data by default). Writes dqn-replay/<game>/1pct-v0 with one 84x84 "
        "frame per step, the ALE eval env and the game's random and gamer reference scores; the seed "
        f"and the files read are in its metadata. Games: {games}.",
        epilog="examples:\n"
        f"  {PROG} import-dqn-replay dqn_replay/Breakout/1 --game Breakout\n"
        f"  {PROG} import-dqn-replay dqn_replay/Breakout/1/replay_logs --game Breakout --steps 100000 --seed 3\n"
        "then: decision-seq train dataset.id=dqn-replay/breakout/1pct-v0",
    )
    p.add_argument("directory", metavar="DIR", help="a DQN-Replay run directory or its replay_logs directory")
    p.add_argument("--game", required=True, help=f"the game of the data: {games}")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"step budget (default {DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode sampling (default 0)")
    p.add_argument("--id", default=None, help="dataset id (default dqn-replay/<game>/1pct-v0)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_import_dqn_replay)

    ab = atari_build
    p = sub.add_parser(
        "build-atari",
        help="play an Atari game locally (PPO agent + random actions) into a Minari dataset; offline",
        formatter_class=_FMT,
        description="Train a stable-baselines3 PPO agent (CnnPolicy, rl-baselines3-zoo's Atari settings) on "
        "GAME for --agent-steps env steps, then play whole episodes with it on the evaluation protocol of "
        "DQN-Replay (ALE v5, sticky actions 0.25, frame skip 4, 30 no-op starts, 84x84 grayscale, 108k-frame "
        "cap) until --steps steps are collected (the last episode is finished), each action uniformly random "
        "with probability --random-prob. Writes decision-seq/atari-<game>/<level>-v0 in the format of "
        "import-dqn-replay (one 84x84 frame per step, rewards clipped to [-1, 1], the game's random and "
        "gamer reference scores). The agent is saved in --work-dir and reused or resumed by the same "
        "command. No network: the ALE ROMs ship inside ale-py. Needs the atari extra and stable-baselines3. "
        f"Games: {games}.",
        epilog="examples:\n"
        f"  {PROG} build-atari Breakout                                   # {ab.DEFAULT_AGENT_STEPS} agent steps\n"
        f"  {PROG} {ATARI_DEMO_BUILD}   # the demo-atari data\n"
        f"  {PROG} build-atari Breakout --random-prob 1 --level random    # random play, no agent\n"
        "then: decision-seq train dataset.id=decision-seq/atari-breakout/mixed-v0",
    )
    p.add_argument("game", metavar="GAME", help=f"the game: {games}")
    p.add_argument(
        "--agent-steps",
        type=int,
        default=ab.DEFAULT_AGENT_STEPS,
        help="PPO training budget in env steps (4 frames each; default %(default)s; "
        "about 50-200 steps/s on a 2-core CPU)",
    )
    p.add_argument("--steps", type=int, default=ab.DEFAULT_STEPS, help="dataset steps (default %(default)s)")
    p.add_argument(
        "--random-prob",
        type=float,
        default=ab.DEFAULT_RANDOM_PROB,
        help="probability of a uniformly random action instead of the agent's, per step; 1 = random play, "
        "no agent trained (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the agent, the env and the random actions")
    p.add_argument(
        "--level",
        default=ab.DEFAULT_LEVEL,
        help="name in the id decision-seq/atari-<game>/<level>-v0 (default %(default)s)",
    )
    p.add_argument("--id", default=None, help="dataset id (overrides --level)")
    p.add_argument(
        "--work-dir",
        default=None,
        help="where the agent is saved, reused and resumed "
        f"(default {ab.DEFAULT_WORK_DIR}/<game>-ppo-<N>steps-seed<S>)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_build_atari)
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


_USER_ERRORS = (
    ValueError,
    FileExistsError,
    FileNotFoundError,
    DatasetNotFoundError,
    DatasetCorruptError,
    RemoteUnavailableError,
)


def _disk_error_message(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    try:
        root = str(get_dataset_path())
    except OSError:  # the root itself may be what failed
        root = "the Minari root"
    return (
        f"disk error: {err.strerror or err}{where}. Datasets are written to a hidden temp dir and "
        f"renamed into place when complete, so no partial dataset was left in {root}; "
        f"free space or fix permissions and rerun (`datasets build` resumes from its work dir)"
    )


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
            return _fail(
                f"the SAC dataset build (decision_seq.datasets.sac) cannot be imported: {type(err).__name__}: {err}",
                EXIT_UNEXPECTED,
            )
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
