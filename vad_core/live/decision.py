"""The decision rule of a single new video: the training batch's clip-score statistics, stored with the model.

The paper thresholds each batch of clips at mu_b + k * std_b of that batch's own scores
(`vad_core.scoring.thresholds.batch_decisions`): right for batch scoring of a whole dataset
(the `segment_scores` asset keeps it), wrong for one new video or a live stream, whose first
clip has no batch and whose batch of an all-normal hour would still flag its top 16%. The live
path therefore uses the statistics of the *training* batch, the clip scores of the videos the
detector was fitted on (scored out-of-fold), frozen into the model when it is logged:

    rule = DecisionRule.from_clip_scores(train_clip_scores, k=1.0)   # mu, std of (M,) scores
    rule.threshold                                                     # mu + k * std
    rule.decide(scores)                                                # (M,) bool, score > threshold
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vad_core.errors import VADInputError

RULE_KIND = "train_batch"  # the live rule; "batch" names the paper's per-batch rule in metadata


@dataclass(frozen=True)
class DecisionRule:
    """threshold = mean + k * std of the training clip scores (population std, as the batch rule)."""

    k: float  # standard deviations above the mean (method.md's k, 1.0 by default)
    mean: float  # mean of the training clips' scores
    std: float  # their standard deviation (ddof = 0)
    n_clips: int  # how many training clips the statistics came from
    kind: str = RULE_KIND

    def __post_init__(self) -> None:
        for name in ("k", "mean", "std"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise VADInputError(f"decision rule: {name} must be finite, got {value!r}")
        if self.k < 0 or self.std < 0:
            raise VADInputError(f"decision rule: k and std must be >= 0, got k={self.k!r}, std={self.std!r}")
        if self.n_clips < 1:
            raise VADInputError(f"decision rule: needs at least one training clip, got {self.n_clips}")

    @classmethod
    def from_clip_scores(cls, scores: object, k: float = 1.0) -> DecisionRule:
        """The rule of training clip scores `(M,)`; raises on an empty or non-finite array."""
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            raise VADInputError("decision rule: no training clip scores")
        if not np.isfinite(arr).all():
            raise VADInputError(f"decision rule: {int((~np.isfinite(arr)).sum())} training clip scores are not finite")
        return cls(k=float(k), mean=float(arr.mean()), std=float(arr.std()), n_clips=int(arr.size))

    @property
    def threshold(self) -> float:
        return self.mean + self.k * self.std

    def decide(self, scores: object) -> np.ndarray:
        """`(M,)` bool: each clip score strictly above the threshold (a zero-spread rule flags nothing)."""
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.std == 0:
            return np.zeros(arr.shape, dtype=bool)
        return arr > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionRule:
        try:
            return cls(
                k=float(data["k"]),
                mean=float(data["mean"]),
                std=float(data["std"]),
                n_clips=int(data["n_clips"]),
                kind=str(data.get("kind", RULE_KIND)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VADInputError(f"decision rule: incomplete ({type(exc).__name__}: {exc})") from None


__all__ = ["RULE_KIND", "DecisionRule"]
