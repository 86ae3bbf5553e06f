"""The scorers by name: the diffusion model and its baselines behind one fit/score interface.

scorer = make_scorer("knn", k=5).fit(features, tiles)
scores = scorer.score(features, tiles)      # (N,) float64, higher = more anomalous
"""

from __future__ import annotations

from typing import Any

from vad_core.errors import VADInputError
from vad_core.scoring.scorers.base import AnomalyScorer
from vad_core.scoring.scorers.diffusion import DiffusionScorer
from vad_core.scoring.scorers.gcl import GCLAutoencoderScorer, GCLScorer
from vad_core.scoring.scorers.sklearn_scorers import IsolationForestScorer, KNNScorer, PCAScorer

SCORERS: dict[str, type[AnomalyScorer]] = {
    "knn": KNNScorer,
    "pca": PCAScorer,
    "iforest": IsolationForestScorer,
    "gcl_ae": GCLAutoencoderScorer,
    "gcl": GCLScorer,
    "diffusion": DiffusionScorer,
}
# The baselines every run compares the diffusion model with (scoring assets, the study).
BASELINES: tuple[str, ...] = ("knn", "pca", "iforest", "gcl_ae", "gcl")


def make_scorer(name: str, **kwargs: Any) -> AnomalyScorer:
    """Build the scorer registered under `name` with its constructor arguments."""
    try:
        cls = SCORERS[name]
    except KeyError:
        raise VADInputError(f"scorer: unknown name {name!r} (known: {sorted(SCORERS)})") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise VADInputError(f"scorer {name!r}: bad arguments ({exc})") from None


__all__ = ["BASELINES", "SCORERS", "make_scorer"]
