"""Import precomputed clip features (per-video `.npy` arrays) as clip-features tables.

The layout the community distributes UCF-Crime / ShanghaiTech I3D features in: one `.npy` per
video, shape `(T, D)` or `(T, crops, D)` (ten-crop features: the crops are averaged), or one
file per crop named `<video>__<k>.npy` (stacked and averaged the same way). Row `i` is clip `i`,
covering frames `[i * clip_len, (i + 1) * clip_len)`; there is one tile (0) per clip and its box
is unknown, written as `x = y = w = h = -1`. The backbone is recorded as `precomputed:<name>`.

Files are read with `np.load(allow_pickle=False)`: a pickled array is refused, never executed.
A bad file becomes an error result naming it; the other files still import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vad_core.errors import VADInputError
from vad_core.io.feature_tables import (
    FeatureResult,
    build_feature_table,
    feature_key,
    is_up_to_date,
    table_counts,
    write_feature_table,
)
from vad_core.io.hashing import update_from_file
from vad_core.io.store import TableStore

DEFAULT_SUFFIXES = ("_i3d", "_rgb", "_features", "_feature", "_feats", "_feat")
_CROP = re.compile(r"^(?P<base>.+)__(?P<crop>\d+)$")


def video_id_from_name(stem: str, suffixes: Sequence[str] = DEFAULT_SUFFIXES) -> str:
    """`Abuse001_x264_i3d` -> `Abuse001_x264`: drop one trailing feature-type suffix (longest match)."""
    for suffix in sorted(suffixes, key=len, reverse=True):
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _group_files(folder: Path, suffixes: Sequence[str]) -> dict[str, list[tuple[int, Path]]]:
    """video_id -> its files as (crop index or -1, path); crops (`<stem>__<k>.npy`) in crop order."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(folder.rglob("*.npy")):
        match = _CROP.match(path.stem)
        stem, crop = (match["base"], int(match["crop"])) if match else (path.stem, -1)
        groups.setdefault(video_id_from_name(stem, suffixes), []).append((crop, path))
    return {vid: sorted(items) for vid, items in groups.items()}


def _file_sha256(paths: Sequence[Path]) -> str:
    """One sha256 over the bytes of every file, in order (a video's crop files hash together)."""
    h = hashlib.sha256()
    for path in paths:
        update_from_file(h, path)
    return h.hexdigest()


