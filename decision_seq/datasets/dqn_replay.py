"""Import DQN-Replay Atari data (Agarwal et al. 2020) as a local Minari dataset, as the DT paper samples it.

DQN-Replay keeps, per game and run, the replay buffer of a DQN agent at each of its checkpoints N: files
`$store$_{observation,action,reward,terminal}_ckpt.N.gz`, each a gzip-wrapped `np.save` array:
observation (C, 84, 84) uint8 (one grayscale frame per entry), action (C,) int32, reward (C,) float32,
terminal (C,) uint8 (1 on an episode's last step), plus `add_count_ckpt.N.gz` (entries ever added).
They are read here with numpy and gzip only (no TensorFlow, no Dopamine), streaming: the frames of a
buffer are decompressed once, front to back, and only the chosen episodes' frames are kept, one
episode at a time, so a 7 GB buffer never sits in memory.

Sampling (Chen et al. 2021, `create_dataset` of the DT Atari code): whole episodes, up to `steps` steps
in all (1% of the 50M: 500k), drawn from buffers picked at random; each visit to a buffer takes its next
EPISODES_PER_VISIT episodes in order. Departures, each commented where it happens: episodes start only at
real episode starts (the DT code starts reading at index 0, inside an episode, and keeps Dopamine's
zero padding steps), the whole buffer is used (the DT code stops at index 100k), no episode is cut to
fit the budget, and the episodes are written in buffer order.
"""

from __future__ import annotations

import gzip
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec, WrapperSpec
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from tqdm.auto import tqdm

from decision_seq.data.frames import FRAME_SHAPE, FRAME_STACK
from decision_seq.datasets import naming
from decision_seq.datasets.minari_io import AUTHOR, AUTHOR_EMAIL, create_dataset_atomically, dataset_exists_locally

log = logging.getLogger(__name__)

_CODE_PERMALINK = "decision_seq/datasets/dqn_replay.py (decision-seq package)"

DEFAULT_STEPS = naming.DQN_REPLAY_1PCT_STEPS
EPISODES_PER_VISIT = 10  # the DT code's trajectories_per_buffer
KINDS = ("observation", "action", "reward", "terminal")
# What np.save wrote for each array: dtype and shape after the first (capacity) axis.
_LAYOUT = {
    "observation": (np.dtype(np.uint8), FRAME_SHAPE),
    "action": (np.dtype(np.int32), ()),
    "reward": (np.dtype(np.float32), ()),
    "terminal": (np.dtype(np.uint8), ()),
}
# Dopamine writes FRAME_STACK - 1 all-zero transitions before each episode, so that its stacks at the
# episode's first steps hold zero frames; they are not steps of the episode.
PADDING = FRAME_STACK - 1
_FILE_RE = re.compile(r"^\$store\$_(?P<kind>[a-z]+)_ckpt\.(?P<n>\d+)\.gz$")


@dataclass(frozen=True)
class AtariGame:
    """What the suite knows about one Atari game of the DQN-Replay data."""

    name: str  # DQN-Replay's directory name: Breakout
    num_actions: int  # size of the ALE's minimal action set, which DQN-Replay uses
    random_score: float  # gamer normalization: 100 * (score - random) / (gamer - random)
    gamer_score: float

    @property
    def env_id(self) -> str:
        return f"ALE/{self.name}-v5"


# Random / human-gamer scores as the DT paper normalizes (its Appendix B table; kzl/decision-transformer
# issue 16): Hafner et al. 2021 (DreamerV2), Atari table p. 26, as beanie00/Decision-ConvFormer issue 5
# confirms for Breakout (2 / 30). They are the Atari-57 random and human scores (e.g. google-deepmind/
# deepmind-research tandem_dqn/atari_data.py: Breakout 1.7 / 30.5, Qbert 163.9 / 13455.0, Pong -20.7 / 14.6,
# Seaquest 68.4 / 42054.7) rounded to integers. Check: the DT Breakout score 267.5 is a raw 2 + 2.675 * 28 = 76.9.
# num_actions: the ALE minimal action set (ale-py 0.11: gymnasium.make("ALE/<Game>-v5").action_space.n).
# Games without recorded scores are left out rather than given invented numbers (docs/atari.md).
GAMES: dict[str, AtariGame] = {
    "breakout": AtariGame("Breakout", num_actions=4, random_score=2.0, gamer_score=30.0),
    "qbert": AtariGame("Qbert", num_actions=6, random_score=164.0, gamer_score=13455.0),
    "pong": AtariGame("Pong", num_actions=6, random_score=-21.0, gamer_score=15.0),
    "seaquest": AtariGame("Seaquest", num_actions=18, random_score=68.0, gamer_score=42055.0),
}


