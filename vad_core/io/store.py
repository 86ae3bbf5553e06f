"""The storage interface: tables, JSON and bytes by key, on any pyarrow file system.

    store = LocalTableStore("/data/vad_home")
    store.write_table("demo/scores/frame_scores.parquet", frames, {"dataset": "demo"})
    frames, meta = store.read_frame("demo/scores/frame_scores.parquet")

A key is a relative POSIX path ("demo/features/test/01.parquet"); keys, never local paths, cross
the boundary, so callers do not know where things live. `TableStore` is the small abstract
interface (six primitives); `FileSystemStore` implements it on any `pyarrow.fs.FileSystem`, so
another backend is another file system: `LocalTableStore` is the local one; an object store is
`FileSystemStore(pyarrow.fs.S3FileSystem(...), "bucket/prefix", atomic_rename=False)` (an object
PUT is atomic on its own, a rename there is a copy). `MemoryTableStore` keeps everything in a dict
(tests, and proof that nothing assumes a disk).

Every write replaces the whole value atomically: a reader sees the old value or the new one,
never a part. With `atomic_rename` the bytes go to a hidden temporary key beside the target first
and are renamed onto it.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import json
import math
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vad_core.errors import VADInputError
from vad_core.io.hashing import update_from_stream
from vad_core.io.tables import schema_metadata, to_arrow_table, with_metadata


def check_key(key: str) -> str:
    """A key is a non-empty relative POSIX path without '.', '..' or empty parts; returns it normalized."""
    text = str(key).replace("\\", "/")
    parts = text.split("/")
    if not text or text.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise VADInputError(f"storage key {key!r}: must be a relative path like 'demo/scores/x.parquet'")
    return text


def join_key(*parts: str) -> str:
    """Join key parts with '/', skipping empty ones (`join_key("", "a.parquet") == "a.parquet"`)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become null so the file stays valid JSON; paths and numpy scalars as values."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class TableStore(ABC):
    """Tables (Parquet with string schema metadata), JSON and bytes, addressed by key.

    Implementations supply six primitives: `open_input`, `write_bytes` (atomic replace),
    `exists`, `list`, `delete`, `location`. Everything else is built on them here.
    """

    # -- primitives ------------------------------------------------------------------------

    @abstractmethod
    def open_input(self, key: str) -> pa.NativeFile:
        """A random-access readable file for `key`; `FileNotFoundError` when there is none."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes | pa.Buffer) -> None:
        """Store `data` under `key`, replacing any previous value atomically."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a value is stored under `key`."""

    @abstractmethod
    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Every key under `prefix` (a folder-like key, '' = all) ending in `suffix`, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where `key` lives, for people and logs (a local path, a URI)."""

    # -- built on the primitives -----------------------------------------------------------

    def read_bytes(self, key: str) -> bytes:
        """The bytes under `key`; `VADInputError` naming the location when there are none."""
        try:
            with self.open_input(key) as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            raise VADInputError(f"{self.location(key)}: not found") from None

    def read_table(self, key: str, columns: builtins.list[str] | None = None) -> pa.Table:
        """The Parquet table under `key` (only `columns` when given)."""
        try:
            with self.open_input(key) as fh:
                return pq.read_table(fh, columns=columns)
        except FileNotFoundError:
            raise VADInputError(f"{self.location(key)}: not a readable Parquet file (not found)") from None
        except (OSError, pa.ArrowInvalid) as exc:
            raise VADInputError(f"{self.location(key)}: not a readable Parquet file ({exc})") from None

    def read_frame(self, key: str, columns: builtins.list[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
        """The table under `key` as a DataFrame and its string schema metadata (vectors as arrays per row)."""
        table = self.read_table(key, columns)
        return table.to_pandas(), schema_metadata(table.schema)

    def read_metadata(self, key: str) -> dict[str, str]:
        """The project's schema metadata of the table under `key`, without reading its data."""
        try:
            with self.open_input(key) as fh:
                return schema_metadata(pq.read_schema(fh))
        except FileNotFoundError:
            raise VADInputError(f"{self.location(key)}: not a readable Parquet file (not found)") from None
        except (OSError, pa.ArrowInvalid) as exc:
            raise VADInputError(f"{self.location(key)}: not a readable Parquet file ({exc})") from None

    def write_table(self, key: str, data: pa.Table | pd.DataFrame, metadata: Mapping[str, str] | None = None) -> str:
        """Store a table (a DataFrame's vector column becomes a fixed-size list) with merged metadata; returns `key`."""
        table = data if isinstance(data, pa.Table) else to_arrow_table(data)
        sink = pa.BufferOutputStream()
        pq.write_table(with_metadata(table, metadata), sink)
        self.write_bytes(key, sink.getvalue())
        return key

    def read_json(self, key: str) -> Any | None:
        """The parsed JSON under `key`, or None when there is none."""
        if not self.exists(key):
            return None
        try:
            return json.loads(self.read_bytes(key))
        except ValueError as exc:
            raise VADInputError(f"{self.location(key)}: not valid JSON ({exc})") from None

    def write_json(self, key: str, obj: Any) -> str:
        """Store `obj` as indented, key-sorted JSON (NaN/inf as null); returns `key`."""
        self.write_bytes(key, (json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n").encode())
        return key

    def sha256(self, key: str) -> str:
        """Hex sha256 of the bytes under `key`, streamed."""
        try:
            with self.open_input(key) as fh:
                return update_from_stream(hashlib.sha256(), fh).hexdigest()
        except FileNotFoundError:
            raise VADInputError(f"{self.location(key)}: not found") from None


class FileSystemStore(TableStore):
    """A `TableStore` on any pyarrow file system, rooted at `root` on it.

    `atomic_rename=True` (file systems): write a hidden temporary file beside the target, then
    rename it onto the target. False (object stores): write the object directly, which an object
    store publishes atomically when the upload completes.
    """

    def __init__(self, filesystem: pafs.FileSystem, root: str = "", atomic_rename: bool = True) -> None:
        self.root = root.rstrip("/")
        self.filesystem = pafs.SubTreeFileSystem(self.root, filesystem) if self.root else filesystem
        self.atomic_rename = atomic_rename

    def _ensure_parent(self, key: str) -> None:
        parent = PurePosixPath(key).parent.as_posix()
        if parent != ".":
            self.filesystem.create_dir(parent, recursive=True)

    def _after_write(self, tmp_key: str) -> None:
        """Hook before the rename (the local store makes the bytes durable here)."""

    def open_input(self, key: str) -> pa.NativeFile:
        return self.filesystem.open_input_file(check_key(key))

    def write_bytes(self, key: str, data: bytes | pa.Buffer) -> None:
        key = check_key(key)
        self._ensure_parent(key)
        if not self.atomic_rename:
            with self.filesystem.open_output_stream(key, compression=None) as out:
                out.write(data)
            return
        name = PurePosixPath(key)
        tmp = (name.parent / f".{name.name}.{uuid.uuid4().hex[:12]}.tmp").as_posix()
        try:
            with self.filesystem.open_output_stream(tmp, compression=None) as out:
                out.write(data)
            self._after_write(tmp)
            self.filesystem.move(tmp, key)
        finally:
            if self.filesystem.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.filesystem.delete_file(tmp)

    def exists(self, key: str) -> bool:
        return self.filesystem.get_file_info(check_key(key)).type == pafs.FileType.File

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        base = check_key(prefix) if prefix.strip("/") else ""
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        keys = []
        for info in self.filesystem.get_file_info(selector):
            name = info.path.lstrip("/")
            if info.type == pafs.FileType.File and name.endswith(suffix) and not info.base_name.startswith("."):
                keys.append(name)  # hidden names are temporaries of writes in flight
        return sorted(keys)

    def delete(self, key: str) -> None:
        key = check_key(key)
        if self.filesystem.get_file_info(key).type == pafs.FileType.File:
            self.filesystem.delete_file(key)

    def location(self, key: str) -> str:
        return join_key(self.root, check_key(key)) if self.root else check_key(key)


class LocalTableStore(FileSystemStore):
    """A folder on the local disk (`pyarrow.fs.LocalFileSystem` under `root`); `location` is the file's path.

    Writes are fsynced before the rename, so a crash or power loss leaves the old value or the new one.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).expanduser().resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        super().__init__(pafs.LocalFileSystem(), self.path.as_posix(), atomic_rename=True)

    def _after_write(self, tmp_key: str) -> None:
        fd = os.open(self.path / tmp_key, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def location(self, key: str) -> str:
        return str(self.path / check_key(key))


class MemoryTableStore(TableStore):
    """Everything in a dict (thread-safe): for tests, and to show nothing assumes a disk."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def open_input(self, key: str) -> pa.NativeFile:
        with self._lock:
            data = self._data.get(check_key(key))
        if data is None:
            raise FileNotFoundError(key)
        return pa.BufferReader(data)

    def write_bytes(self, key: str, data: bytes | pa.Buffer) -> None:
        value = bytes(data)  # a copy: later changes to the caller's buffer do not leak in
        with self._lock:
            self._data[check_key(key)] = value

    def exists(self, key: str) -> bool:
        with self._lock:
            return check_key(key) in self._data

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        base = check_key(prefix) + "/" if prefix.strip("/") else ""
        with self._lock:
            return sorted(k for k in self._data if k.startswith(base) and k.endswith(suffix))

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(check_key(key), None)

    def location(self, key: str) -> str:
        return f"memory://{check_key(key)}"


# URI scheme -> store factory. Stores with heavier dependencies register themselves when their
# module is imported; the package re-exports are lazy, so `open_store` imports that module itself.
STORE_SCHEMES: dict[str, Callable[[str], TableStore]] = {
    "file": lambda rest: LocalTableStore(rest),
    "memory": lambda rest: MemoryTableStore(),
}
_SCHEME_MODULES = {"s3": "vad_core.io.object_store"}


def open_store(location: str | os.PathLike[str]) -> TableStore:
    """The store a location names: a local path or `file://...`; another registered `<scheme>://...`."""
    text = str(location)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return LocalTableStore(text)
    if scheme not in STORE_SCHEMES and scheme in _SCHEME_MODULES:
        importlib.import_module(_SCHEME_MODULES[scheme])  # registers its scheme in STORE_SCHEMES
    if scheme not in STORE_SCHEMES:
        raise VADInputError(f"storage location {text!r}: no store for {scheme}:// (known: {sorted(STORE_SCHEMES)})")
    return STORE_SCHEMES[scheme](rest)


__all__ = [
    "STORE_SCHEMES",
    "FileSystemStore",
    "LocalTableStore",
    "MemoryTableStore",
    "TableStore",
    "check_key",
    "join_key",
    "jsonable",
    "open_store",
]
