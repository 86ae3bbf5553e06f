"""Frame-level evaluation: clip scores to frames, labels, smoothing, ROC AUC, AP, paper protocol.

Frames are numbered from 0 and intervals are half-open `[start, end)` (design.md). The headline
figure is the ROC AUC of the continuous frame scores; the "paper protocol" AUC of the binarised
decisions (which the authors' code reports, method.md) is given beside it and labelled so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import average_precision_score, roc_auc_score

from vad_core.errors import VADInputError

CLIP_COLUMNS = ("video_id", "start_frame", "end_frame", "score", "anomalous")
GROUND_TRUTH_COLUMNS = ("video_id", "start_frame", "end_frame")


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise VADInputError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VADInputError(f"{name}: missing columns {missing} (has {list(df.columns)})")


def _int_column(df: pd.DataFrame, column: str, name: str) -> np.ndarray:
    values = df[column].to_numpy()
    if values.size and not (np.issubdtype(values.dtype, np.integer)):
        as_float = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise VADInputError(f"{name}: column {column!r} must hold whole frame numbers")
        values = as_float
    return np.asarray(values, dtype=np.int64)


def clips_to_frames(clips: pd.DataFrame, n_frames: Mapping[str, int]) -> pd.DataFrame:
    """Expand clip scores to frames: `clips` (video_id, start_frame, end_frame, score, anomalous).

    Each frame takes the score of the clip covering it. Where clips overlap (stride shorter than
    the clip, or a last clip moved back to end at the video's end) a frame takes the MAXIMUM
    score of its covering clips and is anomalous if any of them is: an alert raised by one
    clip must not be hidden by a calmer neighbour. Every frame 0..n_frames[video)-1 of every
    video in `clips` must be covered; a gap, or a clip reaching past the video's end, is an error
    naming the video. Videos in `n_frames` without clips are left out. Returns columns
    video_id, frame (int64), score (float64), anomalous (bool), videos in order of first
    appearance, frames ascending.
    """
    _require_columns(clips, CLIP_COLUMNS, "clips")
    if len(clips) == 0:
        raise VADInputError("clips: is empty (0 rows)")
    starts = _int_column(clips, "start_frame", "clips")
    ends = _int_column(clips, "end_frame", "clips")
    scores = clips["score"].to_numpy(dtype=np.float64)
    flags = clips["anomalous"].to_numpy()
    if not np.all(np.isfinite(scores)):
        raise VADInputError(f"clips: {int((~np.isfinite(scores)).sum())} non-finite scores")
    if pd.isna(clips["anomalous"]).any():
        raise VADInputError("clips: column 'anomalous' has missing values")
    flags = flags.astype(bool)
    bad = (starts < 0) | (ends <= starts)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VADInputError(
            f"clips: clip of video {clips['video_id'].iloc[i]!r} has an empty or negative interval "
            f"[{starts[i]}, {ends[i]})"
        )

    video_ids = clips["video_id"].astype(str).to_numpy()
    codes, uniques = pd.factorize(video_ids)
    parts = []
    for code, video in enumerate(uniques):
        if video not in n_frames:
            raise VADInputError(f"n_frames: has no frame count for video {video!r}")
        n = int(n_frames[video])
        if n < 1:
            raise VADInputError(f"n_frames: video {video!r} has {n} frames")
        rows = np.flatnonzero(codes == code)
        s, e = starts[rows], ends[rows]
        if e.max() > n:
            raise VADInputError(f"clips: video {video!r} has a clip ending at frame {int(e.max())} past its {n} frames")
        # Flatten every clip into its frame indices once, then reduce with ufunc.at.
        lengths = e - s
        frame_idx = np.repeat(s, lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        clip_of = np.repeat(rows, lengths)
        frame_score = np.full(n, -np.inf)
        np.maximum.at(frame_score, frame_idx, scores[clip_of])
        frame_flag = np.zeros(n, dtype=bool)
        np.logical_or.at(frame_flag, frame_idx, flags[clip_of])
        uncovered = np.flatnonzero(np.isneginf(frame_score))
        if uncovered.size:
            raise VADInputError(
                f"clips: video {video!r} has {uncovered.size} frames no clip covers "
                f"(first: frame {int(uncovered[0])} of {n})"
            )
        parts.append(
            pd.DataFrame(
                {
                    "video_id": np.full(n, video, dtype=object),
                    "frame": np.arange(n, dtype=np.int64),
                    "score": frame_score,
                    "anomalous": frame_flag,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def frame_labels(frames: pd.DataFrame, ground_truth: pd.DataFrame) -> np.ndarray:
    """`(F,)` int8 labels of `frames` (video_id, frame): 1 inside any ground-truth `[start, end)`.

    A video with no ground-truth interval is all normal (0); restrict `frames` to annotated
    videos first when an absent annotation means "unknown" rather than "normal".
    """
    _require_columns(frames, ("video_id", "frame"), "frames")
    _require_columns(ground_truth, GROUND_TRUTH_COLUMNS, "ground_truth")
    frame_no = _int_column(frames, "frame", "frames")
    if frame_no.size and frame_no.min() < 0:
        raise VADInputError("frames: negative frame numbers")
    gt_start = _int_column(ground_truth, "start_frame", "ground_truth")
    gt_end = _int_column(ground_truth, "end_frame", "ground_truth")
    bad = (gt_start < 0) | (gt_end < gt_start)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VADInputError(
            f"ground_truth: video {ground_truth['video_id'].iloc[i]!r} has an invalid interval "
            f"[{gt_start[i]}, {gt_end[i]})"
        )
    labels = np.zeros(len(frames), dtype=np.int8)
    frame_video = frames["video_id"].astype(str).to_numpy()
    gt_video = ground_truth["video_id"].astype(str).to_numpy()
    for video in np.unique(frame_video):
        rows = np.flatnonzero(frame_video == video)
        intervals = np.flatnonzero(gt_video == video)
        if intervals.size == 0:
            continue
        size = int(max(frame_no[rows].max() + 1, gt_end[intervals].max()))
        # Difference array: +1 at each start, -1 at each end; a positive running sum is inside.
        delta = np.zeros(size + 1, dtype=np.int64)
        np.add.at(delta, gt_start[intervals], 1)
        np.add.at(delta, gt_end[intervals], -1)
        inside = np.cumsum(delta)[:size] > 0
        labels[rows] = inside[frame_no[rows]]
    return labels


def smooth_scores(frames: pd.DataFrame, sigma_frames: float) -> pd.DataFrame:
    """Gaussian-smooth `score` along time within each video (sigma in frames; label-free).

    Uses `scipy.ndimage.gaussian_filter1d(mode="nearest")` over each video's frames in frame
    order (edges repeat the end frame). Returns a copy with the same rows and order; only
    `score` changes. Smoothing never crosses from one video into the next.
    """
    _require_columns(frames, ("video_id", "frame", "score"), "frames")
    try:
        sigma = float(sigma_frames)
    except (TypeError, ValueError):
        raise VADInputError(f"sigma_frames: must be a number, got {sigma_frames!r}") from None
    if not np.isfinite(sigma) or sigma <= 0:
        raise VADInputError(f"sigma_frames: must be finite and > 0, got {sigma_frames!r}")
    scores = frames["score"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise VADInputError("frames: non-finite scores")
    frame_no = _int_column(frames, "frame", "frames")
    out = scores.copy()
    for _, rows in frames.groupby(frames["video_id"].astype(str), sort=False).indices.items():
        ordered = rows[np.argsort(frame_no[rows], kind="stable")]
        out[ordered] = gaussian_filter1d(scores[ordered], sigma, mode="nearest")
    result = frames.copy()
    result["score"] = out
    return result


def _check_binary(labels: object, scores: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise VADInputError(f"labels and {what}: need two 1-D arrays of equal length, got {y.shape} and {s.shape}")
    if y.size == 0:
        raise VADInputError("labels: empty label set, AUC is undefined")
    if not np.isin(y, (0, 1)).all():
        raise VADInputError("labels: must be 0 (normal) or 1 (anomalous)")
    n_pos = int((y == 1).sum())
    if n_pos == 0 or n_pos == y.size:
        raise VADInputError(f"labels: only one class present ({n_pos} anomalous of {y.size} frames), AUC is undefined")
    if not np.all(np.isfinite(s)):
        raise VADInputError(f"{what}: {int((~np.isfinite(s)).sum())} non-finite values")
    return y.astype(np.int8), s


def roc_auc(labels: object, scores: object) -> float:
    """Frame-level ROC AUC of continuous `scores` `(F,)` against 0/1 `labels` `(F,)`."""
    y, s = _check_binary(labels, scores, "scores")
    return float(roc_auc_score(y, s))


def average_precision(labels: object, scores: object) -> float:
    """Average precision (area under precision-recall, anomalies positive) of `scores` `(F,)`."""
    y, s = _check_binary(labels, scores, "scores")
    return float(average_precision_score(y, s))


def paper_protocol_auc(labels: object, decisions: object) -> float:
    """ "Paper protocol" AUC: ROC AUC of binarised decisions `(F,)` (the authors' released code).

    With a single threshold the ROC curve has one interior point, so this equals balanced
    accuracy (TPR + TNR) / 2; it is not the ROC AUC of the scores.
    """
    y, d = _check_binary(labels, np.asarray(decisions).astype(np.float64), "decisions")
    return float(roc_auc_score(y, d))


def per_video_auc(frames: pd.DataFrame) -> dict[str, float]:
    """ROC AUC of `score` against `label` within each video that has both classes."""
    _require_columns(frames, ("video_id", "score", "label"), "frames")
    out: dict[str, float] = {}
    for video, part in frames.groupby(frames["video_id"].astype(str), sort=True):
        y = part["label"].to_numpy()
        if np.unique(y).size == 2:
            out[str(video)] = roc_auc(y, part["score"].to_numpy())
    return out


def frame_table(clips: pd.DataFrame, manifest: pd.DataFrame, truth: pd.DataFrame, evaluated: set[str]) -> pd.DataFrame:
    """Clip scores -> frames (video_id, frame, score, anomalous, label); label null off the evaluated videos.

    Frame counts come from the manifest's readable videos; labels from `truth` on the videos in `evaluated`.
    """
    ok = manifest[manifest["status"] == "ok"]
    n_frames = {str(v): int(n) for v, n in zip(ok["video_id"], ok["n_frames"], strict=True)}
    frames = clips_to_frames(clips, n_frames)
    labels = pd.array(np.full(len(frames), pd.NA), dtype="Int8")
    on = frames["video_id"].isin(evaluated).to_numpy()
    if on.any():
        labels[on] = frame_labels(frames[on], truth)
    return frames.assign(label=labels)


@dataclass(frozen=True)
class EvaluationResult:
    """Frame-level figures; smoothed ones are None when no smoothing was asked for."""

    roc_auc: float
    average_precision: float
    paper_protocol_auc: float
    n_frames: int
    n_anomalous: int
    per_video_auc: dict[str, float] = field(default_factory=dict)
    smoothing_sigma: float | None = None
    smoothed_roc_auc: float | None = None
    smoothed_average_precision: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(frames: pd.DataFrame, smoothing_sigma: float | None = None) -> EvaluationResult:
    """Evaluate `frames` (video_id, frame, score, anomalous, label) over all frames together.

    The raw figures are always reported; with `smoothing_sigma` the smoothed ROC AUC and AP are
    reported beside them (per-video AUC stays on raw scores).
    """
    _require_columns(frames, ("video_id", "frame", "score", "anomalous", "label"), "frames")
    if pd.isna(frames["label"]).any():
        raise VADInputError("frames: column 'label' has missing values; keep only annotated videos")
    y = frames["label"].to_numpy().astype(np.int64)
    s = frames["score"].to_numpy(dtype=np.float64)
    result: dict[str, Any] = dict(
        roc_auc=roc_auc(y, s),
        average_precision=average_precision(y, s),
        paper_protocol_auc=paper_protocol_auc(y, frames["anomalous"].to_numpy()),
        n_frames=int(y.size),
        n_anomalous=int(y.sum()),
        per_video_auc=per_video_auc(frames),
    )
    if smoothing_sigma is not None:
        smoothed = smooth_scores(frames, smoothing_sigma)["score"].to_numpy()
        result.update(
            smoothing_sigma=float(smoothing_sigma),
            smoothed_roc_auc=roc_auc(y, smoothed),
            smoothed_average_precision=average_precision(y, smoothed),
        )
    return EvaluationResult(**result)


__all__ = [
    "CLIP_COLUMNS",
    "GROUND_TRUTH_COLUMNS",
    "EvaluationResult",
    "average_precision",
    "clips_to_frames",
    "evaluate",
    "frame_labels",
    "frame_table",
    "paper_protocol_auc",
    "per_video_auc",
    "roc_auc",
    "smooth_scores",
]
