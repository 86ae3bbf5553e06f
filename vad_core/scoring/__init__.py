"""Scoring: row tables to clip scores and decisions, batch thresholds, and the scorers.

Per-row diffusion scores come from `vad_core.diffusion.reconstruction.score_rows` (the training
loop's memorization diagnostic needs them too, so they sit with the denoiser); this stage turns
row scores into clip scores, thresholds batches of clips and holds every scorer by name.
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.scoring.rows import clip_scores, decide_clips, row_keys_for, score_summary
    from vad_core.scoring.scorers import (
        BASELINES,
        SCORERS,
        AnomalyScorer,
        DiffusionScorer,
        GCLAutoencoderScorer,
        GCLConfig,
        GCLScorer,
        IsolationForestScorer,
        KNNScorer,
        PCAScorer,
        PerTileScorer,
        make_scorer,
    )
    from vad_core.scoring.thresholds import BatchDecisions, batch_decisions

__all__ = [
    "BASELINES",
    "SCORERS",
    "AnomalyScorer",
    "BatchDecisions",
    "DiffusionScorer",
    "GCLAutoencoderScorer",
    "GCLConfig",
    "GCLScorer",
    "IsolationForestScorer",
    "KNNScorer",
    "PCAScorer",
    "PerTileScorer",
    "batch_decisions",
    "clip_scores",
    "decide_clips",
    "make_scorer",
    "row_keys_for",
    "score_summary",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
