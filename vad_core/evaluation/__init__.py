"""Evaluation: frame-level metrics, the report (JSON, Markdown) and every plot, from the score tables."""

from vad_core.evaluation.formatting import finite_or_none, fmt, markdown_table
from vad_core.evaluation.metrics import (
    EvaluationResult,
    average_precision,
    clips_to_frames,
    evaluate,
    frame_labels,
    frame_table,
    paper_protocol_auc,
    per_video_auc,
    roc_auc,
    smooth_scores,
)
from vad_core.evaluation.plots import (
    figure_png,
    heatmap_png,
    loss_curve_png,
    roc_png,
    score_curve_png,
    top_clips_png,
)
from vad_core.evaluation.report import EvaluationReport, ReportSettings, ReportTables, build_report, render_markdown

__all__ = [
    "EvaluationReport",
    "EvaluationResult",
    "ReportSettings",
    "ReportTables",
    "average_precision",
    "build_report",
    "clips_to_frames",
    "evaluate",
    "figure_png",
    "finite_or_none",
    "fmt",
    "frame_labels",
    "frame_table",
    "heatmap_png",
    "loss_curve_png",
    "markdown_table",
    "paper_protocol_auc",
    "per_video_auc",
    "render_markdown",
    "roc_auc",
    "roc_png",
    "score_curve_png",
    "smooth_scores",
    "top_clips_png",
]
