"""Write a synthetic DQN-Replay run (one game) in the real file format, for scale tests of the importer.

Files, as DQN-Replay (Agarwal et al. 2020) keeps them in a run's replay_logs/ directory: per checkpoint N,
`$store$_{observation,action,reward,terminal}_ckpt.N.gz` (gzip-wrapped `np.save` arrays: observation
(capacity, 84, 84) uint8, action (capacity,) int32, reward (capacity,) float32, terminal (capacity,) uint8)
and `add_count_ckpt.N.gz` (0-d int64). Each episode is preceded by Dopamine's 3 all-zero padding
transitions and ends with terminal = 1.

Sizes. A real buffer holds 1M transitions (7 GB of frames raw); 50 of them would be ~350 GB raw. The
default here is the real number of buffers (50) at a smaller capacity (16k entries): 730k whole-episode
steps in all (5.6 GB of frames raw, 0.4 GB gzipped), so the importer's 500k-step draw (random buffers,
10 consecutive episodes per visit) keeps its semantics and still runs out of budget, not out of buffers.
As in the real data, checkpoint 0 never wrapped (add_count == capacity, an episode starts at index 0) and
later checkpoints did (add_count = (N+1) * capacity, write cursor at 0): their first entries are the tail
of an older episode (no padding; the importer skips it), and every buffer ends inside an unfinished one.

Episodes: lengths from a gamma distribution whose mean grows from ~250 steps (checkpoint 0) to ~1500 (the
last), as a DQN agent's Breakout episodes lengthen while it learns; capped at 27k steps (108k frames with
frame skip 4). Actions repeat the previous one with probability 0.5, rewards are +1 on ~6% of steps.

Frames compress like rendered Atari screens, well but not to nothing: a flat black background with grey
walls and six rows of bricks of distinct grey levels that disappear as rewards come, a moving paddle and
ball, a score block that changes with the score, and ~2% of pixels perturbed (the soft edges that 210x160
-> 84x84 area resampling leaves around moving objects, and a floor against too-good compression).
The gzip ratio of the observation files is printed; it is ~13x at the default level.

    python scripts/make_synthetic_dqn_replay.py /work/atari-scale/Breakout           # 50 x 16k entries
    python scripts/make_synthetic_dqn_replay.py out --buffers 3 --capacity 600 --mean-lengths 60,120  # tiny
    decision-seq datasets import-dqn-replay /work/atari-scale/Breakout --game Breakout
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

PADDING = 3  # Dopamine's zero transitions before each episode (FRAME_STACK - 1)
H = W = 84
MAX_EPISODE_STEPS = 27_000  # 108k frames at frame skip 4
# Brick rows: y range, grey level (distinct per row, as Breakout's colours are after grayscale conversion).
_BRICK_ROWS = [(20 + 3 * r, 23 + 3 * r, level) for r, level in enumerate((142, 128, 114, 100, 86, 72))]
_BRICK_COLS = [(4 + 4 * c, 8 + 4 * c) for c in range(19)]  # 19 bricks of 4 px per row, inside the walls


def save_gz(path: Path, array: np.ndarray, compresslevel: int = 6) -> int:
    """np.save into a gzip file, as Dopamine's checkpointer does; returns the compressed size in bytes."""
    with gzip.open(path, "wb", compresslevel=compresslevel) as f:
        np.save(f, array, allow_pickle=False)
    return path.stat().st_size


def episode_lengths(rng: np.random.Generator, mean: float, total: int) -> list[int]:
    """Gamma(4)-distributed episode lengths (mean `mean`) until their entries (with padding) exceed `total`."""
    lengths, used = [], 0
    while used < total:
        T = int(np.clip(rng.gamma(4.0, mean / 4.0), 30, MAX_EPISODE_STEPS))
        lengths.append(T)
        used += T + PADDING
    return lengths