def check_int_arg(name: str, value, minimum: int) -> None:
    """A command-line integer (bools refused) of at least `minimum`, or one ValueError line naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")


def check_game(game: str) -> AtariGame:
    spec = GAMES.get(game.lower())
    if spec is None:
        raise ValueError(
            f"unknown or unsupported game {game!r}; supported: {', '.join(g.name for g in GAMES.values())} "
            "(a game needs its random and gamer reference scores)"
        )
    return spec


def eval_env_spec(game: AtariGame) -> EnvSpec:
    """The ALE env of DQN-Replay's protocol (Machado et al. 2018 settings, as the data was collected): sticky
    actions 0.25, episodes capped at 108k frames, minimal action set; frame skip 4, 30 no-op starts, 84x84
    grayscale frames by Gymnasium's AtariPreprocessing. Frames are stacked by the policy, as in training."""
    return EnvSpec(
        id=game.env_id,
        entry_point="ale_py.env:AtariEnv",
        kwargs={
            "game": game.name.lower(),
            "obs_type": "rgb",
            "frameskip": 1,  # AtariPreprocessing skips (and max-pools) frames
            "repeat_action_probability": 0.25,
            "full_action_space": False,
            "max_num_frames_per_episode": 108_000,
        },
        additional_wrappers=(
            WrapperSpec(
                "AtariPreprocessing",
                "gymnasium.wrappers:AtariPreprocessing",
                {
                    "noop_max": 30,
                    "frame_skip": 4,
                    "screen_size": 84,
                    "terminal_on_life_loss": False,
                    "grayscale_obs": True,
                    "scale_obs": False,
                },
            ),
        ),
    )


# --------------------------------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------------------------------


def replay_file(directory: Path, kind: str, n: int) -> Path:
    return directory / f"$store$_{kind}_ckpt.{n}.gz"


class _NpyStream:
    """A gzip-wrapped .npy array opened for sequential reading: header parsed, rows read on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.file = gzip.open(path, "rb")  # noqa: SIM115 (kept open for reading rows; closed by close())
        try:
            version = np.lib.format.read_magic(self.file)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            self.shape, fortran, self.dtype = read_header(self.file)
        except (OSError, EOFError, ValueError) as err:
            self.file.close()
            raise ValueError(f"{path}: not a gzip-wrapped np.save array ({type(err).__name__}: {err})") from None
        if fortran:
            self.file.close()
            raise ValueError(f"{path}: Fortran-ordered array; DQN-Replay files are C-ordered")
        self.offset = self.file.tell()
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop); reading forward only is cheap (a backward seek decompresses from the start)."""
        self.file.seek(self.offset + start * self.row_bytes)
        try:
            data = self.file.read((stop - start) * self.row_bytes)
        except (OSError, EOFError) as err:
            raise ValueError(f"{self.path}: truncated or corrupt ({type(err).__name__}: {err})") from None
        if len(data) != (stop - start) * self.row_bytes:
            raise ValueError(f"{self.path}: truncated: fewer rows than its header's shape {self.shape}")
        return np.frombuffer(data, self.dtype).reshape(stop - start, *self.shape[1:])

    def read_all(self) -> np.ndarray:
        if self.shape == ():  # a 0-d array (add_count): one item
            return self.read(0, 1).reshape(())
        return self.read(0, self.shape[0])

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> _NpyStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def find_checkpoints(directory: Path) -> list[int]:
    """Checkpoint numbers N with all four files; a partial set or none at all is an error."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory (give a DQN-Replay run's replay_logs directory)")
    found: dict[int, set[str]] = {}
    for p in directory.iterdir():
        m = _FILE_RE.match(p.name)
        if m and m["kind"] in KINDS:
            found.setdefault(int(m["n"]), set()).add(m["kind"])
    if not found:
        raise FileNotFoundError(
            f"{directory}: no DQN-Replay files ($store$_observation_ckpt.N.gz and the action, reward and terminal "
            "files of the same N)"
        )
    for n, kinds in sorted(found.items()):
        missing = [k for k in KINDS if k not in kinds]
        if missing:
            names = ", ".join(replay_file(directory, k, n).name for k in missing)
            raise FileNotFoundError(f"{directory}: checkpoint {n} is incomplete, missing {names}")
    return sorted(found)


def _check_headers(directory: Path, n: int) -> int:
    """Dtypes and shapes of checkpoint n's four arrays; returns their common length (the capacity)."""
    lengths = {}
    for kind in KINDS:
        path = replay_file(directory, kind, n)
        stream = _NpyStream(path)
        stream.close()
        dtype, row = _LAYOUT[kind]
        if stream.dtype != dtype or tuple(stream.shape[1:]) != row or len(stream.shape) != 1 + len(row):
            raise ValueError(f"{path}: array {stream.dtype} {stream.shape}, expected {dtype} {('capacity', *row)}")
        lengths[kind] = stream.shape[0]
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{directory}: checkpoint {n}'s arrays have different lengths: {lengths}")
    return lengths["observation"]


