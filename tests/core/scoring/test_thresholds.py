"""Batch thresholds mu_b + k * std_b, checked against hand-computed batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vad_core.errors import VADInputError
from vad_core.scoring.thresholds import batch_decisions


def test_one_batch_by_hand() -> None:
    # scores 1, 2, 3, 4, 10: mean = 20 / 5 = 4; squared deviations 9, 4, 1, 0, 36 sum to 50;
    # population variance 50 / 5 = 10, std = sqrt(10) = 3.1623; threshold (k = 1) = 7.1623.
    out = batch_decisions([1, 2, 3, 4, 10], k=1.0)
    assert out.batch.tolist() == [0] * 5
    np.testing.assert_allclose(out.threshold, 4 + math.sqrt(10), rtol=0, atol=1e-12)
    assert out.anomalous.tolist() == [False, False, False, False, True]


def test_k_moves_the_threshold() -> None:
    # k = 0.5: threshold 4 + 0.5 * 3.1623 = 5.58; still only 10 exceeds it.
    # k = 0: threshold = mean = 4; 10 exceeds it, 4 does not (strictly greater).
    half = batch_decisions([1, 2, 3, 4, 10], k=0.5)
    np.testing.assert_allclose(half.threshold[0], 4 + 0.5 * math.sqrt(10), atol=1e-12)
    zero = batch_decisions([1, 2, 3, 4, 10], k=0.0)
    np.testing.assert_allclose(zero.threshold[0], 4.0, atol=1e-12)
    assert zero.anomalous.tolist() == [False, False, False, False, True]
    assert half.anomalous.tolist() == [False, False, False, False, True]


def test_two_batches_by_hand() -> None:
    # batch 0 = [1, 2, 3, 4, 10] as above (threshold 7.1623);
    # batch 1 = [0, 0, 6]: mean 2, squared deviations 4, 4, 16 -> variance 24 / 3 = 8,
    # std = 2.8284, threshold = 4.8284, so only 6 is anomalous.
    out = batch_decisions([1, 2, 3, 4, 10, 0, 0, 6], k=1.0, batch_size=5)
    assert out.batch.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(out.threshold[:5], 4 + math.sqrt(10), atol=1e-12)
    np.testing.assert_allclose(out.threshold[5:], 2 + math.sqrt(8), atol=1e-12)
    assert out.anomalous.tolist() == [False, False, False, False, True, False, False, True]


def test_batches_are_independent() -> None:
    # The same scores thresholded as one batch or as its own batch after a very different batch
    # must give the same decisions for that batch.
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 100), rng.normal(50, 10, 100)
    joint = batch_decisions(np.concatenate([a, b]), k=0.7, batch_size=100)
    alone = batch_decisions(b, k=0.7, batch_size=100)
    np.testing.assert_allclose(joint.threshold[100:], alone.threshold)
    np.testing.assert_array_equal(joint.anomalous[100:], alone.anomalous)
    np.testing.assert_allclose(alone.threshold[0], b.mean() + 0.7 * b.std(ddof=0))


def test_single_clip_and_constant_batches_flag_nothing() -> None:
    out = batch_decisions([5.0, 1.0, 2.0, 3.0], k=1.0, batch_size=3)
    assert out.batch.tolist() == [0, 0, 0, 1]
    assert out.threshold[3] == 3.0 and not out.anomalous[3]
    const = batch_decisions(np.full(7, 0.1), k=0.0)  # mean of seven 0.1 may round below 0.1
    assert not const.anomalous.any()


@pytest.mark.parametrize(
    "scores, kwargs, match",
    [
        ([], {}, "empty"),
        ([1.0, np.nan], {}, "non-finite"),
        ([1.0, np.inf], {}, "non-finite"),
        ([[1.0, 2.0]], {}, "1-D"),
        ([1.0, 2.0], {"batch_size": 0}, "batch_size"),
        ([1.0, 2.0], {"batch_size": 2.5}, "batch_size"),
        ([1.0, 2.0], {"k": -0.5}, "k:"),
        ([1.0, 2.0], {"k": float("nan")}, "k:"),
    ],
)
def test_bad_input(scores, kwargs, match) -> None:
    with pytest.raises(VADInputError, match=match):
        batch_decisions(scores, **kwargs)
