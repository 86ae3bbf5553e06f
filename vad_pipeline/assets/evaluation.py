"""The evaluation report: frame-level figures of the diffusion model and every baseline, with plots.

Writes `report.json`, `report.md` and PNGs under `<VAD_HOME>/<dataset>/report/`, logs them and
the AUCs to an MLflow run, and tags the registered denoiser version with its AUC.
"""

import json
from pathlib import PurePosixPath
from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.evaluation.formatting import fmt
from vad_core.evaluation.report import EvaluationReport, ReportSettings, ReportTables, build_report
from vad_core.footage.ground_truth import pixel_mask_files
from vad_core.io.store import TableStore
from vad_pipeline.assets.common import core_config, dataset_spec, read_table, run_tags
from vad_pipeline.assets.consistency import invalidate_report, scores_fingerprint
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker, code_version
from vad_pipeline.specs import DatasetSpec

_REPORT = ReportSettings()


class ReportConfig(Config):
    """vad_core.evaluation.report.ReportSettings: `smoothing_sigma` (frames) of the smoothed figure,
    `top_clips` drawn with their anomaly map and arg-max tile, `max_curve_videos` score curves
    (evaluated videos first)."""

    smoothing_sigma: float | None = _REPORT.smoothing_sigma
    top_clips: int = _REPORT.top_clips
    max_curve_videos: int = _REPORT.max_curve_videos

    def to_core(self) -> ReportSettings:
        return core_config(self, ReportSettings)


def report_tables(store: TableStore, keys: DatasetKeys, spec: DatasetSpec | None = None) -> ReportTables:
    """The tables a report is built from, as the pipeline stored them, with the spec's pixel masks."""
    has_baselines = store.exists(keys.baseline_scores)
    ann = spec.annotations if spec is not None else None
    masks = pixel_mask_files(ann.pixel_masks, ann.mask_ids()) if ann is not None and ann.pixel_masks else {}
    baseline_meta = store.read_metadata(keys.baseline_scores) if has_baselines else {}
    truth_meta = store.read_metadata(keys.ground_truth) if store.exists(keys.ground_truth) else {}
    return ReportTables(
        frames=read_table(store, keys.frame_scores, "frame_scores"),
        clips=read_table(store, keys.segment_scores, "segment_scores"),
        tiles=read_table(store, keys.tile_scores, "segment_scores (tile table)"),
        manifest=read_table(store, keys.manifest, "video_manifest"),
        ground_truth=read_table(store, keys.ground_truth, "ground_truth"),
        baselines=read_table(store, keys.baseline_scores, "baseline_scores") if has_baselines else None,
        denoiser_info=store.read_json(keys.denoiser_info) or {},
        scoring_metadata=store.read_metadata(keys.segment_scores),
        pixel_masks=masks,
        skipped_scorers=json.loads(baseline_meta.get("skipped") or "{}"),
        # Tables written before the key existed say nothing: assume annotations, as before.
        has_annotations=bool(truth_meta.get("annotation", "unknown")),
    )


def write_report(
    store: TableStore, keys: DatasetKeys, spec: DatasetSpec, settings: ReportSettings
) -> tuple[EvaluationReport, dict[str, str]]:
    """Build the report of `spec`'s dataset from its stored tables and store report.json, report.md and
    the plots; returns the report and `{"report_json": key, "report_md": key, "plot_<stem>": key, ...}`.
    Dagster-free: `vad report` calls it too."""
    fingerprint = scores_fingerprint(store, keys)  # before reading: a rescoring meanwhile then shows
    report = build_report(
        report_tables(store, keys, spec),
        settings,
        spec.name,
        spec=spec.to_dict(),
        code_version=code_version(),
        plot_location=lambda name: store.location(keys.report_plot(name)),
    )
    report.data["scores_fingerprint"] = fingerprint
    invalidate_report(store, keys)  # plots of an earlier report (other videos) must not linger
    written = {"report_json": store.write_json(keys.report_json, report.data), "report_md": keys.report_md}
    store.write_bytes(keys.report_md, report.markdown.encode())
    for name, png in report.plots.items():
        store.write_bytes(keys.report_plot(name), png)
        written[f"plot_{PurePosixPath(name).stem}"] = keys.report_plot(name)
    return report, written


@asset(
    group_name="evaluation",
    deps=["frame_scores", "segment_scores", "baseline_scores", "ground_truth", "video_manifest", "denoiser"],
    description="Frame-level ROC AUC / AP (raw and smoothed) and the paper-protocol AUC of the diffusion "
    "model and every baseline, per-video AUCs, score curves, ROC curves and top-clip frames; removed "
    "whenever the scores are rewritten, so a report on disk always describes the stored scores.",
)
@user_errors
def evaluation_report(
    context: AssetExecutionContext,
    config: ReportConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    tracker: ExperimentTracker,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    report, written = write_report(store, keys, spec, config.to_core())
    results = report.data["scorers"]
    info = report.data["denoiser"]
    plots = {name: key for name, key in written.items() if name.startswith("plot_")}

    auc_metrics = report.auc_metrics()
    with tracker.start_run(
        run_name=f"{spec.name}/evaluation",
        tags={**run_tags(context, spec), "denoiser_run_id": info.get("mlflow_run_id")},
    ) as run:
        run.log_params(
            {
                "dataset": spec.name,
                "report": config.model_dump(),
                "scoring": report.data["scoring"],
                "denoiser_run_id": info.get("mlflow_run_id") or "",
                "scorers": list(results),
            }
        )
        run.log_metrics(auc_metrics)
        loc = report.data.get("localization") or {}
        run.log_metrics({f"{k}.diffusion": loc[k] for k in ("pixel_auc", "hit_rate") if loc.get(k) is not None})
        run.log_artifact(store.read_bytes(keys.report_json), "report.json", "report")
        run.log_artifact(report.markdown.encode(), "report.md", "report")
        for key in plots.values():
            run.log_artifact(store.read_bytes(key), PurePosixPath(key).name, "report/plots")
    d_auc = (results["diffusion"]["metrics"] or {}).get("roc_auc")
    if info.get("mlflow_run_id"):
        tracker.log_metrics_to(
            info["mlflow_run_id"], {k: v for k, v in auc_metrics.items() if k.endswith(".diffusion")}
        )
    if info.get("model_version"):
        tracker.tag_model_version(
            info["model_name"],
            str(info["model_version"]),
            {
                "dataset": spec.name,
                "frame_auc": None if d_auc is None else f"{d_auc:.4f}",
                "frame_ap": fmt((results["diffusion"]["metrics"] or {}).get("average_precision")),
                "evaluation_run_id": run.run_id,
            },
        )

    meta: dict[str, Any] = {
        "report_json": MetadataValue.path(store.location(keys.report_json)),
        "report_md": MetadataValue.path(store.location(keys.report_md)),
        "preview": MetadataValue.md(report.markdown),
        "labelled_frames": report.data["n_labelled_frames"],
        "mlflow_run_id": run.run_id or "",
    }
    for name, r in results.items():
        if r["metrics"]:
            meta[f"frame_auc_{name}"] = float(r["metrics"]["roc_auc"])
            meta[f"frame_ap_{name}"] = float(r["metrics"]["average_precision"])
    for name, key in plots.items():
        meta[name] = MetadataValue.path(store.location(key))
    return MaterializeResult(metadata=meta)


__all__ = ["ReportConfig", "evaluation_report", "report_tables", "write_report"]
