"""Atomic file writes: write a temp file beside the target, then rename it over the target.

A crash or SIGKILL at any moment leaves either the previous complete file or the new one, never a torn
one; the temp file (`.<name>.tmp<pid>`) is removed on errors, or at the next run if the process died.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, then rename tmp_path to `path` (atomic on POSIX within one filesystem)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
