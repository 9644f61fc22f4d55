"""The datasets the suite knows, local or not, and what is known about a local one.

`catalog()` lists every dataset decision-seq knows how to get: the built-ins (built on first use),
Minari's remote MuJoCo and Atari sets (downloaded; Atari ones converted to 84x84 gray frames on first
load), the D4RL-style SAC builds (`datasets build`), the local Atari builds (`datasets build-atari`) and
the D4RL imports (`datasets import-d4rl`), each with its evaluation env, what is known of its reference scores
before it is local, and how to get it. `dataset_info` describes a local dataset (sizes, returns,
metadata); `hydra_dataset_names` maps dataset ids to the `dataset=` options of conf/dataset/.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import minari
import yaml
from minari.storage import get_dataset_path

from decision_seq.data.episodes import (
    DatasetNotFoundError,
    corrupt_dataset_error,
    episodes_from_minari,
    load_minari_dataset,
)
from decision_seq.datasets.builtin import BUILTIN, BUILTIN_ENV_IDS
from decision_seq.datasets.d4rl import D4RL_ENVS, d4rl_file_name
from decision_seq.datasets.dqn_replay import GAMES
from decision_seq.datasets.minari_io import dataset_exists_locally
from decision_seq.datasets.naming import (
    LEVELS,
    REMOTE_MUJOCO_LEVELS,
    atari_build_id,
    d4rl_id,
    dqn_replay_id,
    minari_atari_cache_id,
    minari_atari_id,
    rebuild_id,
    remote_mujoco_id,
)

log = logging.getLogger(__name__)

DATASETS_COMMAND = "decision-seq datasets"  # the command the how-to texts name

# Kinds of catalog entries. BUILD and D4RL_IMPORT (MuJoCo sets reproducing a D4RL task) and the two Atari
# kinds are made locally and never on the Minari remote.
BUILTIN_KIND, REMOTE_KIND, BUILD_KIND, D4RL_IMPORT_KIND = "built-in", "minari remote", "build", "d4rl import"
ATARI_BUILD_KIND, CONVERTED_KIND = "atari build", "converted"  # `datasets build-atari`; Minari Atari copies
DQN_REPLAY_KIND = "dqn-replay import"  # `datasets import-dqn-replay`
LOCAL_ONLY_KINDS = (BUILD_KIND, D4RL_IMPORT_KIND)
LOCAL_ATARI_KINDS = (ATARI_BUILD_KIND, CONVERTED_KIND, DQN_REPLAY_KIND)
MINARI_ATARI_LEVELS = ("expert",)  # Minari's atari/<game>/* sets
ATARI_DEMO_LEVEL = "demo"  # conf/dataset/atari-breakout-demo.yaml, experiment=demo-atari
ATARI_DEMO_BUILD = f"build-atari Breakout --agent-steps 8192 --steps 4000 --level {ATARI_DEMO_LEVEL}"  # its data


@dataclass(frozen=True)
class CatalogEntry:
    """A dataset the suite knows how to get, local or not."""

    dataset_id: str
    kind: str  # one of the *_KIND constants
    eval_env: str
    how: str  # how to get it; "{id}" stands for the dataset id
    ref_scores: tuple[float, float] | None = None  # (random, expert) returns, when known before the data is local
    ref_note: str = ""  # otherwise: where the reference scores will come from

    def how_to_get(self, placeholder: str | None = None) -> str:
        return self.how.format(id=placeholder or self.dataset_id)


def catalog() -> list[CatalogEntry]:
    """Built-ins, remote Minari MuJoCo and Atari sets (and the Atari ones' converted copies), `datasets build`
    and `datasets build-atari` targets, `datasets import-dqn-replay` and `datasets import-d4rl` targets."""
    cmd = DATASETS_COMMAND
    entries = [
        CatalogEntry(
            i,
            BUILTIN_KIND,
            BUILTIN_ENV_IDS.get(i, "?"),
            ref_note="measured at build",
            how=f"built on first use by `decision-seq train`, or `{cmd} download {{id}}`",
        )
        for i in BUILTIN
    ]
    for env, spec in D4RL_ENVS.items():
        entries += [
            CatalogEntry(
                remote_mujoco_id(env, level),
                REMOTE_KIND,
                spec.eval_env_id,
                ref_note="see remote metadata",
                how=f"`{cmd} download {{id}}` (network)",
            )
            for level in REMOTE_MUJOCO_LEVELS
        ]
    for env, spec in D4RL_ENVS.items():
        entries += [
            CatalogEntry(
                rebuild_id(env, level),
                BUILD_KIND,
                spec.eval_env_id,
                ref_note="set by the build",
                how=f"`{cmd} build` (see `{cmd} build --help`)",
            )
            for level in LEVELS
        ]
    for game in GAMES.values():
        for level in MINARI_ATARI_LEVELS:
            remote = minari_atari_id(game.name, level)
            # The remote sets have no reference scores; these are the ones their converted copy gets.
            entries += [
                CatalogEntry(
                    remote,
                    REMOTE_KIND,
                    game.env_id,
                    ref_scores=(game.random_score, game.gamer_score),
                    how=f"`{cmd} download {{id}}` (network); converted to 84x84 gray frames on first training load",
                ),
                CatalogEntry(
                    minari_atari_cache_id(remote),
                    CONVERTED_KIND,
                    game.env_id,
                    ref_scores=(game.random_score, game.gamer_score),
                    how=f"`decision-seq train dataset.id={remote}` (converts {remote} on its first load)",
                ),
            ]
    for game in GAMES.values():
        entries.append(
            CatalogEntry(
                atari_build_id(game.name, "mixed"),
                ATARI_BUILD_KIND,
                game.env_id,
                ref_scores=(game.random_score, game.gamer_score),
                how=f"`{cmd} build-atari {game.name}` (see `{cmd} build-atari --help`)",
            )
        )
    breakout = GAMES["breakout"]
    entries.append(
        CatalogEntry(
            atari_build_id(breakout.name, ATARI_DEMO_LEVEL),
            ATARI_BUILD_KIND,
            breakout.env_id,
            ref_scores=(breakout.random_score, breakout.gamer_score),
            how=f"`{cmd} {ATARI_DEMO_BUILD}` (experiment=demo-atari)",
        )
    )
    entries += [
        CatalogEntry(
            dqn_replay_id(game.name),
            DQN_REPLAY_KIND,
            game.env_id,
            ref_scores=(game.random_score, game.gamer_score),
            how=f"`{cmd} import-dqn-replay <DQN-Replay dir>/{game.name}/1 --game {game.name}` (docs/atari.md)",
        )
        for game in GAMES.values()
    ]
    for env, spec in D4RL_ENVS.items():
        entries += [
            CatalogEntry(
                d4rl_id(env, level),
                D4RL_IMPORT_KIND,
                spec.eval_env_id,
                ref_scores=(spec.ref_min_score, spec.ref_max_score),
                how=f"`{cmd} import-d4rl {d4rl_file_name(env, level)}`",
            )
            for level in LEVELS
        ]
    return entries


def catalog_entry(dataset_id: str) -> CatalogEntry | None:
    """The catalog's entry for `dataset_id`, if it has one."""
    return next((e for e in catalog() if e.dataset_id == dataset_id), None)


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


def eval_env_id(metadata: dict) -> str | None:
    """Evaluation env id from Minari metadata (falls back to the collection env, as Minari does)."""
    for key in ("eval_env_spec", "env_spec"):
        spec = metadata.get(key)
        if spec:
            try:
                return json.loads(spec).get("id")
            except (ValueError, AttributeError):
                continue
    return None


def _not_local_error(dataset_id: str) -> DatasetNotFoundError:
    """The error for a dataset that is not local: how to get it, if the catalog knows it."""
    cmd = DATASETS_COMMAND
    entry = catalog_entry(dataset_id)
    if entry is None:
        return DatasetNotFoundError(
            f"unknown dataset id {dataset_id!r}: not found locally under {get_dataset_path()} and not in the "
            f"catalog; see `{cmd} list` (a remote Minari id can be fetched with `{cmd} download ID`)"
        )
    if entry.kind == BUILTIN_KIND:
        return DatasetNotFoundError(
            f"{dataset_id} is not built yet; it is built on first use by `decision-seq train` or by "
            f"`{cmd} download {dataset_id}`"
        )
    return DatasetNotFoundError(f"{dataset_id} ({entry.kind}) is not local yet; get it with {entry.how_to_get()}")


def _disk_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _plain(value):
    """Minari keeps authors as a set; make it JSON-friendly."""
    return sorted(value) if isinstance(value, (set, frozenset)) else value


def dataset_info(dataset_id: str) -> dict:
    """Everything `datasets info` shows, as plain Python: EpisodeSet.summary() plus Minari metadata.

    Never builds or downloads: a dataset that is not local raises DatasetNotFoundError saying how to get it.
    """
    if not dataset_exists_locally(dataset_id):
        raise _not_local_error(dataset_id)
    dataset = load_minari_dataset(dataset_id)  # local, so this only loads
    episodes = episodes_from_minari(dataset)
    try:
        metadata = dataset.storage.metadata
    except (OSError, KeyError) as err:
        raise corrupt_dataset_error(dataset_id, err) from err
    path = get_dataset_path(dataset_id)
    info = episodes.summary()
    info.update(
        {
            "episode_length_min": int(episodes.episode_lengths.min()),
            "episode_length_mean": float(episodes.episode_lengths.mean()),
            "observation_space": str(dataset.observation_space),
            "action_space": str(dataset.action_space),
            "eval_env": eval_env_id(metadata),
            "algorithm": metadata.get("algorithm_name"),
            "author": _plain(metadata.get("author")),
            "description": metadata.get("description"),
            "minari_version": metadata.get("minari_version"),
            "path": str(path),
            "size_bytes": _disk_size(path),
            "hydra_dataset": hydra_dataset_names().get(dataset_id, []),
        }
    )
    return info
