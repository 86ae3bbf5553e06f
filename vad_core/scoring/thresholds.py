"""Data-driven decisions: threshold each batch of clip scores at mu_b + k * std_b (method.md).

The paper flags a segment as anomalous when its score exceeds L_th = mu_b + k * sigma_b, the
mean and standard deviation of the scores of the batch it was scored in. No label is used.
Batches here are consecutive runs of `batch_size` clips in the order given, so the caller
decides what a batch is (e.g. clips sorted by video and time, as the paper's loader yields them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vad_core.errors import VADInputError


@dataclass(frozen=True)
class BatchDecisions:
    """Per-clip batch index, threshold of that batch and decision, each `(M,)`."""

    batch: np.ndarray  # (M,) int64, 0-based batch index of each clip
    threshold: np.ndarray  # (M,) float64, mu_b + k * std_b of the clip's batch
    anomalous: np.ndarray  # (M,) bool, score > threshold

    def to_dict(self) -> dict[str, list[Any]]:
        return {
            "batch": self.batch.tolist(),
            "threshold": self.threshold.tolist(),
            "anomalous": self.anomalous.tolist(),
        }


def _check_scores(scores: object, name: str = "scores") -> np.ndarray:
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise VADInputError(f"{name}: cannot be read as a float array ({exc})") from None
    if arr.ndim != 1:
        raise VADInputError(f"{name}: expected a 1-D array of clip scores, got shape {arr.shape}")
    if arr.size == 0:
        raise VADInputError(f"{name}: is empty (0 clips)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise VADInputError(
            f"{name}: {int(bad.sum())} non-finite values (first at index {int(np.flatnonzero(bad)[0])})"
        )
    return arr


def batch_decisions(scores: object, k: float = 1.0, batch_size: int = 8192) -> BatchDecisions:
    """Threshold consecutive batches of `scores` `(M,)` at mu_b + k * std_b.

    std_b is the population standard deviation (ddof=0), as the paper's batch statistic over
    the scores at hand, not an estimate of a wider population. A clip is anomalous when its
    score is strictly greater than its batch's threshold, so a batch of one clip (std 0), or of
    equal scores, flags nothing. The last batch holds the remaining M mod batch_size clips.
    k must be finite and >= 0: a negative k would put the threshold below the batch mean and
    flag most clips, which contradicts the premise that anomalies are the rare tail.
    """
    arr = _check_scores(scores)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise VADInputError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    try:
        k = float(k)
    except (TypeError, ValueError):
        raise VADInputError(f"k: must be a number, got {k!r}") from None
    if not np.isfinite(k) or k < 0:
        raise VADInputError(f"k: must be finite and >= 0, got {k!r}")

    batch = np.arange(arr.size, dtype=np.int64) // int(batch_size)
    starts = np.arange(0, arr.size, int(batch_size))
    counts = np.diff(np.append(starts, arr.size)).astype(np.float64)
    mean = np.add.reduceat(arr, starts) / counts
    # Two-pass variance (deviations from the batch mean) avoids the cancellation of E[x^2] - E[x]^2.
    dev = arr - mean[batch]
    std = np.sqrt(np.add.reduceat(dev * dev, starts) / counts)
    threshold = (mean + k * std)[batch]
    # A batch of equal scores has nothing above the rest; rounding in the mean must not flag it.
    varied = (np.maximum.reduceat(arr, starts) > np.minimum.reduceat(arr, starts))[batch]
    return BatchDecisions(batch=batch, threshold=threshold, anomalous=(arr > threshold) & varied)


__all__ = ["BatchDecisions", "batch_decisions"]
