"""`paired_auc_gap`: the frame-AUC gap between two scorers and its paired block bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core._synthetic import mixture
from vad_core.errors import VADInputError
from vad_core.study.bootstrap import frame_scores, paired_auc_gap
from vad_core.study.data import StudyData
from vad_core.study.protocol import group_auc


def _study() -> tuple[StudyData, np.ndarray]:
    """Three videos of 50 clips with planted anomalous clips, and `(N,)` 0/1 row labels of those clips."""
    mix = mixture(n_clips=150)
    clips = mix.rows.drop_duplicates(["video_id", "clip"]).reset_index(drop=True)
    bad = clips[mix.clip_labels == 1]
    truth = bad[["video_id", "start_frame", "end_frame"]].reset_index(drop=True)
    videos = sorted(mix.rows["video_id"].unique())
    data = StudyData("synthetic", mix.rows, mix.features, {v: 50 * 16 for v in videos}, truth, tuple(videos))
    bad_keys = set(zip(bad["video_id"], bad["clip"], strict=True))
    pairs = zip(data.rows["video_id"], data.rows["clip"], strict=True)
    return data, np.array([(v, c) in bad_keys for v, c in pairs], dtype=float)


def test_a_scorer_against_itself_is_zero_on_every_resample() -> None:
    data, labels = _study()
    scores = labels + np.random.default_rng(0).normal(0, 1.0, len(labels))
    gap = paired_auc_gap(data, scores, scores, data.evaluated, n_resamples=50)
    assert (gap.difference, gap.low, gap.high, gap.share_ahead) == (0.0, 0.0, 0.0, 0.0)
    # a resample that drew no anomalous block (the mixture plants few) has no AUC and is skipped, not counted
    assert 40 <= gap.resamples <= 50


def test_a_perfect_scorer_against_its_reverse_is_a_hundred_points_ahead_everywhere() -> None:
    data, labels = _study()
    assert group_auc(data, labels, data.evaluated) == pytest.approx(100.0)  # the labels rank every frame right
    gap = paired_auc_gap(data, labels, -labels, data.evaluated, n_resamples=50)
    assert gap.difference == pytest.approx(100.0) and gap.low == pytest.approx(100.0)
    assert gap.high == pytest.approx(100.0) and gap.share_ahead == 1.0


def test_the_gap_is_the_difference_of_the_two_group_aucs_and_the_interval_holds_it() -> None:
    data, labels = _study()
    rng = np.random.default_rng(2)
    a = labels + rng.normal(0, 0.7, len(labels))  # the better scorer: less noise on the same signal
    b = labels + rng.normal(0, 1.5, len(labels))
    gap = paired_auc_gap(data, a, b, data.evaluated, n_resamples=200)
    expected = group_auc(data, a, data.evaluated) - group_auc(data, b, data.evaluated)
    assert gap.difference == pytest.approx(expected)
    assert expected > 0 and gap.low < gap.difference < gap.high and gap.share_ahead > 0.5
    # the same seed gives the same resamples; another seed other ones
    assert paired_auc_gap(data, a, b, data.evaluated, n_resamples=200) == gap
    assert paired_auc_gap(data, a, b, data.evaluated, n_resamples=200, seed=1) != gap


def test_frame_scores_follow_the_max_over_tiles_and_clips() -> None:
    data, labels = _study()
    frames = frame_scores(data, labels, data.evaluated[:1])
    assert set(frames["video_id"]) == {data.evaluated[0]} and len(frames) == 50 * 16
    # a frame is labelled anomalous exactly when its clip scored 1 (the labels are the planted clips)
    assert (frames["label"].to_numpy() == (frames["score"].to_numpy() == 1.0)).all()


def test_bad_input_is_named() -> None:
    data, labels = _study()
    with pytest.raises(VADInputError, match="scores for"):
        paired_auc_gap(data, labels[:-1], labels, data.evaluated)
    with pytest.raises(VADInputError, match="n_resamples"):
        paired_auc_gap(data, labels, labels, data.evaluated, n_resamples=0)
    with pytest.raises(VADInputError, match="no rows of the evaluation videos"):
        paired_auc_gap(data, labels, labels, ["nope"])
