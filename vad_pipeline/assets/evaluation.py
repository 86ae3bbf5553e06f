"""The evaluation report: frame-level figures of the diffusion model and every baseline, with plots.

Writes `report.json`, `report.md` and PNGs under `<VAD_HOME>/<dataset>/report/`. In MLflow, one
evaluation run wraps the work (reading the tables, the figures, the plots) and holds the report
and plots; under it, one child run per scorer carries the same metric names (`frame_auc`,
`frame_ap`, `frame_auc_smoothed`, `paper_protocol_auc`) and a `scorer` param and tag, so the runs
table and the compare view put the diffusion model beside each baseline. The figures also go
back to the run that fitted each scorer (the denoiser's training run, each baseline's run), and
the registered denoiser version gets them in its tags and description. In Dagster, the report
and the ROC curve are Markdown with the plots embedded, the figures are rounded numbers, and
the MLflow runs and model version are links.
"""

import json
from pathlib import PurePosixPath
from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.errors import VADInputError
from vad_core.evaluation.embed import embed_plots, report_html
from vad_core.evaluation.report import EvaluationReport, ReportSettings, ReportTables, build_report, render_markdown
from vad_core.footage.ground_truth import pixel_mask_files
from vad_core.io.store import TableStore
from vad_core.live.promotion import promotion_markdown
from vad_pipeline.assets.common import core_config, dataset_spec, read_table, run_tags
from vad_pipeline.assets.consistency import invalidate_report, scores_fingerprint
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.assets.model_card import (
    FIGURE_COLUMNS,
    evaluation_description,
    figures_table,
    model_links,
    rounded,
    version_description,
)
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker, code_version
from vad_pipeline.specs import DatasetSpec
from vad_pipeline.ui_links import dagster_run_url

_REPORT = ReportSettings()
# Dagster keeps every materialization's metadata: the embedded plots of one report stay below this.
EMBED_BUDGET_BYTES = 1_500_000


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
    """Build the report of `spec`'s dataset from its stored tables and store report.json, report.md,
    report.html (the plots embedded) and the plots; returns the report and `{"report_json": key,
    "report_md": key, "report_html": key, "plot_<stem>": key, ...}`. Dagster-free: `vad report` calls it too."""
    report, written, _ = _write_report(store, keys, spec, settings)
    return report, written


def _write_report(
    store: TableStore, keys: DatasetKeys, spec: DatasetSpec, settings: ReportSettings
) -> tuple[EvaluationReport, dict[str, str], dict[str, str | None]]:
    """`write_report`, also returning the plots' data URIs (None: over the embedding budget)."""
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
    # A promotion decided on these very scores still holds (`vad report` rebuilding the report keeps it).
    promotion = store.read_json(keys.promotion) if store.exists(keys.promotion) else None
    invalidate_report(store, keys)  # plots of an earlier report (other videos) must not linger
    if promotion is not None and promotion.get("scores_fingerprint") == fingerprint:
        store.write_json(keys.promotion, promotion)
        report.data["promotion"] = promotion
        report.markdown = report_markdown(report.data)
    written = {"report_json": store.write_json(keys.report_json, report.data), "report_md": keys.report_md}
    store.write_bytes(keys.report_md, report.markdown.encode())
    for name, png in report.plots.items():
        store.write_bytes(keys.report_plot(name), png)
        written[f"plot_{PurePosixPath(name).stem}"] = keys.report_plot(name)
    # The ROC curve first: when the budget runs out, the plots that matter most are the ones embedded.
    ordered = dict(sorted(report.plots.items(), key=lambda item: item[0] != "roc.png"))
    embedded = embed_plots(ordered, EMBED_BUDGET_BYTES)
    page = report_html(report_markdown(report.data, plot_src=embedded.get), f"Evaluation report: {spec.name}")
    store.write_bytes(keys.report_html, page.encode())
    written["report_html"] = keys.report_html
    return report, written, embedded