def _add_count(directory: Path, n: int) -> int | None:
    path = directory / f"add_count_ckpt.{n}.gz"
    if not path.exists():
        return None
    stream = _NpyStream(path)
    try:
        return int(np.asarray(stream.read_all()).reshape(-1)[0])
    finally:
        stream.close()


@dataclass(frozen=True)
class Episode:
    buffer: int  # checkpoint N
    start: int  # index of the first (padding) entry; the episode's own steps are [start + PADDING, end)
    end: int  # one past its terminal step

    @property
    def length(self) -> int:
        return self.end - self.start - PADDING


def buffer_episodes(directory: Path, n: int, capacity: int) -> tuple[list[Episode], np.ndarray, np.ndarray]:
    """Whole episodes of checkpoint n in index order, and its actions and rewards.

    An episode is the entries after a terminal (or from index 0 of a buffer that never wrapped) up to and
    including the next terminal: PADDING zero transitions (checked), then its steps. Departure from the
    DT code, which reads from index 0 (inside an episode) and keeps the padding as training steps.
    """
    arrays = {}
    for kind in ("action", "reward", "terminal"):
        stream = _NpyStream(replay_file(directory, kind, n))
        try:
            arrays[kind] = stream.read_all()
        finally:
            stream.close()
    actions, rewards, terminal = arrays["action"], arrays["reward"], arrays["terminal"]
    add_count = _add_count(directory, n)
    valid_end, cursor = capacity, None
    if add_count is not None and add_count <= capacity:
        valid_end = add_count  # a buffer that never wrapped: entries past add_count were never written
    elif add_count is not None:
        cursor = add_count % capacity  # circular buffer: the newest entry is at cursor - 1, the oldest at cursor
    ends = [int(e) for e in np.flatnonzero(terminal[:valid_end]) + 1]  # one past each terminal
    if add_count is not None and add_count <= capacity:
        bounds = list(zip([0, *ends[:-1]], ends, strict=True))  # a buffer that never wrapped starts an episode at 0
    else:
        bounds = list(zip(ends[:-1], ends[1:], strict=True))  # unknown history: from the first terminal on
    episodes = []
    for start, end in bounds:
        if cursor is not None and start <= cursor < end:
            # From the write cursor on lies the oldest data: an episode reaching it, or starting there after
            # the newest terminal, glues unrelated data together.
            continue
        ep = Episode(n, start, end)
        pad = slice(start, start + PADDING)
        if ep.length < 1 or actions[pad].any() or rewards[pad].any():
            raise ValueError(
                f"{replay_file(directory, 'terminal', n)}: the entries {start}..{end - 1} do not start with "
                f"Dopamine's {PADDING} zero padding transitions; not a DQN-Replay buffer?"
            )
        episodes.append(ep)
    return episodes, actions, rewards


