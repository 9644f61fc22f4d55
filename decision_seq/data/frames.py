"""Image observations, defined once (torch-free, so the dataset commands import it cheaply).

Atari observations are single 84x84 grayscale uint8 frames, one per step, as DQN-Replay and the DT
Atari code store them; a model's observation is the last FRAME_STACK of them (DQN's history length,
Mnih et al. 2015), stacked by the sampler and by the evaluation, never stored stacked.

The frame cache: a dataset's frames, every episode's but its final one, written once as one flat
(N, 84, 84) uint8 `.npy` file next to the dataset's HDF5 file and opened as a read-only memory map. Training
on the CPU reads a batch's frames from the map and then drops the map's pages from the process
(`release_pages`): the frames stay in the page cache (shared by every run on the machine, reclaimable)
instead of 3.5 GB of anonymous memory per run of a 500k-step set.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

FRAME_SHAPE: tuple[int, int] = (84, 84)
FRAME_STACK = 4
FRAME_CACHE_NAME = "frames_uint8.npy"


def frame_cache_path(data_dir: str | Path) -> Path:
    """Where the frame cache of a dataset whose files are in `data_dir` lives."""
    return Path(data_dir) / FRAME_CACHE_NAME


def open_frame_cache(path: Path, num_frames: int, newer_than: Path | None = None) -> np.memmap | None:
    """The cache at `path` as a read-only (num_frames, 84, 84) uint8 map, or None when it is missing, has
    another shape, or is older than `newer_than` (the dataset was rewritten since)."""
    try:
        if newer_than is not None and path.stat().st_mtime < newer_than.stat().st_mtime:
            return None
        frames = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if frames.dtype != np.uint8 or frames.shape != (num_frames, *FRAME_SHAPE):
        return None
    return frames


def write_frame_cache(path: Path, num_frames: int, episodes: Iterable[np.ndarray]) -> np.memmap:
    """Write `episodes` ((T, 84, 84) uint8 each, num_frames in all) to the cache at `path`, atomically
    (a temporary file renamed into place), with plain writes: no map of the whole file is held meanwhile.
    Returns the cache opened read-only. Raises ValueError when the episodes hold another number of frames."""
    fd, tmp = tempfile.mkstemp(prefix=".frames-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                    "shape": (num_frames, *FRAME_SHAPE)}
            )  # fmt: skip
            written = 0
            for frames in episodes:
                if frames.dtype != np.uint8 or frames.shape[1:] != FRAME_SHAPE:
                    raise ValueError(f"frames must be (T, 84, 84) uint8, got {frames.dtype} {frames.shape}")
                written += frames.shape[0]
                if written > num_frames:
                    break
                f.write(np.ascontiguousarray(frames).data)
        if written != num_frames:
            raise ValueError(f"the episodes hold {written} frames or more, expected {num_frames}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the cache is as readable as the dataset
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return np.load(path, mmap_mode="r")


def is_mapped(frames: np.ndarray) -> bool:
    """True when `frames` is (a view of) a file memory map, whose pages `release_pages` can drop."""
    return isinstance(frames, np.memmap) and getattr(frames, "_mmap", None) is not None


def release_pages(frames: np.ndarray) -> None:
    """Drop the pages of a file-backed map from this process's resident set. The data stays in the page
    cache (a read-only shared map is never dirty), so the next read is a minor fault, not disk I/O. Without
    this, every frame a long run ever touched would count in its RSS. No-op for other arrays."""
    mm = getattr(frames, "_mmap", None) if isinstance(frames, np.memmap) else None  # numpy's mmap.mmap object
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def gather_frames(frames: np.ndarray, index: np.ndarray) -> np.ndarray:
    """frames[index] as a new (len(index), 84, 84) array; a mapped cache's pages are released after."""
    out = np.take(frames, index, axis=0)
    release_pages(frames)
    return np.asarray(out)