def render_episode(rng: np.random.Generator, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (T, 84, 84) uint8, actions (T,) int32 in 0..3, rewards (T,) float32 in {0, 1} of one episode."""
    rewards = (rng.random(T) < 0.06).astype(np.float32)
    repeat = rng.random(T) < 0.5
    actions = rng.integers(0, 4, T).astype(np.int32)
    for t in np.flatnonzero(repeat[1:]) + 1:  # sticky-looking actions: repeat the previous one
        actions[t] = actions[t - 1]

    bg = np.zeros((H, W), np.uint8)
    bg[8:10, 2:82] = 142  # top wall
    bg[8:80, 2:4] = 142  # side walls
    bg[8:80, 80:82] = 142
    for y0, y1, level in _BRICK_ROWS:
        bg[y0:y1, 4:80] = level
    frames = np.repeat(bg[None], T, axis=0)  # (T, 84, 84)

    # A brick disappears at each reward, for the rest of the episode.
    bricks = rng.permutation(len(_BRICK_ROWS) * len(_BRICK_COLS))
    for t, b in zip(np.flatnonzero(rewards), bricks, strict=False):
        (y0, y1, _), (x0, x1) = _BRICK_ROWS[b // len(_BRICK_COLS)], _BRICK_COLS[b % len(_BRICK_COLS)]
        frames[t:, y0:y1, x0:x1] = 0

    steps = np.arange(T)
    # Paddle: 8 px wide at rows 76-77, a clipped random walk driven by the actions (2 = right, 3 = left).
    move = np.where(actions == 2, 2, np.where(actions == 3, -2, 0))
    paddle = np.clip(40 + np.cumsum(move), 4, 72)
    frames[steps[:, None], 76, paddle[:, None] + np.arange(8)] = 200
    frames[steps[:, None], 77, paddle[:, None] + np.arange(8)] = 200
    # Ball: 2x2, bouncing in the open area (a triangle wave in x and y).
    bx = 4 + np.abs((rng.integers(0, 150) + 3 * steps) % 148 - 74)  # 4..78
    by = 38 + np.abs((rng.integers(0, 72) + 2 * steps) % 72 - 36)  # 38..74
    for dy in (0, 1):
        for dx in (0, 1):
            frames[steps, by + dy, bx + dx] = 236
    # Score: 3 digits as 3 blocks whose pattern is the digit's bits.
    score = np.cumsum(rewards).astype(np.int64)
    for d in range(3):
        digit = score // 10 ** (2 - d) % 10
        for bit in range(4):
            on = (digit >> bit) & 1
            frames[steps, 1 + bit, 30 + 6 * d : 34 + 6 * d] = np.where(on, 142, 0)[:, None]
    # Resampling edges: ~2% of pixels shifted by a small amount.
    k = H * W // 50
    flat = frames.reshape(T, H * W)
    where = rng.integers(0, H * W, (T, k))
    noise = rng.integers(1, 24, (T, k), dtype=np.uint8)
    flat[steps[:, None], where] = flat[steps[:, None], where] + noise  # wraps at 255: still uint8 noise
    return frames, actions, rewards


def write_buffer(
    directory: Path, n: int, capacity: int, rng: np.random.Generator, *, mean_length: float, wrapped: bool, level: int
) -> dict:
    """Checkpoint n's five files; returns what was written: its whole episodes' (start, end) and byte counts."""
    obs = np.zeros((capacity, H, W), np.uint8)
    act = np.zeros(capacity, np.int32)
    rew = np.zeros(capacity, np.float32)
    term = np.zeros(capacity, np.uint8)
    pos, episodes = 0, []
    if wrapped:
        # The tail of an episode older than the buffer's first entry: its steps, no padding, a terminal.
        lead = min(int(rng.integers(1, 2 * mean_length)), capacity // 2)
        frames, a, r = render_episode(rng, lead)
        obs[:lead], act[:lead], rew[:lead], term[lead - 1] = frames, a, r, 1
        pos = lead
    for T in episode_lengths(rng, mean_length, capacity - pos):
        start = pos
        pos += PADDING  # zero transitions: frame, action, reward and terminal all 0
        n_steps = min(T, capacity - pos)
        if n_steps <= 0:
            break
        frames, a, r = render_episode(rng, T)
        obs[pos : pos + n_steps], act[pos : pos + n_steps], rew[pos : pos + n_steps] = (
            frames[:n_steps],
            a[:n_steps],
            r[:n_steps],
        )
        if n_steps == T:  # finished inside the buffer; the last one is usually cut at its end
            term[pos + T - 1] = 1
            episodes.append((start, pos + T))
        pos += n_steps
    add_count = np.array((n + 1) * capacity if wrapped else capacity, np.int64)
    sizes = {}
    for kind, array in (("observation", obs), ("action", act), ("reward", rew), ("terminal", term)):
        sizes[kind] = save_gz(directory / f"$store$_{kind}_ckpt.{n}.gz", array, level)
    save_gz(directory / f"add_count_ckpt.{n}.gz", add_count, level)
    return {"episodes": episodes, "observation_bytes": sizes["observation"], "raw_bytes": obs.nbytes}


def write_run(
    out: Path,
    *,
    buffers: int = 50,
    capacity: int = 16_000,
    seed: int = 0,
    level: int = 6,
    mean_lengths: tuple[float, float] = (250, 1500),
    log=print,
) -> list[dict]:
    """A run directory `out` with replay_logs/ holding `buffers` checkpoints of `capacity` entries each."""
    directory = Path(out) / "replay_logs"
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for n in range(buffers):
        t0 = time.time()
        rng = np.random.default_rng([seed, n])  # per buffer: one buffer can be rewritten alone, identically
        first, last = mean_lengths
        mean = first + (last - first) * n / max(buffers - 1, 1)
        info = write_buffer(directory, n, capacity, rng, mean_length=mean, wrapped=n > 0, level=level)
        written.append(info)
        steps = sum(e - s - PADDING for s, e in info["episodes"])
        gz, ratio = info["observation_bytes"], info["raw_bytes"] / info["observation_bytes"]
        log(
            f"checkpoint {n}: {len(info['episodes'])} whole episodes, {steps} steps; observations "
            f"{gz / 2**20:.0f} MiB gzipped ({ratio:.1f}x) in {time.time() - t0:.1f} s"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="run directory to create; the files go to OUT/replay_logs/")
    parser.add_argument("--buffers", type=int, default=50, help="checkpoints N = 0..buffers-1 (default 50)")
    parser.add_argument("--capacity", type=int, default=16_000, help="entries per buffer (default 16000; real: 1M)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--mean-lengths",
        default="250,1500",
        help="mean episode length of the first and of the last buffer, linear in between (default 250,1500)",
    )
    parser.add_argument("--compresslevel", type=int, default=6, help="gzip level 1..9 (default 6)")
    args = parser.parse_args(argv)
    if args.buffers < 1:
        parser.error(f"--buffers must be >= 1, got {args.buffers}")
    if args.capacity < 100:
        parser.error(f"--capacity must be >= 100 (room for a few episodes), got {args.capacity}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not 1 <= args.compresslevel <= 9:
        parser.error(f"--compresslevel must be in 1..9, got {args.compresslevel}")
    try:
        mean_lengths = tuple(float(x) for x in args.mean_lengths.split(","))
    except ValueError:
        mean_lengths = ()
    if len(mean_lengths) != 2 or min(mean_lengths) < 1:
        parser.error(f"--mean-lengths must be two numbers >= 1 like 250,1500, got {args.mean_lengths!r}")
    t0 = time.time()
    written = write_run(
        args.out,
        buffers=args.buffers,
        capacity=args.capacity,
        seed=args.seed,
        level=args.compresslevel,
        mean_lengths=mean_lengths,
    )
    steps = sum(e - s - PADDING for info in written for s, e in info["episodes"])
    gz = sum(info["observation_bytes"] for info in written)
    print(
        f"{args.out / 'replay_logs'}: {args.buffers} buffers, {steps} whole-episode steps, observations "
        f"{gz / 2**30:.2f} GiB gzipped, {time.time() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
