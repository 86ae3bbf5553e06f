"""Evaluation: frame-level metrics, the report (JSON, Markdown) and every plot, from the score tables."""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.evaluation.anomaly_map import colorize, overlay_heatmap, pixel_metrics, region_heatmap
    from vad_core.evaluation.formatting import finite_or_none, fmt, markdown_table
    from vad_core.evaluation.localization import (
        clip_regions,
        frame_heatmaps,
        frame_sources,
        localization_metrics,
        top_clips,
    )
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
    "clip_regions",
    "clips_to_frames",
    "colorize",
    "evaluate",
    "figure_png",
    "finite_or_none",
    "fmt",
    "frame_heatmaps",
    "frame_labels",
    "frame_sources",
    "frame_table",
    "heatmap_png",
    "localization_metrics",
    "loss_curve_png",
    "markdown_table",
    "overlay_heatmap",
    "paper_protocol_auc",
    "per_video_auc",
    "pixel_metrics",
    "region_heatmap",
    "render_markdown",
    "roc_auc",
    "roc_png",
    "score_curve_png",
    "smooth_scores",
    "top_clips",
    "top_clips_png",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
