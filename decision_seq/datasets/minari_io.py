"""Minari I/O shared by every dataset producer: atomic dataset creation, local lookups, the remote.

`create_dataset_atomically` writes a dataset into a hidden temporary directory under the Minari root
and renames it into place only when complete, so an interrupted or failed build never leaves a
half-written dataset behind. `remote_call` turns "no network" and "no remote client installed" into
one `RemoteUnavailableError`, so the command line can say so in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import minari
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.namespace import create_namespace, list_local_namespaces, namespace_hierarchy
from minari.storage import get_dataset_path

log = logging.getLogger(__name__)

# Author of every dataset decision-seq writes (Minari metadata).
AUTHOR = "decision-seq"
AUTHOR_EMAIL = "decision-seq@users.noreply.github.com"

_T = TypeVar("_T")


def dataset_exists_locally(dataset_id: str) -> bool:
    """True when Minari would load `dataset_id` without a download (same test as minari.load_dataset)."""
    return (get_dataset_path(dataset_id) / "data").exists()


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    """Point Minari at another datasets root for the duration of the block (it reads the env var)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _ensure_namespaces(dataset_id: str) -> None:
    """Register the id's namespaces (namespace_metadata.json files) in the current Minari root."""
    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is None:
        return
    existing = set(list_local_namespaces())
    for ns in namespace_hierarchy(namespace):
        if ns not in existing:
            with contextlib.suppress(ValueError):  # created meanwhile by a concurrent build
                create_namespace(ns, description="Datasets built locally by decision-seq")


def create_dataset_atomically(
    dataset_id: str,
    buffers: Iterable[EpisodeBuffer],
    overwrite: bool = False,
    extra_metadata: dict | None = None,
    **create_kwargs,
) -> minari.MinariDataset:
    """`minari.create_dataset_from_buffers`, written to a temp dir and renamed into place when complete.

    The temp dir is a hidden directory inside the Minari root (same filesystem, so the rename is
    atomic; hidden, so Minari's listings skip it) and is always removed. Without `overwrite`, if
    another process finished the same id first, its dataset is kept and loaded. With `overwrite`, an
    existing dataset is replaced only once the new one is complete (moved aside, then deleted).
    `extra_metadata` (JSON-serializable) is added to the dataset's metadata before the rename.
    """
    final_path = get_dataset_path(dataset_id)  # also creates the Minari root
    root = get_dataset_path()
    tmp_root = Path(tempfile.mkdtemp(prefix=".decision-seq-build-", dir=root))
    try:
        with _minari_root(tmp_root):
            dataset = minari.create_dataset_from_buffers(dataset_id, buffer=buffers, **create_kwargs)
            if extra_metadata:
                dataset.storage.update_metadata(extra_metadata)
            built_path = get_dataset_path(dataset_id)
        _ensure_namespaces(dataset_id)
        final_path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite and final_path.exists():
            os.rename(final_path, tmp_root / "replaced")  # removed with tmp_root below
        try:
            os.rename(built_path, final_path)
        except OSError:
            # The target appeared meanwhile: keep the finished one, drop ours.
            if not dataset_exists_locally(dataset_id):
                raise
            log.info("dataset %s was created concurrently; keeping the existing copy", dataset_id)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return minari.load_dataset(dataset_id)


# --------------------------------------------------------------------------------------------------
# The Minari remote
# --------------------------------------------------------------------------------------------------


class RemoteUnavailableError(RuntimeError):
    """The Minari remote could not be reached (no network, or its client package is missing)."""


# Exceptions of these packages mean the remote did not answer (Minari's HF/GCP clients and their stacks).
_NETWORK_MODULES = {
    "requests",
    "urllib3",
    "httpx",
    "httpcore",
    "huggingface_hub",
    "google",
    "socket",
    "ssl",
    "aiohttp",
    "fsspec",
}


def _is_network_error(err: BaseException | None) -> bool:
    while err is not None:
        if isinstance(err, (ConnectionError, TimeoutError)):  # socket.gaierror etc.: matched by module below
            return True
        if any(cls.__module__.split(".")[0] in _NETWORK_MODULES for cls in type(err).__mro__):
            return True
        err = err.__cause__ or err.__context__
    return False


def remote_call(fn: Callable[..., _T], *args, **kwargs) -> _T:
    """Call a Minari remote function; a missing client package or no network -> RemoteUnavailableError.

    Log records up to WARNING are held back during the call (huggingface_hub logs each of its retries
    through loggers and handlers of its own): offline, the outcome is one line, not ten."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return fn(*args, **kwargs)
    except ImportError as err:  # Minari imports its remote client (huggingface_hub) lazily
        raise RemoteUnavailableError(f"the Minari remote needs an extra package: {err}") from err
    except ValueError:
        raise  # Minari's own answers: unknown id, incompatible version
    except Exception as err:
        if _is_network_error(err):
            raise RemoteUnavailableError(
                f"could not reach the Minari remote (offline?): {type(err).__name__}: {err}"
            ) from err
        raise
    finally:
        logging.disable(previous)
