"""Console helpers shared by every command: one rich Console rule and one number format."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

# Width of tables when the output is not a terminal (logs, pipes, CI): rich would assume 80 columns
# and squeeze wide tables, so they get room for every column instead.
PIPE_WIDTH = 200
MISSING = "-"  # how an absent number prints in every table


def make_console(file: TextIO | None = None) -> Console:
    """A rich Console on `file` (stdout by default): the terminal's width, or PIPE_WIDTH when piped."""
    file = sys.stdout if file is None else file
    console = Console(file=file)
    return console if console.is_terminal else Console(file=file, width=PIPE_WIDTH)


def fmt_num(x: float | int | None, spec: str = ".1f") -> str:
    """A number for a table or a log line: `spec` (one decimal by default), MISSING for None."""
    return MISSING if x is None else format(x, spec)
