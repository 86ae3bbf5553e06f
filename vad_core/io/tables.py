"""Parquet tables: atomic writes, schema metadata, fixed-size float32 feature columns."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vad_core.errors import VADInputError


def umask_mode() -> int:
    """The mode a plainly created file gets (0666 less the umask); mkstemp alone gives 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it gets the usual file mode and is renamed
    onto `dest` (atomic on one file system), otherwise it is removed. Every atomic write goes here."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def features_to_arrow(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """`(N, D)` float32 matrix -> Arrow `fixed_size_list<float32>[D]` without a Python loop."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise VADInputError(f"feature matrix must be 2-D, got shape {matrix.shape}")
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def to_arrow_table(df: pd.DataFrame, feature_column: str | None = "feature") -> pa.Table:
    """DataFrame -> Arrow table; a column of equal-length vectors becomes a fixed-size list."""
    if feature_column is not None and feature_column in df.columns:
        rest = df.drop(columns=[feature_column])
        table = pa.Table.from_pandas(rest, preserve_index=False)
        values = df[feature_column].to_numpy()
        matrix = np.stack(values) if len(values) else np.zeros((0, 0), np.float32)
        return table.append_column(feature_column, features_to_arrow(matrix))
    return pa.Table.from_pandas(df, preserve_index=False)


def write_table_atomic(table: pa.Table, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write an Arrow table to Parquet atomically, merging `metadata` into the schema metadata."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({str(k).encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write a DataFrame to Parquet atomically (temp file + rename) with string schema metadata."""
    write_table_atomic(to_arrow_table(df), path, metadata)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The project's string schema metadata of a Parquet file (pandas' own key left out)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise VADInputError(f"{path}: not a readable Parquet file ({exc})") from None
    raw = schema.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k != b"pandas"}


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a Parquet table and its schema metadata. Feature columns come back as arrays per row."""
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise VADInputError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    return table.to_pandas(), meta


def feature_matrix(df: pd.DataFrame, column: str = "feature") -> np.ndarray:
    """Stack a column of equal-length vectors into an `(N, D)` float32 matrix."""
    if column not in df.columns:
        raise VADInputError(f"table has no {column!r} column (columns: {list(df.columns)})")
    if len(df) == 0:
        raise VADInputError(f"table column {column!r} is empty (0 rows)")
    try:
        return np.stack(df[column].to_numpy()).astype(np.float32, copy=False)
    except ValueError as exc:
        raise VADInputError(f"column {column!r} holds vectors of different lengths ({exc})") from None


def read_feature_matrix(path: str | os.PathLike, column: str = "feature") -> np.ndarray:
    """Read just the feature column of a Parquet table as `(N, D)` float32, without pandas."""
    table = pq.read_table(path, columns=[column])
    col = table.column(column).combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        return feature_matrix(table.to_pandas(), column)
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)
