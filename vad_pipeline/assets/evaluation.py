"""The evaluation report: frame-level figures of the diffusion model and every baseline, with plots.

Writes `report.json`, `report.md` and PNGs under `<VAD_HOME>/<dataset>/report/`, logs them and
the AUCs to an MLflow run, and tags the registered denoiser version with its AUC.
"""

from pathlib import Path
from typing import Any, Optional

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.evaluation.formatting import fmt
from vad_core.evaluation.report import EvaluationReport, ReportSettings, ReportTables, build_report
from vad_core.io.tables import atomic_write_bytes, read_metadata
from vad_pipeline.assets.common import core_config, dataset_spec, read_table, run_tags
from vad_pipeline.datasets import DatasetSpec
from vad_pipeline.resources import DatasetResource, ExperimentTracker, VadStorage, code_version

_REPORT = ReportSettings()


class ReportConfig(Config):
    """vad_core.evaluation.report.ReportSettings: `smoothing_sigma` (frames) of the smoothed figure,
    `top_clips` drawn with their arg-max tile, `max_curve_videos` score curves (evaluated videos first)."""

    smoothing_sigma: Optional[float] = _REPORT.smoothing_sigma
    top_clips: int = _REPORT.top_clips
    max_curve_videos: int = _REPORT.max_curve_videos

    def to_core(self) -> ReportSettings:
        return core_config(self, ReportSettings)


def report_tables(storage: VadStorage, dataset: str) -> ReportTables:
    """The tables a report is built from, as the pipeline stored them."""
    baselines_path = storage.baseline_scores_path(dataset)
    segment_path = storage.segment_scores_path(dataset)
    return ReportTables(
        frames=read_table(storage.frame_scores_path(dataset), "frame_scores"),
        clips=read_table(segment_path, "segment_scores"),
        tiles=read_table(storage.tile_scores_path(dataset), "segment_scores (tile table)"),
        manifest=read_table(storage.manifest_path(dataset), "video_manifest"),
        ground_truth=read_table(storage.ground_truth_path(dataset), "ground_truth"),
        baselines=read_table(baselines_path, "baseline_scores") if baselines_path.is_file() else None,
        denoiser_info=storage.read_json(storage.denoiser_info_path(dataset)) or {},
        scoring_metadata=read_metadata(segment_path) if segment_path.is_file() else {},
    )


def write_report(storage: VadStorage, spec: DatasetSpec, settings: ReportSettings) -> tuple[EvaluationReport, dict[str, Path]]:
    """Build the report of `spec`'s dataset from its tables and store report.json, report.md and the plots."""
    report_dir = storage.report_dir(spec.name)
    plot_dir = report_dir / "plots"
    report = build_report(report_tables(storage, spec.name), settings, spec.name, spec=spec.to_dict(),
                          code_version=code_version(), plot_location=lambda name: str(plot_dir / name))
    written = {"report_json": storage.write_json(report.data, report_dir / "report.json"),
               "report_md": storage.write_text(report.markdown, report_dir / "report.md")}
    for name, png in report.plots.items():
        path = plot_dir / name
        atomic_write_bytes(path, png)
        written[f"plot_{Path(name).stem}"] = path
    return report, written


@asset(group_name="evaluation", deps=["frame_scores", "segment_scores", "baseline_scores", "ground_truth",
                                      "video_manifest", "denoiser"],
       description="Frame-level ROC AUC / AP (raw and smoothed) and the paper-protocol AUC of the diffusion "
       "model and every baseline, per-video AUCs, score curves, ROC curves and top-clip frames.")
def evaluation_report(context: AssetExecutionContext, config: ReportConfig, storage: VadStorage,
                      dataset: DatasetResource, tracker: ExperimentTracker) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    report, written = write_report(storage, spec, config.to_core())
    results = report.data["scorers"]
    info = report.data["denoiser"]
    json_path, md_path = written["report_json"], written["report_md"]
    plots = [p for key, p in written.items() if key.startswith("plot_")]
    labelled_frames = report.data["n_labelled_frames"]
    markdown = report.markdown

    auc_metrics = report.auc_metrics()
    with tracker.start_run(run_name=f"{spec.name}/evaluation", tags={
            **run_tags(context, spec), "denoiser_run_id": info.get("mlflow_run_id")}) as run:
        run.log_params({"dataset": spec.name, "report": config.model_dump(), "scoring": report.data["scoring"],
                        "denoiser_run_id": info.get("mlflow_run_id") or "", "scorers": list(results)})
        run.log_metrics(auc_metrics)
        run.log_artifact(json_path, "report")
        run.log_artifact(md_path, "report")
        for p in plots:
            run.log_artifact(p, "report/plots")
    d_auc = (results["diffusion"]["metrics"] or {}).get("roc_auc")
    if info.get("mlflow_run_id"):
        tracker.log_metrics_to(info["mlflow_run_id"], {k: v for k, v in auc_metrics.items() if k.endswith(".diffusion")})
    if info.get("model_version"):
        tracker.tag_model_version(info["model_name"], str(info["model_version"]), {
            "dataset": spec.name, "frame_auc": None if d_auc is None else f"{d_auc:.4f}",
            "frame_ap": fmt((results["diffusion"]["metrics"] or {}).get("average_precision")),
            "evaluation_run_id": run.run_id})

    meta: dict[str, Any] = {
        "report_json": MetadataValue.path(str(json_path)),
        "report_md": MetadataValue.path(str(md_path)),
        "preview": MetadataValue.md(markdown),
        "labelled_frames": labelled_frames,
        "mlflow_run_id": run.run_id or "",
    }
    for name, r in results.items():
        if r["metrics"]:
            meta[f"frame_auc_{name}"] = float(r["metrics"]["roc_auc"])
            meta[f"frame_ap_{name}"] = float(r["metrics"]["average_precision"])
    for p in plots:
        meta[f"plot_{p.stem}"] = MetadataValue.path(str(p))
    return MaterializeResult(metadata=meta)


__all__ = ["ReportConfig", "evaluation_report", "report_tables", "write_report"]
