"""Process resources set at start-up: glibc's mmap threshold for image datasets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from decision_seq.experiment.resources import return_freed_memory

# A child that frees a large block (glibc then raises its mmap threshold), allocates 600 MiB in 4 MiB blocks and
# one live block after them (as a training step leaves tensors alive), frees the 600 MiB, and prints how much
# of it is still resident: glibc's default keeps it in the heap, a threshold fixed at 1 MiB returns it.
_CHILD = """
import sys
import numpy as np
from decision_seq.experiment.resources import return_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "fixed":
    assert return_freed_memory()
big = np.ones(8 << 20, np.uint8); del big          # an 8 MiB block freed: glibc's threshold grows past 4 MiB
before = rss_mib()
blocks = [np.ones(4 << 20, np.uint8) for _ in range(150)]
pin = np.ones(2 << 20, np.uint8)  # live above them: the heap cannot be trimmed below it
del blocks
print(rss_mib() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_go_back_to_the_system():
    def kept(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
        return float(out.stdout)

    assert kept("fixed") < 50  # MiB still resident after freeing 600 MiB
    assert kept("default") > 300  # glibc's default keeps them in the heap: the case the setting is for


def test_return_freed_memory_reports_whether_it_was_set():
    assert return_freed_memory() is sys.platform.startswith("linux")