def sample_episodes(per_buffer: dict[int, list[Episode]], steps: int, seed: int) -> list[Episode]:
    """The DT code's sampling: a buffer at random, its next EPISODES_PER_VISIT episodes, until `steps`.

    Departure: no episode is cut and the total never exceeds `steps` (the DT code overshoots by the last
    trajectory); sampling stops at the first episode that does not fit, or when every buffer is used up."""
    rng = np.random.default_rng(seed)
    cursors = dict.fromkeys(per_buffer, 0)
    chosen, total = [], 0
    while True:
        open_buffers = [n for n in sorted(per_buffer) if cursors[n] < len(per_buffer[n])]
        if not open_buffers:
            return chosen
        n = open_buffers[int(rng.integers(len(open_buffers)))]
        for ep in per_buffer[n][cursors[n] : cursors[n] + EPISODES_PER_VISIT]:
            if total + ep.length > steps:
                return chosen
            chosen.append(ep)
            total += ep.length
            cursors[n] += 1


def _episode_buffers(
    directory: Path, chosen: list[Episode], steps_of: dict[Episode, tuple[np.ndarray, np.ndarray]]
) -> Iterator[EpisodeBuffer]:
    """The chosen episodes in buffer order, frames streamed from each observation file front to back;
    `steps_of`: each episode's actions and rewards."""
    for n in sorted({ep.buffer for ep in chosen}):
        stream = _NpyStream(replay_file(directory, "observation", n))
        try:
            for ep in sorted((e for e in chosen if e.buffer == n), key=lambda e: e.start):
                frames = stream.read(ep.start, ep.end)  # (PADDING + T, 84, 84)
                if frames[:PADDING].any():
                    raise ValueError(
                        f"{stream.path}: frames {ep.start}..{ep.start + PADDING - 1} before an episode are not "
                        "Dopamine's zero padding; not a DQN-Replay buffer?"
                    )
                actions, rewards = steps_of[ep]
                T = ep.length
                # Minari stores T+1 observations; the frame after the terminal step is not in the buffer (the
                # next entries are the next episode's padding), so the last frame is repeated.
                obs = np.concatenate([frames[PADDING:], frames[-1:]])  # (T+1, 84, 84)
                terminations = np.zeros(T, bool)
                terminations[-1] = True
                yield EpisodeBuffer(
                    observations=obs,
                    actions=actions,
                    rewards=rewards,
                    terminations=terminations,
                    truncations=np.zeros(T, bool),
                    infos={},
                )
        finally:
            stream.close()


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------


def replay_dir(directory: str | Path) -> Path:
    """A run's directory or its replay_logs subdirectory (where DQN-Replay keeps the files)."""
    directory = Path(directory)
    return directory / "replay_logs" if (directory / "replay_logs").is_dir() else directory


def write_frames_dataset(
    dataset_id: str,
    buffers: Iterable[EpisodeBuffer],
    *,
    spec: AtariGame,
    eval_env: gym.envs.registration.EnvSpec,
    extra_metadata: dict,
    algorithm_name: str,
    description: str,
    code_permalink: str,
    overwrite: bool = False,
) -> minari.MinariDataset:
    """Episodes of single 84x84 uint8 frames and Discrete actions as a Minari dataset, written atomically:
    the one format of every Atari set (DQN-Replay imports, `build-atari`, converted Minari sets). The game's
    random / gamer scores are set as metadata, not through create_dataset_from_buffers, which would gym.make
    the ALE env to check them; no collection env; no JPEG (Minari's default for images is lossy)."""
    metadata = {"ref_min_score": spec.random_score, "ref_max_score": spec.gamer_score, **extra_metadata}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*env_spec is None.*")  # no collection env: intended
        return create_dataset_atomically(
            dataset_id,
            buffers,
            overwrite=overwrite,
            extra_metadata=metadata,
            env=None,
            eval_env=eval_env,
            observation_space=gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8),
            action_space=gym.spaces.Discrete(spec.num_actions),
            jpeg_encoding=False,  # frames must stay exact
            algorithm_name=algorithm_name,
            author=AUTHOR,
            author_email=AUTHOR_EMAIL,
            code_permalink=code_permalink,
            description=description,
        )


