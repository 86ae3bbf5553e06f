"""How far apart two scorers really are on a test set: a paired block bootstrap of their frame-AUC gap.

Protocol (a)'s halves hold three Ped2 test videos each and the demo forty test clips, so a mean
difference of one or two AUC points between two scorers may be one clip's rank. The bootstrap
resamples the evaluation frames in blocks of `block` frames (16 = one clip: the frames of a clip
share its score, so single frames are not independent), with replacement, within the evaluated
videos, and evaluates *both* scorers on the same resample: the interval is of the difference,
which is far narrower than two separate intervals would suggest.

    gap = paired_auc_gap(data, robust_scores, knn_scores, ["testing/frames/01", ...], n_resamples=1000)
    gap.difference, gap.low, gap.high, gap.share_ahead   # points; 5% / 95% quantiles; P(first ahead)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError
from vad_core.evaluation.metrics import clips_to_frames, frame_labels, roc_auc
from vad_core.scoring.rows import clip_scores
from vad_core.study.data import StudyData


class AucGap(NamedTuple):
    """Frame ROC AUC of scorer a minus scorer b, in points, and its bootstrap distribution's summary."""

    difference: float  # on the whole evaluation set
    low: float  # 5% quantile of the resampled differences
    high: float  # 95% quantile
    share_ahead: float  # share of resamples where a's AUC is above b's
    resamples: int  # resamples with both classes present (the others have no AUC and are skipped)


def frame_scores(data: StudyData, scores: np.ndarray, videos: Sequence[str]) -> pd.DataFrame:
    """Frames of `videos` (video_id, frame, score, label), in video and frame order, from row scores `(N,)`.

    Clip = max over tiles, frame = max of its clips: the same path as `vad_core.study.protocol.group_auc`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(data.rows),):
        raise VADInputError(f"{data.name}: {scores.shape[0]} scores for {len(data.rows)} rows")
    clips = clip_scores(data.rows.assign(score=scores))
    clips = clips[clips["video_id"].astype(str).isin(set(videos))]
    if clips.empty:
        raise VADInputError(f"{data.name}: no rows of the evaluation videos {list(videos)[:3]}...")
    frames = clips_to_frames(clips.assign(anomalous=False), data.n_frames)
    frames = frames.sort_values(["video_id", "frame"], kind="stable").reset_index(drop=True)
    return frames.assign(label=frame_labels(frames, data.ground_truth))[["video_id", "frame", "score", "label"]]


def paired_auc_gap(
    data: StudyData,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    videos: Sequence[str],
    n_resamples: int = 1000,
    block: int = 16,
    seed: int = 0,
) -> AucGap:
    """AUC(a) - AUC(b) on `videos` (row scores `(N,)` each) with a paired block bootstrap (see the module doc).

    `block`: frames per resampled block, counted from each video's first frame; `seed`: the resampling RNG's.
    """
    if n_resamples < 1 or block < 1:
        raise VADInputError(f"paired_auc_gap: need n_resamples >= 1 and block >= 1, got {n_resamples}, {block}")
    fa = frame_scores(data, scores_a, videos)
    fb = frame_scores(data, scores_b, videos)
    labels = fa["label"].to_numpy(bool)
    a, b = fa["score"].to_numpy(), fb["score"].to_numpy()
    if labels.all() or not labels.any():
        raise VADInputError(f"{data.name}: the evaluation frames of {list(videos)[:3]}... hold one class only")
    block_of = pd.factorize(fa["video_id"].astype(str) + ":" + (fa["frame"] // block).astype(str))[0]
    order = np.argsort(block_of, kind="stable")
    starts = np.searchsorted(block_of[order], np.arange(block_of.max() + 2))
    blocks = [order[starts[i] : starts[i + 1]] for i in range(len(starts) - 1)]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_resamples):
        take = np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
        y = labels[take]
        if y.all() or not y.any():
            continue
        diffs.append(100.0 * (roc_auc(y, a[take]) - roc_auc(y, b[take])))
    if not diffs:
        raise VADInputError(f"{data.name}: no resample held both classes; too few anomalous blocks")
    d = np.asarray(diffs)
    return AucGap(
        difference=100.0 * (roc_auc(labels, a) - roc_auc(labels, b)),
        low=float(np.percentile(d, 5)),
        high=float(np.percentile(d, 95)),
        share_ahead=float((d > 0).mean()),
        resamples=len(d),
    )


__all__ = ["AucGap", "frame_scores", "paired_auc_gap"]
