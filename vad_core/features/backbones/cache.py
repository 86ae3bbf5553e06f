"""The weights cache: where it lives, hashing, locking and atomic writes.

Several processes (Dagster workers, test runs) may ask for the same weights at the same
time on first use. Every file in the cache is written to a temporary name in the same folder
and renamed into place (`os.replace` is atomic on one file system), so a reader never sees a
half-written file; a `filelock.FileLock` around each fetch/convert step keeps the work from
being done twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock
import torch

from vad_core.io.hashing import sha256_file
from vad_core.io.tables import atomic_path

CACHE_ENV = "VAD_CACHE"
LOCK_TIMEOUT_S = 1800.0  # a first download + conversion on a slow link can take minutes


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Return (and create) the cache folder: `path`, else `$VAD_CACHE`, else `~/.cache/vad`."""
    root = Path(path) if path is not None else Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vad")
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an inter-process lock named after `path` (a `.lock` file beside it)."""
    lock = filelock.FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)
    with lock:
        yield


def save_torch_atomic(obj: Any, dest: Path) -> str:
    """`torch.save` to `dest` atomically; returns the sha256 of the written file."""
    with atomic_path(dest) as tmp:
        torch.save(obj, tmp)
        digest = sha256_file(tmp)
    return digest


def write_json_atomic(obj: dict[str, Any], dest: Path) -> None:
    """Write a small JSON record atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON record, or None when it is missing or unreadable (then it is rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


__all__ = ["CACHE_ENV", "LOCK_TIMEOUT_S", "cache_dir", "locked", "read_json", "save_torch_atomic", "write_json_atomic"]