def load_feature_array(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """One `.npy` file -> (`(T, D)` float32 features, number of crops averaged: 1 for `(T, D)`).

    A `(T, crops, D)` array is averaged over crops. Raises `VADInputError` naming the file for
    unreadable, pickled, non-numeric, empty, wrongly shaped or non-finite arrays.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused on purpose
        raise VADInputError(f"{path}: not a plain numeric .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise VADInputError(f"{path}: cannot be read as a .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive under a .npy name
        raise VADInputError(f"{path}: holds a {type(arr).__name__}, not a single array")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise VADInputError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise VADInputError(f"{path}: expected shape (T, D) or (T, crops, D) with no empty axis, got {arr.shape}")
    crops = arr.shape[1] if arr.ndim == 3 else 1
    arr = arr.mean(axis=1, dtype=np.float64) if arr.ndim == 3 else arr
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise VADInputError(
            f"{path}: {int(bad.sum())} non-finite values in {rows.size} clips (first: clip {int(rows[0])})"
        )
    return arr, crops


def _load_group(files: Sequence[tuple[int, Path]]) -> tuple[np.ndarray, int]:
    """A video's file(s) -> (`(T, D)` features, crops averaged). Per-crop files are averaged."""
    if len(files) == 1:
        return load_feature_array(files[0][1])
    if any(crop < 0 for crop, _ in files):
        names = ", ".join(str(p) for _, p in files)
        raise VADInputError(f"several feature files map to one video id: {names} (rename or remove all but one)")
    loaded = [load_feature_array(p) for _, p in files]
    shapes = {f.shape for f, _ in loaded}
    if len(shapes) != 1:
        listing = ", ".join(f"{p.name} {f.shape}" for (_, p), (f, _) in zip(files, loaded, strict=False))
        raise VADInputError(f"crop files of one video disagree in shape: {listing}")
    stacked = np.stack([f for f, _ in loaded])
    return stacked.mean(axis=0, dtype=np.float64).astype(np.float32), sum(c for _, c in loaded)


def import_precomputed(
    folder: str | os.PathLike,
    store: TableStore,
    prefix: str = "",
    clip_len: int = 16,
    name: str | None = None,
    suffixes: Sequence[str] = DEFAULT_SUFFIXES,
    callback: Callable[[dict], None] | None = None,
) -> list[FeatureResult]:
    """Store one clip-features table per video found as `.npy` under `folder`, at `<prefix>/<video_id>.parquet`.

    `name` (default: the folder's name) makes the backbone `precomputed:<name>`. Video ids
    come from the file names (suffixes such as `_i3d` dropped), so that they match the ids in
    the ground-truth files. Re-importing an unchanged file is a no-op. Returns one
    `FeatureResult` per video, in id order; failures carry `error` and the rest go on.
    `callback` gets `{"event": "video_done", "video_id", "videos_done", "videos_total", ...}`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VADInputError(f"precomputed features folder {folder} does not exist or is not a folder")
    if not isinstance(clip_len, int) or clip_len < 1:
        raise VADInputError(f"clip_len must be a positive int, got {clip_len!r}")
    backbone = f"precomputed:{name or folder.resolve().name}"
    groups = _group_files(folder, suffixes)
    if not groups:
        raise VADInputError(f"precomputed features folder {folder} holds no .npy files")
    clip_config = json.dumps({"clip_len": clip_len, "stride": clip_len, "tiling": "none"}, sort_keys=True)
    results: list[FeatureResult] = []
    for index, (video_id, files) in enumerate(sorted(groups.items())):
        start = time.perf_counter()
        paths = [p for _, p in files]
        source = ",".join(str(p) for p in paths)
        try:
            key = feature_key(prefix, video_id)
            fingerprint = _file_sha256(paths)
            expected = {"video_fingerprint": fingerprint, "backbone": backbone, "clip_config": clip_config}
            if is_up_to_date(store, key, expected):
                result = FeatureResult(
                    video_id,
                    key,
                    skipped=True,
                    source=source,
                    seconds=time.perf_counter() - start,
                    **table_counts(store, key),
                )
            else:
                feats, crops = _load_group(files)
                n, dim = feats.shape
                clips = np.arange(n, dtype=np.int64)
                table = build_feature_table(
                    video_id,
                    clips,
                    clips * clip_len,
                    (clips + 1) * clip_len,
                    np.zeros(n, np.int64),
                    np.full((n, 4), -1, np.int64),
                    feats,
                )
                meta = {
                    **expected,
                    "video_id": video_id,
                    "weights_sha256": "unknown",
                    "dim": dim,
                    "clip_len": clip_len,
                    "stride": clip_len,
                    "scale": "unknown",
                    "tile_size": 0,
                    "tiling": "none",
                    "n_clips": n,
                    "n_tiles": 1,
                    "n_frames": n * clip_len,
                    "crops_averaged": crops,
                    "source_files": ",".join(p.name for p in paths),
                }
                write_feature_table(table, store, key, meta)
                result = FeatureResult(
                    video_id,
                    key,
                    n_clips=n,
                    n_tiles=1,
                    n_rows=n,
                    dim=dim,
                    source=source,
                    seconds=time.perf_counter() - start,
                )
        except VADInputError as exc:
            result = FeatureResult(video_id, None, source=source, error=str(exc), seconds=time.perf_counter() - start)
        results.append(result)
        if callback is not None:
            callback({"event": "video_done", "videos_done": index + 1, "videos_total": len(groups), **result.to_dict()})
    return results


__all__ = ["DEFAULT_SUFFIXES", "import_precomputed", "load_feature_array", "video_id_from_name"]