def report_markdown(data: dict[str, Any], plot_src: Any = None) -> str:
    """The report's Markdown (`render_markdown`), with the "Promotion" section once a promotion was decided."""
    text = render_markdown(data, plot_src=plot_src)
    return f"{text}\n\n{promotion_markdown(data['promotion'])}" if data.get("promotion") else text


def add_promotion(store: TableStore, keys: DatasetKeys, record: dict[str, Any]) -> dict[str, str | None]:
    """Record a promotion decision with the stored report: promotion.json, then report.json with it, then
    report.md and report.html re-rendered with the section (plots re-embedded from the store). Each file
    is replaced whole; returns the plots' data URIs (None: over the embedding budget)."""
    data = store.read_json(keys.report_json)
    if data is None:
        raise VADInputError(
            f"report {store.location(keys.report_json)} is missing: materialize evaluation_report first"
        )
    store.write_json(keys.promotion, record)
    data["promotion"] = record
    store.write_json(keys.report_json, data)
    store.write_bytes(keys.report_md, report_markdown(data).encode())
    plots = {PurePosixPath(k).name: store.read_bytes(k) for k in store.list(keys.report_plot("").rstrip("/"))}
    embedded = embed_plots(dict(sorted(plots.items(), key=lambda item: item[0] != "roc.png")), EMBED_BUDGET_BYTES)
    page = report_html(report_markdown(data, plot_src=embedded.get), f"Evaluation report: {data['dataset']}")
    store.write_bytes(keys.report_html, page.encode())
    return embedded


def fitting_runs(store: TableStore, keys: DatasetKeys, info: dict[str, Any]) -> dict[str, str]:
    """`{scorer: MLflow run id}` of the runs that fitted each scorer: the denoiser's training run and
    the baselines' runs (recorded in the baseline table's metadata)."""
    runs = {"diffusion": info["mlflow_run_id"]} if info.get("mlflow_run_id") else {}
    if store.exists(keys.baseline_scores):
        raw = store.read_metadata(keys.baseline_scores).get("mlflow_run_ids")
        runs.update(json.loads(raw) if raw else {})
    return runs


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
    tags = run_tags(context, spec)
    with tracker.start_run(run_name=f"{spec.name}/evaluation", tags=tags) as run:
        report, written, embedded = _write_report(store, keys, spec, config.to_core())
        data, info = report.data, report.data["denoiser"]
        metrics = report.scorer_metrics()
        denoiser_info = store.read_json(keys.denoiser_info) or {}
        fitted = fitting_runs(store, keys, denoiser_info)
        run.set_tags({"denoiser_run_id": info.get("mlflow_run_id")})
        run.log_params(
            {
                "dataset": spec.name,
                "report": config.model_dump(),
                "scoring": data["scoring"],
                "denoiser_run_id": info.get("mlflow_run_id") or "",
                "scorers": list(metrics),
            }
        )
        run.log_metrics({"labelled_frames": data["n_labelled_frames"], "anomalous_frames": data["n_anomalous_frames"]})
        loc = data.get("localization") or {}
        run.log_metrics({f"{k}.diffusion": loc[k] for k in ("pixel_auc", "hit_rate") if loc.get(k) is not None})
        run.log_artifact(store.read_bytes(keys.report_json), "report.json", "report")
        run.log_artifact(report.markdown.encode(), "report.md", "report")
        run.log_artifact(store.read_bytes(keys.report_html), "report.html", "report")  # MLflow draws its plots
        for key in (k for name, k in written.items() if name.startswith("plot_")):
            run.log_artifact(store.read_bytes(key), PurePosixPath(key).name, "report/plots")
        scorer_urls: dict[str, str | None] = {}
        for name, figures in metrics.items():
            with tracker.start_run(
                run_name=f"{spec.name}/evaluation/{name}",
                tags={**tags, "scorer": name, "fit_run_id": fitted.get(name)},
                parent_run_id=run.run_id,
            ) as child:
                child.log_params({"scorer": name, "dataset": spec.name, "fit_run_id": fitted.get(name, "")})
                child.log_metrics({**figures, "flagged_clip_share": data["scorers"][name]["anomalous_clip_share"]})
                if name == "diffusion":  # the anomaly maps are the diffusion model's: beside its frame figures
                    child.log_metrics({k: loc.get(k) for k in ("pixel_auc", "hit_rate")})
            scorer_urls[name] = child.url
        assert run.run_id is not None  # a started run always has its id
        comparison = tracker.save_comparison(
            f"{spec.name}-scorers",
            f"{spec.name}: scorers side by side (latest evaluation)",
            run.run_id,
            list(FIGURE_COLUMNS),
            ["scorer"],
        )
        dagster_run = (context.run.run_id, dagster_run_url(context.run.run_id))
        run.set_description(evaluation_description(data, metrics, scorer_urls, dagster_run, comparison))
    for name, run_id in fitted.items():  # each fitting run carries its own scorer's figures
        tracker.log_metrics_to(run_id, metrics.get(name, {}))
    version_meta = _update_model_version(tracker, denoiser_info, data, metrics.get("diffusion", {}), run)
    meta = _metadata(store, keys, report, embedded, metrics, scorer_urls, run, comparison)
    return MaterializeResult(metadata={**meta, **version_meta})


