"""Anomaly scorers behind one fit/score interface: the diffusion model and its baselines.

scorer = make_scorer("knn", k=5).fit(features, tiles)
scores = scorer.score(features, tiles)      # (N,) float64, higher = more anomalous
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.scoring.scorers.base import AnomalyScorer, PerTileScorer, check_tiles
    from vad_core.scoring.scorers.diffusion import DiffusionScorer
    from vad_core.scoring.scorers.gcl import GCLAutoencoderScorer, GCLConfig, GCLScorer
    from vad_core.scoring.scorers.registry import BASELINES, SCORERS, make_scorer
    from vad_core.scoring.scorers.sklearn_scorers import IsolationForestScorer, KNNScorer, PCAScorer

__all__ = [
    "BASELINES",
    "SCORERS",
    "AnomalyScorer",
    "DiffusionScorer",
    "GCLAutoencoderScorer",
    "GCLConfig",
    "GCLScorer",
    "IsolationForestScorer",
    "KNNScorer",
    "PCAScorer",
    "PerTileScorer",
    "check_tiles",
    "make_scorer",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
