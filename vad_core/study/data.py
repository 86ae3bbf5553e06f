"""The study's input: one feature set (rows, features, frame counts, ground truth, train mask)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError, check_features
from vad_core.io.feature_tables import read_clip_features
from vad_core.io.store import TableStore
from vad_core.io.tables import feature_matrix

ROW_COLUMNS = ("video_id", "clip", "start_frame", "end_frame", "tile")


@dataclass
class StudyData:
    """One feature set: rows `(N,)` (video_id, clip, start_frame, end_frame, tile), features `(N, D)`.

    `n_frames` and `ground_truth` cover the `evaluated` videos; `train_mask` `(N,)` picks the
    rows models are fitted on (None: all, the unsupervised protocol).
    """

    name: str
    rows: pd.DataFrame
    features: np.ndarray
    n_frames: Mapping[str, int]
    ground_truth: pd.DataFrame
    evaluated: tuple[str, ...]
    train_mask: np.ndarray | None = None
    backbone: str = ""

    def __post_init__(self) -> None:
        self.features = check_features(self.features, name=f"{self.name}: features")
        missing = [c for c in ROW_COLUMNS if c not in self.rows.columns]
        if missing:
            raise VADInputError(f"{self.name}: row table misses column(s) {missing}")
        if len(self.rows) != self.features.shape[0]:
            raise VADInputError(f"{self.name}: {len(self.rows)} rows but {self.features.shape[0]} feature rows")
        self.rows = self.rows.reset_index(drop=True)
        if self.train_mask is None:
            self.train_mask = np.ones(len(self.rows), dtype=bool)
        self.train_mask = np.asarray(self.train_mask, dtype=bool)
        if self.train_mask.shape != (len(self.rows),) or not self.train_mask.any():
            raise VADInputError(f"{self.name}: train_mask must be a non-empty boolean mask over the rows")
        self.evaluated = tuple(sorted(set(self.evaluated)))
        present = set(self.rows["video_id"].astype(str))
        absent = [v for v in self.evaluated if v not in present or v not in self.n_frames]
        if not self.evaluated or absent:
            raise VADInputError(f"{self.name}: evaluated videos without rows or frame counts: {absent or 'none given'}")

    @property
    def tiles(self) -> np.ndarray:
        return self.rows["tile"].to_numpy(np.int64)


def load_study_data(
    store: TableStore,
    prefix: str,
    ground_truth: pd.DataFrame,
    name: str,
    evaluated: Sequence[str] | None = None,
    train: Sequence[str] | None = None,
) -> StudyData:
    """A `StudyData` from the clip-features tables under `prefix` of `store` (`*.parquet`, one per video).

    Frame counts come from each table's metadata; `evaluated` defaults to the videos with a
    ground-truth interval; `train` (video ids) defaults to every video (unsupervised protocol).
    """
    keys_found = store.list(prefix, suffix=".parquet")
    if not keys_found:
        raise VADInputError(
            f"{store.location(prefix) if prefix else 'store'}: no clip-features tables (*.parquet) found"
        )
    keys, mats, n_frames, backbones = [], [], {}, set()
    for key in keys_found:
        df, meta = read_clip_features(store, key)
        vid = (
            str(df["video_id"].iloc[0]) if len(df) else meta.get("video_id", key.rsplit("/", 1)[-1][: -len(".parquet")])
        )
        n_frames[vid] = int(meta.get("n_frames") or df["end_frame"].max())
        backbones.add(meta.get("backbone", ""))
        keys.append(df[list(ROW_COLUMNS)])
        mats.append(feature_matrix(df))
    rows = pd.concat(keys, ignore_index=True)
    x = np.concatenate(mats, axis=0)
    present = set(rows["video_id"].astype(str))
    wanted = sorted(set(ground_truth["video_id"].astype(str)) & present) if evaluated is None else list(evaluated)
    mask = None if train is None else rows["video_id"].astype(str).isin(set(train)).to_numpy()
    return StudyData(
        name=name,
        rows=rows,
        features=x,
        n_frames=n_frames,
        ground_truth=ground_truth,
        evaluated=tuple(wanted),
        train_mask=mask,
        backbone=",".join(sorted(backbones)),
    )


__all__ = ["ROW_COLUMNS", "StudyData", "load_study_data"]
