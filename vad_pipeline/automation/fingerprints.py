"""What the automation compares: fingerprints of the footage on disk and of the feature tables.

Kept apart from the sensor and the schedule so both the assets and the automation use one
definition of "changed".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from vad_core.io.store import TableStore
from vad_pipeline.resources.storage import DatasetKeys


def stat_fingerprint(path: str | os.PathLike) -> str:
    """A cheap fingerprint of a video file or frame folder from names, sizes and mtimes.

    A sensor ticks every few seconds, so it must not read the footage; any rewrite of a file
    changes its size or mtime. Raises `OSError` when the path vanished mid-scan.
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file():
                    st = entry.stat()
                    h.update(f"{entry.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    else:
        st = path.stat()
        h.update(f"{path.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def feature_table_fingerprints(store: TableStore, keys: DatasetKeys, video_ids: Iterable[str]) -> dict[str, str]:
    """`{video_id: sha256 of its feature table}` for the videos whose table exists."""
    out: dict[str, str] = {}
    for vid in sorted(set(video_ids)):
        key = keys.features(vid)
        if store.exists(key):
            out[vid] = store.sha256(key)
    return out


def combined_fingerprint(per_video: Mapping[str, str]) -> str | None:
    """One fingerprint for a set of tables (order-free); None for no tables at all."""
    if not per_video:
        return None
    h = hashlib.sha256()
    for vid in sorted(per_video):
        h.update(f"{vid}\t{per_video[vid]}\n".encode())
    return h.hexdigest()


def last_trained_fingerprint(store: TableStore, keys: DatasetKeys) -> str | None:
    """The features fingerprint the current denoiser was trained on (None: never trained)."""
    info = store.read_json(keys.denoiser_info)
    return info.get("features_fingerprint") if isinstance(info, dict) else None


__all__ = ["combined_fingerprint", "feature_table_fingerprints", "last_trained_fingerprint", "stat_fingerprint"]
