"""The helpers of scripts/score_postprocessing_study.py (issue 9's post-processing measurements)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.study.test_bootstrap import _study
from tests.scripts._scripts import load_script
from vad_core.study.protocol import group_auc


@pytest.fixture(scope="module")
def study_script():
    return load_script("score_postprocessing_study")


def test_per_tile_median_iqr_by_hand(study_script) -> None:
    scores = np.array([1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0, 5.0, 50.0])
    tiles = np.array([0, 1] * 5)
    out = study_script.per_tile(scores, tiles, study_script._robust_z)
    # tile 0: 1..5, median 3, quartiles 2 and 4 (numpy's linear rule) -> (v - 3) / 2; tile 1 is 10x: the same
    expected = (np.array([1.0, 2.0, 3.0, 4.0, 5.0]) - 3.0) / 2.0
    np.testing.assert_allclose(out[tiles == 0], expected)
    np.testing.assert_allclose(out[tiles == 1], expected)


def test_smoothed_auc_without_smoothing_is_group_auc(study_script) -> None:
    data, labels = _study()
    scores = labels + np.random.default_rng(1).normal(0, 1.0, len(labels))
    assert study_script.smoothed_auc(data, scores, data.evaluated, None) == group_auc(data, scores, data.evaluated)
    # smoothing over frames pools the noisy clips of an anomalous run: here it must not rank worse than chance
    assert study_script.smoothed_auc(data, scores, data.evaluated, 16.0) > 50.0
