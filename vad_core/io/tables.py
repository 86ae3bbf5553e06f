"""Arrow tables: schema metadata, fixed-size float32 feature columns; atomic local file writes.

Tables are stored through `vad_core.io.store` (by key); the local-file helpers here are for
files the project writes outside a store (the weights cache, the demo footage).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

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
        matrix = np.stack(list(values)) if len(values) else np.zeros((0, 0), np.float32)
        return table.append_column(feature_column, features_to_arrow(matrix))
    return pa.Table.from_pandas(df, preserve_index=False)


def with_metadata(table: pa.Table, metadata: Mapping[str, str] | None) -> pa.Table:
    """`table` with `metadata` merged into its schema metadata (values as strings)."""
    if not metadata:
        return table
    merged = dict(table.schema.metadata or {})
    merged.update({str(k).encode(): str(v).encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(merged)


def schema_metadata(schema: pa.Schema) -> dict[str, str]:
    """The project's string schema metadata (pandas' own key left out)."""
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if k != b"pandas"}


def feature_matrix(df: pd.DataFrame, column: str = "feature") -> np.ndarray:
    """Stack a column of equal-length vectors into an `(N, D)` float32 matrix."""
    if column not in df.columns:
        raise VADInputError(f"table has no {column!r} column (columns: {list(df.columns)})")
    if len(df) == 0:
        raise VADInputError(f"table column {column!r} is empty (0 rows)")
    try:
        return np.stack(list(df[column].to_numpy())).astype(np.float32, copy=False)
    except ValueError as exc:
        raise VADInputError(f"column {column!r} holds vectors of different lengths ({exc})") from None


def arrow_feature_matrix(table: pa.Table, column: str = "feature") -> np.ndarray:
    """The feature column of an Arrow table as `(N, D)` float32, without pandas (zero-copy when possible)."""
    col = table.column(column).combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        return feature_matrix(table.to_pandas(), column)
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)


__all__ = [
    "arrow_feature_matrix",
    "atomic_path",
    "atomic_write_bytes",
    "feature_matrix",
    "features_to_arrow",
    "schema_metadata",
    "to_arrow_table",
    "umask_mode",
    "with_metadata",
]
