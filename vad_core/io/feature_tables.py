"""The clip-features table (design.md): schema, metadata, keys, freshness, read-back, through a store.

One row per (clip, tile): `video_id`, `clip`, `start_frame`, `end_frame` (half-open frame
interval), `tile`, `x`, `y`, `w`, `h` (the tile's box in original frame pixels; -1 when
unknown, as for imported precomputed features), `feature` (`fixed_size_list<float32>[D]`).
Both extraction (`vad_core.features`) and import (`vad_core.features.precomputed`) write through here,
so the two kinds of table are interchangeable downstream. Tables live in a `TableStore` under
keys `<prefix>/<video_id>.parquet`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from vad_core.errors import VADInputError
from vad_core.io.store import TableStore, join_key
from vad_core.io.tables import arrow_feature_matrix, features_to_arrow

# Bump when the table layout or the meaning of a column changes: old tables then re-extract.
FEATURE_FORMAT_VERSION = "1"
FORMAT_KEY = "vad_core.feature_format"

INT_COLUMNS = ("clip", "start_frame", "end_frame", "tile", "x", "y", "w", "h")
COLUMNS = ("video_id", *INT_COLUMNS, "feature")

# Metadata keys whose values must all match for an existing table to count as up to date.
FRESHNESS_KEYS = (
    FORMAT_KEY,
    "video_fingerprint",
    "backbone",
    "weights_sha256",
    "dim",
    "clip_config",
    "region_config",
    "rotation",  # compared only when the video is turned (present in the expected metadata)
)
# What a key absent from an older table's metadata meant when it was written: before regions
# were configurable every table held one backbone pass per tile crop
# (`vad_core.features.regions.RegionConfig(backbone_pass="crop", regions="tiles").key()`).
LEGACY_METADATA = {"region_config": json.dumps({"backbone_pass": "crop", "regions": "tiles"}, sort_keys=True)}


@dataclass(frozen=True)
class FeatureResult:
    """What writing one video's feature table did.

    `key` is the table's storage key; `skipped` is True when an up-to-date table was already
    there (nothing written); `error` holds the message when the video failed (then `key` is None).
    """

    video_id: str
    key: str | None
    n_clips: int = 0
    n_tiles: int = 0
    n_rows: int = 0
    dim: int = 0
    skipped: bool = False
    seconds: float = 0.0
    source: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


def results_frame(results: list[FeatureResult]) -> pd.DataFrame:
    """One row per video: the report of a batch of extractions or imports."""
    cols = list(FeatureResult.__dataclass_fields__)
    return pd.DataFrame([r.to_dict() for r in results], columns=cols)


def feature_key(prefix: str, video_id: str) -> str:
    """The key of `video_id`'s table under `prefix`: `<prefix>/<video_id>.parquet`.

    Video ids are paths under the footage root (`testing/frames/01`), so they may hold `/`;
    the table then sits in the same sub-folders. Ids that would leave the prefix are refused.
    """
    parts = PurePosixPath(str(video_id).replace("\\", "/")).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or PurePosixPath(str(video_id)).is_absolute():
        raise VADInputError(f"video_id {video_id!r} cannot name a feature table (empty, absolute or '..')")
    return join_key(prefix, *parts[:-1], parts[-1] + ".parquet")


def build_feature_table(
    video_id: str,
    clip: np.ndarray,
    start_frame: np.ndarray,
    end_frame: np.ndarray,
    tile: np.ndarray,
    boxes: np.ndarray,
    features: np.ndarray,
) -> pa.Table:
    """Arrow table of N rows from `(N,)` int arrays, `(N, 4)` boxes (x, y, w, h) and `(N, D)` features."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    n = features.shape[0]
    ints = {
        "clip": clip,
        "start_frame": start_frame,
        "end_frame": end_frame,
        "tile": tile,
        "x": boxes[:, 0],
        "y": boxes[:, 1],
        "w": boxes[:, 2],
        "h": boxes[:, 3],
    }
    arrays: list[pa.Array] = [pa.array(np.full(n, str(video_id), dtype=object), type=pa.string())]
    for name in INT_COLUMNS:
        col = np.asarray(ints[name], dtype=np.int64)
        if col.shape != (n,):
            raise VADInputError(f"feature table column {name!r}: shape {col.shape}, expected ({n},)")
        arrays.append(pa.array(col, type=pa.int64()))
    arrays.append(features_to_arrow(features))
    return pa.Table.from_arrays(arrays, names=list(COLUMNS))


def write_feature_table(table: pa.Table, store: TableStore, key: str, metadata: Mapping[str, Any]) -> None:
    """Store atomically with string schema metadata (the format version is always added)."""
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta[FORMAT_KEY] = FEATURE_FORMAT_VERSION
    store.write_table(key, table, meta)


def is_up_to_date(store: TableStore, key: str, expected: Mapping[str, str]) -> bool:
    """True when `key` holds a feature table whose metadata matches `expected` on `FRESHNESS_KEYS`.

    A missing or unreadable table is simply not up to date (it gets rewritten), never an error.
    """
    if not store.exists(key):
        return False
    try:
        meta = store.read_metadata(key)
    except VADInputError:
        return False
    want = dict(expected)
    want[FORMAT_KEY] = FEATURE_FORMAT_VERSION
    return all(meta.get(k, LEGACY_METADATA.get(k)) == str(want.get(k)) for k in FRESHNESS_KEYS if k in want)


def read_clip_features(store: TableStore, key: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a clip-features table and its metadata, checking the columns and the feature width.

    Returns the rows (the `feature` column holds one `(D,)` float32 array per row) and the
    schema metadata. Raises `VADInputError` naming the table when it is not one.
    """
    df, meta = store.read_frame(key)
    where = store.location(key)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise VADInputError(f"{where}: not a clip-features table, missing columns {missing}")
    dim = meta.get("dim")
    if dim is not None and len(df) and len(df["feature"].iloc[0]) != int(dim):
        raise VADInputError(f"{where}: features have {len(df['feature'].iloc[0])} dims, metadata says {dim}")
    return df, meta


def read_feature_matrix(store: TableStore, key: str, column: str = "feature") -> np.ndarray:
    """Just the feature column of the table under `key`, `(N, D)` float32, without pandas."""
    return arrow_feature_matrix(store.read_table(key, columns=[column]), column)


class TableCounts(TypedDict):
    """Row counts of a stored feature table (`FeatureResult` takes them as keywords)."""

    n_clips: int
    n_tiles: int
    n_rows: int
    dim: int


def table_counts(store: TableStore, key: str) -> TableCounts:
    """n_clips, n_tiles, n_rows and dim of an existing table, from its metadata (no data read)."""
    meta = store.read_metadata(key)
    n_clips, n_tiles = int(meta.get("n_clips", 0)), int(meta.get("n_tiles", 0))
    return {"n_clips": n_clips, "n_tiles": n_tiles, "n_rows": n_clips * n_tiles, "dim": int(meta.get("dim", 0))}


__all__ = [
    "COLUMNS",
    "FEATURE_FORMAT_VERSION",
    "FORMAT_KEY",
    "FRESHNESS_KEYS",
    "INT_COLUMNS",
    "LEGACY_METADATA",
    "FeatureResult",
    "build_feature_table",
    "feature_key",
    "is_up_to_date",
    "read_clip_features",
    "read_feature_matrix",
    "results_frame",
    "table_counts",
    "write_feature_table",
]