def _update_model_version(
    tracker: ExperimentTracker,
    info: dict[str, Any],
    data: dict[str, Any],
    figures: dict[str, float | None],
    run: Any,
) -> dict[str, Any]:
    """Tag and describe the registered denoiser version (`info`: denoiser.json) with its figures;
    returns its link and its aliases for Dagster."""
    if not info.get("model_version"):
        return {}
    name, version = info["model_name"], str(info["model_version"])
    tracker.tag_model_version(
        name,
        version,
        {
            "frame_auc": rounded(figures.get("frame_auc")),
            "frame_ap": rounded(figures.get("frame_ap")),
        },
    )
    evaluation = {"labelled_frames": data["n_labelled_frames"], "figures": figures, "run_url": run.url}
    tracker.describe_model_version(name, version, version_description(info, evaluation))
    return model_links(tracker, name, version)


def _metadata(
    store: TableStore,
    keys: DatasetKeys,
    report: EvaluationReport,
    embedded: dict[str, str | None],
    metrics: dict[str, dict[str, float | None]],
    scorer_urls: dict[str, str | None],
    run: Any,
    comparison: str | None,
) -> dict[str, Any]:
    """Dagster's view, in reading order: the ROC curve and the report with their plots embedded,
    rounded figures, links to MLflow, where the files are."""
    data = report.data
    meta: dict[str, Any] = {}
    if embedded.get("roc.png"):
        meta["roc_curve"] = MetadataValue.md(
            f"## Frame-level ROC: {data['dataset']}\n\n{figures_table(metrics, scorer_urls)}\n\n"
            f"![roc]({embedded['roc.png']})"
        )
    meta["report"] = MetadataValue.md(report_markdown(data, plot_src=embedded.get))
    for name, figures in metrics.items():
        for metric in ("frame_auc", "frame_ap"):
            value = rounded(figures.get(metric))
            if value is not None:
                meta[f"{metric}_{name}"] = value
    meta["labelled_frames"] = data["n_labelled_frames"]
    if run.url:
        meta["mlflow_run"] = MetadataValue.url(run.url)
    if comparison:
        meta["mlflow_scorers"] = MetadataValue.url(comparison)
    meta["report_html"] = MetadataValue.path(store.location(keys.report_html))
    meta["report_json"] = MetadataValue.path(store.location(keys.report_json))
    meta["report_md"] = MetadataValue.path(store.location(keys.report_md))
    return meta


__all__ = [
    "EMBED_BUDGET_BYTES",
    "ReportConfig",
    "add_promotion",
    "evaluation_report",
    "fitting_runs",
    "report_markdown",
    "report_tables",
    "write_report",
]
