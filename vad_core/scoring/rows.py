"""Row tables to clip tables: stable row keys, the max over tiles, batch decisions per clip.

A feature row is one (clip, tile). A clip's score is the maximum of its tiles' scores (the
arg-max tile localizes the anomaly); clips, in video and time order, are cut into batches and
each batch is thresholded at mean + k * std of its scores (`vad_core.scoring.thresholds`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from vad_core.diffusion.noise import GOLDEN, mix64
from vad_core.errors import VADInputError
from vad_core.scoring.thresholds import batch_decisions


def row_keys_for(df: pd.DataFrame) -> np.ndarray:
    """Stable `(N,)` int64 keys of (video_id, clip, tile): blake2b of the video id, mixed with clip and tile.

    Independent of row order, process and Python's hash salt; a missing `tile` column counts as tile 0.
    """
    missing = [c for c in ("video_id", "clip") if c not in df.columns]
    if missing:
        raise VADInputError(f"row table: missing column(s) {missing} needed for row keys")
    vids, inverse = np.unique(df["video_id"].astype(str).to_numpy(), return_inverse=True)
    vid_hash = np.array(
        [int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little") for v in vids], dtype=np.uint64
    )
    clip = df["clip"].to_numpy().astype(np.int64).astype(np.uint64)
    tile = (df["tile"].to_numpy() if "tile" in df.columns else np.zeros(len(df))).astype(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        k = mix64(vid_hash[inverse.reshape(-1)] + (clip + np.uint64(1)) * GOLDEN)
        k = mix64(k + (tile + np.uint64(1)) * GOLDEN)
    return k.view(np.int64)


def clip_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per clip: `video_id, clip, start_frame, end_frame, score` (max over tiles), `tile` (arg-max).

    Ties go to the lowest tile index; the result is sorted by video_id, clip.
    """
    need = ["video_id", "clip", "start_frame", "end_frame", "tile", "score"]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise VADInputError(f"row scores: missing column(s) {missing}")
    if len(rows) == 0:
        raise VADInputError("row scores: table is empty (0 rows)")
    score = pd.to_numeric(rows["score"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(score)):
        raise VADInputError(f"row scores: {int((~np.isfinite(score)).sum())} scores are missing or not finite")
    table = rows[need].assign(score=score)
    table = table.sort_values(["video_id", "clip", "score", "tile"], ascending=[True, True, False, True], kind="stable")
    best = table.drop_duplicates(["video_id", "clip"], keep="first")
    return best[["video_id", "clip", "start_frame", "end_frame", "score", "tile"]].reset_index(drop=True)


def decide_clips(clips: pd.DataFrame, k: float, batch_size: int) -> pd.DataFrame:
    """Add `batch`, `threshold`, `anomalous` to clip scores, ordered by video and clip first."""
    clips = clips.sort_values(["video_id", "clip"], kind="stable").reset_index(drop=True)
    dec = batch_decisions(clips["score"].to_numpy(np.float64), k=k, batch_size=batch_size)
    return clips.assign(batch=dec.batch, threshold=dec.threshold, anomalous=dec.anomalous.astype(bool))


def score_summary(clips: pd.DataFrame) -> dict[str, float]:
    """Counts and moments of a decided clip table, for run metadata."""
    s = clips["score"].to_numpy(np.float64)
    return {
        "clips": len(clips),
        "anomalous_clips": int(clips["anomalous"].sum()),
        "anomalous_share": float(clips["anomalous"].mean()),
        "score_mean": float(s.mean()),
        "score_std": float(s.std()),
        "score_max": float(s.max()),
    }


__all__ = ["clip_scores", "decide_clips", "row_keys_for", "score_summary"]
