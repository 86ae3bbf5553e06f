"""Frame expansion, labels, smoothing and AUCs against hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from vad_core.errors import VADInputError
from vad_core.evaluation.metrics import (
    average_precision,
    clips_to_frames,
    evaluate,
    frame_labels,
    paper_protocol_auc,
    per_video_auc,
    roc_auc,
    smooth_scores,
)


def _clips() -> pd.DataFrame:
    # Video a (10 frames): clips [0,4) s=1, [4,8) s=3 flagged, and a tail clip [6,10) s=2 that
    # overlaps the second on frames 6, 7. Video b (3 frames): one clip [0,3) s=5.
    return pd.DataFrame(
        {
            "video_id": ["a", "a", "a", "b"],
            "start_frame": [0, 4, 6, 0],
            "end_frame": [4, 8, 10, 3],
            "score": [1.0, 3.0, 2.0, 5.0],
            "anomalous": [False, True, False, False],
        }
    )


def test_clips_to_frames_overlap_takes_max_and_any() -> None:
    frames = clips_to_frames(_clips(), {"a": 10, "b": 3, "unused": 7})
    assert list(frames.columns) == ["video_id", "frame", "score", "anomalous"]
    a = frames[frames.video_id == "a"]
    assert a.frame.tolist() == list(range(10))
    # frames 6, 7 are covered by s=3 (flagged) and s=2: max 3, flagged.
    assert a.score.tolist() == [1, 1, 1, 1, 3, 3, 3, 3, 2, 2]
    assert a.anomalous.tolist() == [False] * 4 + [True] * 4 + [False] * 2
    b = frames[frames.video_id == "b"]
    assert b.score.tolist() == [5, 5, 5] and not b.anomalous.any()
    assert "unused" not in set(frames.video_id)


def test_clips_to_frames_flag_from_lower_overlapping_clip() -> None:
    # The flagged clip has the LOWER score: the frame keeps the max score and still is anomalous.
    clips = pd.DataFrame(
        {
            "video_id": ["v", "v"],
            "start_frame": [0, 2],
            "end_frame": [4, 6],
            "score": [9.0, 1.0],
            "anomalous": [False, True],
        }
    )
    frames = clips_to_frames(clips, {"v": 6})
    assert frames.score.tolist() == [9, 9, 9, 9, 1, 1]
    assert frames.anomalous.tolist() == [False, False, True, True, True, True]


@pytest.mark.parametrize(
    "n_frames, match",
    [
        ({"a": 12, "b": 3}, "'a' has 2 frames no clip covers"),
        ({"a": 9, "b": 3}, "past its 9 frames"),
        ({"a": 10}, "no frame count for video 'b'"),
    ],
)
def test_clips_to_frames_errors(n_frames, match) -> None:
    with pytest.raises(VADInputError, match=match):
        clips_to_frames(_clips(), n_frames)


def test_clips_to_frames_gap_names_video() -> None:
    clips = _clips().drop(index=1)  # removes [4, 8); frames 4, 5 uncovered
    with pytest.raises(VADInputError, match="'a' has 2 frames no clip covers .first: frame 4"):
        clips_to_frames(clips, {"a": 10, "b": 3})


def test_frame_labels_half_open() -> None:
    frames = pd.DataFrame({"video_id": ["a"] * 10 + ["b"] * 3, "frame": list(range(10)) + [0, 1, 2]})
    gt = pd.DataFrame({"video_id": ["a", "a", "z"], "start_frame": [2, 8, 0], "end_frame": [5, 12, 4]})
    labels = frame_labels(frames, gt)
    assert labels.dtype == np.int8
    # [2, 5) -> frames 2, 3, 4; [8, 12) -> 8, 9 (past the end ignored); b has no interval.
    assert labels.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1] + [0, 0, 0]


def test_frame_labels_bad_interval() -> None:
    frames = pd.DataFrame({"video_id": ["a"], "frame": [0]})
    gt = pd.DataFrame({"video_id": ["a"], "start_frame": [5], "end_frame": [3]})
    with pytest.raises(VADInputError, match="invalid interval"):
        frame_labels(frames, gt)


def test_auc_by_pair_counting() -> None:
    # positives score 0.8, 0.4; negatives 0.5, 0.3, 0.1. Of the 2 * 3 = 6 (pos, neg) pairs the
    # positive wins 3 (0.8 beats all) + 2 (0.4 beats 0.3, 0.1) = 5, so AUC = 5 / 6.
    labels = [1, 0, 1, 0, 0]
    scores = [0.8, 0.5, 0.4, 0.3, 0.1]
    assert roc_auc(labels, scores) == pytest.approx(5 / 6)
    # Raise the first negative to tie the second positive: 0.8 still wins 3; 0.4 ties the
    # negative 0.4 (counts one half) and beats 0.3, 0.1 -> (3 + 0.5 + 2) / 6.
    assert roc_auc(labels, [0.8, 0.4, 0.4, 0.3, 0.1]) == pytest.approx(5.5 / 6)
    # AP: ranked 0.8(+), 0.5(-), 0.4(+): precision at each positive 1/1 and 2/3, mean = 5/6.
    assert average_precision(labels, scores) == pytest.approx((1 + 2 / 3) / 2)


def test_paper_protocol_equals_balanced_accuracy() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(500) < 0.2).astype(np.int8)
    decisions = np.where(labels == 1, rng.random(500) < 0.7, rng.random(500) < 0.1)
    expected = balanced_accuracy_score(labels, decisions)
    tpr = decisions[labels == 1].mean()
    tnr = 1 - decisions[labels == 0].mean()
    assert paper_protocol_auc(labels, decisions) == pytest.approx(expected)
    assert paper_protocol_auc(labels, decisions) == pytest.approx((tpr + tnr) / 2)


@pytest.mark.parametrize(
    "labels, scores, match",
    [
        ([], [], "empty"),
        ([0, 0, 0], [1, 2, 3], "one class"),
        ([1, 1], [1, 2], "one class"),
        ([0, 1], [1.0, np.nan], "non-finite"),
        ([0, 2], [1, 2], "0 \\(normal\\)"),
        ([0, 1], [1], "equal length"),
    ],
)
def test_auc_bad_input(labels, scores, match) -> None:
    with pytest.raises(VADInputError, match=match):
        roc_auc(labels, scores)


def test_smoothing_matches_gaussian_formula_at_a_point() -> None:
    # Interior frame of a long enough video: the smoothed value is sum_j w_j s_{t+j} with
    # w_j = exp(-j^2 / (2 sigma^2)) normalised over |j| <= 4 sigma (scipy's truncate=4).
    rng = np.random.default_rng(0)
    scores = rng.random(60)
    sigma = 2.0
    frames = pd.DataFrame({"video_id": "v", "frame": np.arange(60), "score": scores, "anomalous": False})
    out = smooth_scores(frames.iloc[::-1], sigma)  # row order must not matter
    j = np.arange(-8, 9)
    w = np.exp(-(j**2) / (2 * sigma**2))
    w /= w.sum()
    t = 30
    smoothed = out.set_index("frame")["score"]
    assert smoothed[t] == pytest.approx(float((w * scores[t + j]).sum()), rel=1e-12)
    # At frame 0 mode="nearest" repeats frame 0 for the frames before it.
    padded = np.concatenate([np.full(8, scores[0]), scores[:9]])
    assert smoothed[0] == pytest.approx(float((w * padded).sum()), rel=1e-12)
    assert list(out.index) == list(frames.iloc[::-1].index)


def test_smoothing_does_not_cross_videos() -> None:
    frames = pd.DataFrame(
        {"video_id": ["a"] * 5 + ["b"] * 5, "frame": list(range(5)) * 2, "score": [0.0] * 5 + [100.0] * 5}
    )
    out = smooth_scores(frames, 3.0)
    assert out.score.tolist() == [0.0] * 5 + [100.0] * 5


def test_per_video_and_evaluate() -> None:
    frames = pd.DataFrame(
        {
            "video_id": ["a"] * 5 + ["b"] * 3,
            "frame": [0, 1, 2, 3, 4, 0, 1, 2],
            "score": [0.8, 0.5, 0.4, 0.3, 0.1, 0.9, 0.2, 0.7],
            "anomalous": [True, True, False, False, False, True, False, False],
            "label": [1, 0, 1, 0, 0, 0, 0, 0],
        }
    )
    # Video a as in test_auc_by_pair_counting (5/6); video b is all normal, so it is left out.
    assert per_video_auc(frames) == {"a": pytest.approx(5 / 6)}
    result = evaluate(frames, smoothing_sigma=1.0)
    # Pooled: positives 0.8, 0.4 vs negatives 0.5, 0.3, 0.1, 0.9, 0.2, 0.7: 0.8 beats 5 of 6,
    # 0.4 beats 3 of 6 -> 8 / 12. Decisions: TPR 1/2, TNR 4/6 -> (1/2 + 2/3) / 2.
    assert result.roc_auc == pytest.approx(8 / 12)
    assert result.paper_protocol_auc == pytest.approx((0.5 + 4 / 6) / 2)
    assert (result.n_frames, result.n_anomalous) == (8, 2)
    smoothed = smooth_scores(frames, 1.0)["score"].to_numpy()
    assert result.smoothed_roc_auc == pytest.approx(roc_auc(frames.label, smoothed))
    d = result.to_dict()
    assert d["smoothing_sigma"] == 1.0 and d["per_video_auc"] == {"a": pytest.approx(5 / 6)}
    plain = evaluate(frames)
    assert plain.smoothed_roc_auc is None and plain.smoothing_sigma is None


def test_evaluate_single_class_is_an_error() -> None:
    frames = pd.DataFrame(
        {"video_id": "a", "frame": [0, 1], "score": [0.1, 0.2], "anomalous": [False, True], "label": [0, 0]}
    )
    with pytest.raises(VADInputError, match="one class"):
        evaluate(frames)
