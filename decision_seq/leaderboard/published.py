"""Published D4RL and Atari scores the leaderboard shows beside our own, and which row gets which number.

The numbers live in one machine-readable file, `published.csv` next to this module (package data), one
row per (task, model, source); docs/published.md describes its columns and every source (paper, table,
seeds, last or best, episodes, targets). Change them together: tests/leaderboard/test_published.py
checks that they agree. Scores are D4RL normalized scores (x100).

A leaderboard row of model M on D4RL task T shows the first CSV row of (T, M), in file order; all rows of
(T, M) are kept for the footnotes. Any model with rows in the CSV gets a number, no code change needed.

Atari scores live apart, in `published_atari.csv` (same columns; task = the game, e.g. `breakout`;
values gamer-normalized, 100 x (score - random) / (gamer - random)), documented in docs/atari.md: kept out
of published.csv so the D4RL tables (one column per source and model) stay whole. They are shown for our
DQN-Replay 1% sets, `dqn-replay/<game>/1pct-v0`, the data size the DT paper trained on.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources

from decision_seq.datasets import naming

CSV_FILE = "published.csv"
ATARI_CSV_FILE = "published_atari.csv"
COLUMNS = ("task", "model", "source", "protocol", "value", "seeds", "episodes", "targets", "reference", "where")
PROTOCOLS = ("last", "best")  # last: the score when training ends; best: the maximum over evaluations


@dataclass(frozen=True)
class Entry:
    """One row of published.csv: a published score of one model on one D4RL task, from one source."""

    task: str  # D4RL task without version, e.g. "hopper-medium"
    model: str  # our model name, e.g. "dt"
    source: str  # short label shown on the leaderboard, e.g. "DT paper, last"
    protocol: str  # "last" or "best"
    value: float
    seeds: int | None  # None: not verified
    episodes: int | None  # evaluation episodes (per target), None: not verified
    targets: tuple[float, ...]  # evaluation return targets (raw returns); () when not verified
    reference: str  # paper or repository, with arXiv id
    where: str  # table or file in the reference ("" when not verified)


def _optional_int(text: str) -> int | None:
    return int(text) if text.strip() else None


def parse_csv(text: str) -> tuple[Entry, ...]:
    """published.csv's text -> its rows; ValueError naming the line for a malformed file."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{CSV_FILE}: columns must be {', '.join(COLUMNS)}; got {reader.fieldnames}")
    entries, seen = [], set()
    for row in reader:
        where = f"{CSV_FILE} line {reader.line_num}"
        try:
            entry = Entry(
                task=row["task"].strip(),
                model=row["model"].strip(),
                source=row["source"].strip(),
                protocol=row["protocol"].strip(),
                value=float(row["value"]),
                seeds=_optional_int(row["seeds"]),
                episodes=_optional_int(row["episodes"]),
                targets=tuple(float(t) for t in row["targets"].split(";") if t.strip()),
                reference=row["reference"].strip(),
                where=row["where"].strip(),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e
        if not (entry.task and entry.model and entry.source and entry.reference):
            raise ValueError(f"{where}: task, model, source and reference must not be empty")
        if entry.protocol not in PROTOCOLS:
            raise ValueError(f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {entry.protocol!r}")
        key = (entry.task, entry.model, entry.source)
        if key in seen:
            raise ValueError(f"{where}: a second row for {key}")
        seen.add(key)
        entries.append(entry)
    return tuple(entries)


def load_entries(name: str = CSV_FILE) -> tuple[Entry, ...]:
    """Every row of a packaged CSV (published.csv by default), in file order."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return parse_csv(text)


ENTRIES: tuple[Entry, ...] = load_entries()
ATARI_ENTRIES: tuple[Entry, ...] = load_entries(ATARI_CSV_FILE)


def group_entries(entries: tuple[Entry, ...]) -> dict[tuple[str, str], tuple[Entry, ...]]:
    """(model, task) -> its rows in file order; the first is the one a leaderboard row shows."""
    grouped: dict[tuple[str, str], tuple[Entry, ...]] = {}
    for e in entries:
        grouped[(e.model, e.task)] = (*grouped.get((e.model, e.task), ()), e)
    return grouped


PUBLISHED: dict[tuple[str, str], tuple[Entry, ...]] = group_entries(ENTRIES)
PUBLISHED_ATARI: dict[tuple[str, str], tuple[Entry, ...]] = group_entries(ATARI_ENTRIES)


def sources_of(model: str) -> tuple[str, ...]:
    """The source labels of a model, in order of first appearance in the CSV."""
    return tuple(dict.fromkeys(e.source for e in ENTRIES if e.model == model))


def _by_source(model: str) -> dict[str, tuple[tuple[str, float], ...]]:
    return {task: tuple((e.source, e.value) for e in rows) for (m, task), rows in PUBLISHED.items() if m == model}


def _one_column_per_source(model: str) -> dict[str, tuple[float, ...]]:
    """task -> one value per source of `model` (sources_of order); every task must have every source."""
    sources = sources_of(model)
    table = {}
    for task, pairs in _by_source(model).items():
        if tuple(s for s, _ in pairs) != sources:
            raise ValueError(f"{CSV_FILE}: {model} on {task} must have the sources {sources} in that order")
        table[task] = tuple(v for _, v in pairs)
    return table


# Decision Transformer on the nine D4RL locomotion tasks, one value per source in DT_SOURCES order.
DT_SOURCES: tuple[str, ...] = sources_of("dt")
PUBLISHED_DT: dict[str, tuple[float, ...]] = _one_column_per_source("dt")
# Decision Mamba: task -> ((source, value), ...).
PUBLISHED_DMAMBA: dict[str, tuple[tuple[str, float], ...]] = _by_source("dmamba")

DAGGER = "†"
REBUILD_NOTE = f"{DAGGER} D4RL-style rebuild on Gymnasium v5 envs: not the same data; for orientation only."
ATARI_NOTE = (
    "Atari: gamer-normalized scores, 100 x (score - random) / (gamer - random), with the "
    "random / gamer table of the DT paper (docs/atari.md); aggregated apart from every other suite."
)
# Our DQN-Replay 1% ids (naming.dqn_replay_id): the data size of the DT paper's Atari table.
_ATARI_1PCT_ID = re.compile(rf"^{re.escape(naming.DQN_REPLAY_NAMESPACE)}/(?P<game>[a-z0-9_]+)/1pct-v\d+$")


def atari_task(dataset_id: str) -> str | None:
    """'dqn-replay/breakout/1pct-v0' -> 'breakout'; None for any other id (other sizes included)."""
    m = _ATARI_1PCT_ID.match(dataset_id)
    return m["game"] if m else None


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
    """The published score for a cell: exact for `d4rl/<env>/<level>-v2` and `dqn-replay/<game>/1pct-v0`,
    daggered for our D4RL rebuilds."""
    game = atari_task(dataset_id)
    if game is not None:
        rows = PUBLISHED_ATARI.get((model, game))
        if not rows:
            return None
        return Published(rows[0].value, rows[0].source, True, tuple((e.source, e.value) for e in rows))
    task = naming.d4rl_task(dataset_id)
    if task is None:
        return None
    name, exact = task
    rows = PUBLISHED.get((model, name))
    if not rows:
        return None
    return Published(rows[0].value, rows[0].source, exact, tuple((e.source, e.value) for e in rows))
