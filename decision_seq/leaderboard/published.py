"""Published D4RL scores the leaderboard shows beside our own, and which row gets which number.

Every number here, with its paper, authors, year, arXiv id and table, is listed in
docs/published-scores.md; change them together. Scores are D4RL normalized scores (x100).
"""

from __future__ import annotations

from dataclasses import dataclass

from decision_seq.datasets import naming

# Decision Transformer on the nine D4RL locomotion tasks, one column per source. `last`/`final` is the
# score after the last training step; `best` is the maximum over the evaluations during training.
DT_SOURCES = ("DT paper, last", "CORL, last", "CORL, best", "d3rlpy, final", "d3rlpy, best")
PUBLISHED_DT: dict[str, tuple[float, ...]] = {  # task -> one value per DT_SOURCES entry
    "halfcheetah-medium": (42.6, 42.2, 42.7, 42.6, 43.5),
    "hopper-medium": (67.6, 65.1, 69.4, 60.4, 77.4),
    "walker2d-medium": (74.0, 67.6, 74.7, 67.4, 80.6),
    "halfcheetah-medium-replay": (36.6, 38.9, 40.3, 38.4, 41.1),
    "hopper-medium-replay": (82.7, 81.8, 88.7, 79.6, 94.8),
    "walker2d-medium-replay": (66.6, 59.9, 68.2, 56.8, 78.8),
    "halfcheetah-medium-expert": (86.8, 91.6, 93.4, 56.5, 88.2),
    "hopper-medium-expert": (107.6, 110.4, 111.2, 108.9, 112.7),
    "walker2d-medium-expert": (108.1, 107.1, 108.7, 108.4, 109.7),
}
# Decision Mamba (Ota 2024) reports hopper-medium only, as the maximum over evaluations during training.
PUBLISHED_DMAMBA: dict[str, tuple[tuple[str, float], ...]] = {"hopper-medium": (("DMamba paper, best", 83.5),)}

DAGGER = "†"
REBUILD_NOTE = f"{DAGGER} D4RL-style rebuild on Gymnasium v5 envs: not the same data; for orientation only."


@dataclass(frozen=True)
class Published:
    """The published number shown for one leaderboard row: the first source's, with all sources kept."""

    value: float
    source: str
    exact: bool  # False: our rebuild of the task, shown with a dagger
    all_sources: tuple[tuple[str, float], ...]

    def label(self) -> str:
        return f"{self.value:.1f}{'' if self.exact else DAGGER} ({self.source})"


def published_for(dataset_id: str, model: str) -> Published | None:
    """The published score for a cell: exact for `d4rl/<env>/<level>-v2`, daggered for our rebuilds."""
    task = naming.d4rl_task(dataset_id)
    if task is None:
        return None
    name, exact = task
    if model == "dt" and name in PUBLISHED_DT:
        entries = tuple(zip(DT_SOURCES, PUBLISHED_DT[name], strict=True))
    elif model == "dmamba" and name in PUBLISHED_DMAMBA:
        entries = PUBLISHED_DMAMBA[name]
    else:
        return None
    return Published(entries[0][1], entries[0][0], exact, entries)
