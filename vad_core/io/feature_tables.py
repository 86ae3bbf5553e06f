"""The clip-features table (design.md): schema, metadata, atomic write, freshness, read-back.

One row per (clip, tile): `video_id`, `clip`, `start_frame`, `end_frame` (half-open frame
interval), `tile`, `x`, `y`, `w`, `h` (the tile's box in original frame pixels; -1 when
unknown, as for imported precomputed features), `feature` (`fixed_size_list<float32>[D]`).
Both extraction (`vad_core.features`) and import (`vad_core.features.precomputed`) write through here,
so the two kinds of table are interchangeable downstream.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from vad_core.errors import VADInputError
from vad_core.io.tables import features_to_arrow, read_metadata, read_parquet, write_table_atomic

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
)


@dataclass(frozen=True)
class FeatureResult:
    """What writing one video's feature table did.

    `skipped` is True when an up-to-date table was already there (nothing written); `error`
    holds the message when the video failed (then `out_path` may not exist).
    """

    video_id: str
    out_path: str | None
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


def feature_path(out_dir: str | os.PathLike, video_id: str) -> Path:
    """Where the table of `video_id` lives under `out_dir`: `<out_dir>/<video_id>.parquet`.

    Video ids are paths under the footage root (`testing/frames/01`), so they may hold `/`;
    the table then sits in the same sub-folders. Ids that would leave `out_dir` are refused.
    """
    parts = PurePosixPath(str(video_id).replace("\\", "/")).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or PurePosixPath(str(video_id)).is_absolute():
        raise VADInputError(f"video_id {video_id!r} cannot name a feature file (empty, absolute or '..')")
    return Path(out_dir).joinpath(*parts[:-1], parts[-1] + ".parquet")


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
        "clip": clip, "start_frame": start_frame, "end_frame": end_frame, "tile": tile,
        "x": boxes[:, 0], "y": boxes[:, 1], "w": boxes[:, 2], "h": boxes[:, 3],
    }
    arrays: list[pa.Array] = [pa.array(np.full(n, str(video_id), dtype=object), type=pa.string())]
    for name in INT_COLUMNS:
        col = np.asarray(ints[name], dtype=np.int64)
        if col.shape != (n,):
            raise VADInputError(f"feature table column {name!r}: shape {col.shape}, expected ({n},)")
        arrays.append(pa.array(col, type=pa.int64()))
    arrays.append(features_to_arrow(features))
    return pa.Table.from_arrays(arrays, names=list(COLUMNS))


def write_feature_table(table: pa.Table, path: str | os.PathLike, metadata: Mapping[str, str]) -> None:
    """Write atomically with string schema metadata (the format version is always added)."""
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta[FORMAT_KEY] = FEATURE_FORMAT_VERSION
    write_table_atomic(table, path, meta)


def is_up_to_date(path: str | os.PathLike, expected: Mapping[str, str]) -> bool:
    """True when `path` is a feature table whose metadata matches `expected` on `FRESHNESS_KEYS`.

    A missing or unreadable file is simply not up to date (it gets rewritten), never an error.
    """
    if not Path(path).is_file():
        return False
    try:
        meta = read_metadata(path)
    except VADInputError:
        return False
    want = dict(expected)
    want[FORMAT_KEY] = FEATURE_FORMAT_VERSION
    return all(meta.get(k) == str(want.get(k)) for k in FRESHNESS_KEYS if k in want)


def read_clip_features(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a clip-features table and its metadata, checking the columns and the feature width.

    Returns the rows (the `feature` column holds one `(D,)` float32 array per row) and the
    schema metadata. Raises `VADInputError` naming the file when the table is not one.
    """
    df, meta = read_parquet(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise VADInputError(f"{path}: not a clip-features table, missing columns {missing}")
    dim = meta.get("dim")
    if dim is not None and len(df) and len(df["feature"].iloc[0]) != int(dim):
        raise VADInputError(f"{path}: features have {len(df['feature'].iloc[0])} dims, metadata says {dim}")
    return df, meta


def table_counts(path: str | os.PathLike) -> dict[str, int]:
    """n_clips, n_tiles, n_rows and dim of an existing table, from its metadata (no data read)."""
    meta = read_metadata(path)
    n_clips, n_tiles = int(meta.get("n_clips", 0)), int(meta.get("n_tiles", 0))
    return {"n_clips": n_clips, "n_tiles": n_tiles, "n_rows": n_clips * n_tiles, "dim": int(meta.get("dim", 0))}
