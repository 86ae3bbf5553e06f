"""The pipeline's assets, one module per stage (design.md)."""

from vad_pipeline.assets.evaluation import evaluation_report
from vad_pipeline.assets.features import clip_features, feature_index
from vad_pipeline.assets.footage import ground_truth, video_manifest
from vad_pipeline.assets.live import live_alerts, live_scores
from vad_pipeline.assets.promotion import model_promotion
from vad_pipeline.assets.scoring import baseline_scores, frame_scores, segment_scores
from vad_pipeline.assets.training import denoiser

ALL_ASSETS = [
    video_manifest,
    ground_truth,
    clip_features,
    live_scores,
    live_alerts,
    feature_index,
    denoiser,
    segment_scores,
    frame_scores,
    baseline_scores,
    evaluation_report,
    model_promotion,
]

__all__ = ["ALL_ASSETS", *[a.key.to_user_string() for a in ALL_ASSETS]]