def import_dqn_replay(
    directory: str | Path,
    *,
    game: str,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    dataset_id: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> minari.MinariDataset:
    """Sample whole episodes (up to `steps` steps) from a DQN-Replay run's buffers into a Minari dataset.

    Everything is checked before anything is written (the game, the id, every file's presence, dtype, shape
    and length, the actions' range); the dataset is written atomically, so a failure leaves nothing behind.
    """
    spec = check_game(game)
    check_int_arg("--steps", steps, 1)
    check_int_arg("--seed", seed, 0)
    dataset_id = dataset_id or naming.dqn_replay_id(spec.name, steps)
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise ValueError(
            f"invalid dataset id {dataset_id!r}; Minari ids look like (namespace/)name-v<version>, "
            f"e.g. {naming.dqn_replay_id(spec.name)}"
        ) from None
    if dataset_exists_locally(dataset_id) and not overwrite:
        raise FileExistsError(f"dataset {dataset_id} already exists locally; pass --overwrite to replace it")
    directory = replay_dir(directory)
    checkpoints = find_checkpoints(directory)
    capacities = {n: _check_headers(directory, n) for n in checkpoints}

    per_buffer = {}
    for n in tqdm(checkpoints, desc="reading episode boundaries", unit="buffer", disable=not progress):
        episodes, actions, rewards = buffer_episodes(directory, n, capacities[n])
        bad = (actions < 0) | (actions >= spec.num_actions)
        if bad.any():
            raise ValueError(
                f"{replay_file(directory, 'action', n)}: action {int(actions[bad][0])} outside {spec.name}'s "
                f"{spec.num_actions} actions; is this really {spec.name} data?"
            )
        per_buffer[n] = episodes
    chosen = sample_episodes(per_buffer, steps, seed)
    if not chosen:
        raise ValueError(f"{directory}: no whole episode of at most {steps} steps in the buffers")
    steps_of = {}  # only the chosen steps' actions and rewards stay in memory (16 bytes a step)
    for n in sorted({ep.buffer for ep in chosen}):
        _, actions, rewards = buffer_episodes(directory, n, capacities[n])
        for ep in (e for e in chosen if e.buffer == n):
            own = slice(ep.start + PADDING, ep.end)
            steps_of[ep] = (actions[own].astype(np.int64), rewards[own].astype(np.float64))
    total = sum(ep.length for ep in chosen)
    files = [replay_file(directory, k, n).name for n in sorted({ep.buffer for ep in chosen}) for k in KINDS]
    log.info(
        "%s: %d episodes, %d steps from %d of %d buffers",
        directory,
        len(chosen),
        total,
        len(files) // 4,
        len(checkpoints),
    )

    description = (
        f"DQN-Replay {spec.name} (Agarwal et al. 2020), {len(chosen)} whole episodes ({total} steps, budget {steps}) "
        f"sampled as in the Decision Transformer paper: random buffers, {EPISODES_PER_VISIT} consecutive episodes "
        f"per visit, seed {seed}. One 84x84 grayscale frame per step (stack the last {FRAME_STACK}); rewards "
        f"clipped to [-1, 1] as stored. Evaluation: {spec.env_id} with sticky actions 0.25, frame skip 4, 30 no-op "
        f"starts, 108k-frame cap. Reference scores: random {spec.random_score}, gamer {spec.gamer_score} "
        "(normalized = gamer-normalized)."
    )
    metadata = {
        "dqn_replay": {
            "game": spec.name,
            "source_dir": str(directory.resolve()),
            "files": files,
            "seed": seed,
            "steps_budget": steps,
            "steps": total,
            "episodes": len(chosen),
            "episodes_per_visit": EPISODES_PER_VISIT,
            "order": "buffer order (by checkpoint, then position)",
        },
    }
    writing = tqdm(
        _episode_buffers(directory, chosen, steps_of),
        total=len(chosen),
        desc=f"writing {dataset_id}",
        unit="ep",
        disable=not progress,
    )
    dataset = write_frames_dataset(
        dataset_id,
        writing,
        spec=spec,
        eval_env=eval_env_spec(spec),
        extra_metadata=metadata,
        algorithm_name="DQN (Nature) replay, DQN-Replay",
        description=description,
        code_permalink=_CODE_PERMALINK,
        overwrite=overwrite,
    )
    log.info("imported %s as %s (%d episodes, %d steps)", directory, dataset_id, dataset.total_episodes, total)
    return dataset
