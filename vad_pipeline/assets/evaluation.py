"""The evaluation report: frame-level figures of the diffusion model and every baseline, with plots.

Writes `report.json`, `report.md` and PNGs under `<VAD_HOME>/<dataset>/report/`, logs them and
the AUCs to an MLflow run, and tags the registered denoiser version with its AUC.
"""

import datetime as dt
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.errors import VADInputError
from vad_core.footage import read_frames
from vad_core.metrics import clips_to_frames, evaluate
from vad_pipeline.assets.common import dataset_spec, finite_or_none, fmt, markdown_table, read_table, run_tags
from vad_pipeline.plots import plot_roc, plot_score_curve, plot_top_clips
from vad_pipeline.resources import DatasetResource, ExperimentTracker, VadStorage, code_version


class ReportConfig(Config):
    """`smoothing_sigma`: Gaussian smoothing of frame scores (frames), reported beside the raw figure;
    `top_clips`: how many top-scoring clips get a frame with the arg-max tile drawn;
    `max_curve_videos`: per-video score curves drawn (evaluated videos first)."""

    smoothing_sigma: Optional[float] = 8.0
    top_clips: int = 6
    max_curve_videos: int = 12


def _evaluate(frames: pd.DataFrame, sigma: float | None) -> tuple[dict[str, Any] | None, str | None]:
    """Figures on the labelled frames, or None and the reason they cannot be computed."""
    labelled = frames[frames["label"].notna()]
    if labelled.empty:
        return None, "no labelled frames (no evaluated video)"
    labelled = labelled.assign(label=labelled["label"].astype(np.int64))
    try:
        return evaluate(labelled, smoothing_sigma=sigma).to_dict(), None
    except VADInputError as exc:
        return None, str(exc)


def _scorer_frames(storage: VadStorage, dataset: str, diffusion_frames: pd.DataFrame,
                   manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Frame tables of every scorer, labels copied from the diffusion frame table."""
    out = {"diffusion": diffusion_frames}
    path = storage.baseline_scores_path(dataset)
    if not path.is_file():
        return out
    baselines = read_table(path, "baseline_scores")
    ok = manifest[manifest["status"] == "ok"]
    n_frames = {str(v): int(n) for v, n in zip(ok["video_id"], ok["n_frames"])}
    labels = diffusion_frames[["video_id", "frame", "label"]]
    for name, clips in baselines.groupby("scorer", sort=False):
        frames = clips_to_frames(clips, n_frames).merge(labels, on=["video_id", "frame"], how="left")
        out[str(name)] = frames
    return out


def _curve_plots(frames: pd.DataFrame, clips: pd.DataFrame, truth: pd.DataFrame, videos: list[str],
                 plot_dir: Path) -> list[Path]:
    paths = []
    for vid in videos:
        f = frames[frames["video_id"] == vid].sort_values("frame")
        t = truth[truth["video_id"] == vid]
        c = clips[clips["video_id"] == vid]
        safe = vid.replace("/", "__")
        paths.append(plot_score_curve(
            f["frame"].to_numpy(), f["score"].to_numpy(), f["anomalous"].to_numpy(),
            list(zip(t["start_frame"].tolist(), t["end_frame"].tolist())), c["threshold"].unique().tolist(),
            plot_dir / f"scores_{safe}.png", title=f"{vid}: diffusion score"))
    return paths


def _top_clip_plot(clips: pd.DataFrame, tiles: pd.DataFrame, manifest: pd.DataFrame, n: int,
                   path: Path) -> tuple[Path | None, list[dict[str, Any]]]:
    """The middle frame of each of the `n` top-scoring clips with its arg-max tile's box."""
    if n <= 0:
        return None, []
    top = clips.sort_values("score", ascending=False).head(n)
    boxes = tiles.drop_duplicates(["video_id", "clip", "tile"]).set_index(["video_id", "clip", "tile"])
    videos = manifest.set_index("video_id")
    items, listed = [], []
    for row in top.itertuples(index=False):
        box = boxes.loc[(row.video_id, row.clip, row.tile)]
        x, y, w, h = (int(box[c]) for c in ("x", "y", "w", "h"))
        listed.append({"video_id": row.video_id, "clip": int(row.clip), "start_frame": int(row.start_frame),
                       "end_frame": int(row.end_frame), "score": float(row.score), "tile": int(row.tile),
                       "box": [x, y, w, h]})
        if w <= 0 or h <= 0 or row.video_id not in videos.index:
            continue  # imported features carry no box (-1): nothing to draw
        middle = (int(row.start_frame) + int(row.end_frame)) // 2
        src = videos.loc[row.video_id]
        frame = read_frames(src["path"], src["kind"], middle, middle + 1)[0]
        items.append((frame, (x, y, w, h), f"{row.video_id} frames {row.start_frame}-{row.end_frame}\n"
                                             f"score {row.score:.4g}, tile {row.tile}"))
    if not items:
        return None, listed
    return plot_top_clips(items, path), listed


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: headline table, per-video AUCs, plots."""
    lines = [f"# Evaluation report: {report['dataset']}", "",
             f"{report['n_videos']} videos, {report['n_frames']} frames, "
             f"{report['n_labelled_frames']} labelled ({report['n_anomalous_frames']} anomalous). "
             f"Code {report['code_version']}, {report['created']}.", ""]
    d = report.get("denoiser") or {}
    if d:
        lines += [f"Denoiser: sigma_data {fmt(d.get('sigma_data'))}, final train loss {fmt(d.get('final_train_loss'))}, "
                  f"memorization AUC {fmt(d.get('memorization_auc'), 3)} (0.5 = none), "
                  f"MLflow model version {d.get('model_version')}.", ""]
    rows = []
    for name, r in report["scorers"].items():
        m = r.get("metrics")
        if m:
            rows.append([name, fmt(m["roc_auc"]), fmt(m["average_precision"]), fmt(m.get("smoothed_roc_auc")),
                         fmt(m["paper_protocol_auc"]), fmt(r["anomalous_clip_share"], 3)])
        else:
            rows.append([name, "n/a", "n/a", "n/a", "n/a", fmt(r["anomalous_clip_share"], 3)])
    sigma = report["config"].get("smoothing_sigma")
    lines += ["## Frame-level figures", "",
              markdown_table(["scorer", "ROC AUC", "AP", f"ROC AUC smoothed (sigma {sigma})",
                              "paper-protocol AUC (binarised decisions)", "flagged clip share"], rows), ""]
    if report.get("note"):
        lines += [f"Note: {report['note']}", ""]
    per_video = {n: (r.get("metrics") or {}).get("per_video_auc", {}) for n, r in report["scorers"].items()}
    vids = sorted({v for pv in per_video.values() for v in pv})
    if vids:
        lines += ["## Per-video ROC AUC", "",
                  markdown_table(["video"] + list(per_video), [[v] + [fmt(per_video[n].get(v)) for n in per_video]
                                                               for v in vids]), ""]
    if report.get("top_clips"):
        lines += ["## Top-scoring clips (diffusion)", "",
                  markdown_table(["video", "frames", "score", "tile", "box (x, y, w, h)"],
                                 [[c["video_id"], f"{c['start_frame']}-{c['end_frame']}", fmt(c["score"]), c["tile"],
                                   tuple(c["box"])] for c in report["top_clips"]]), ""]
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{Path(p).stem}](plots/{Path(p).name})" for p in report["plots"]] + [""]
    return "\n".join(lines)


@asset(group_name="evaluation", deps=["frame_scores", "segment_scores", "baseline_scores", "ground_truth",
                                      "video_manifest", "denoiser"],
       description="Frame-level ROC AUC / AP (raw and smoothed) and the paper-protocol AUC of the diffusion "
       "model and every baseline, per-video AUCs, score curves, ROC curves and top-clip frames.")
def evaluation_report(context: AssetExecutionContext, config: ReportConfig, storage: VadStorage,
                      dataset: DatasetResource, tracker: ExperimentTracker) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    frames = read_table(storage.frame_scores_path(spec.name), "frame_scores")
    clips = read_table(storage.segment_scores_path(spec.name), "segment_scores")
    tiles = read_table(storage.tile_scores_path(spec.name), "segment_scores (tile table)")
    manifest = read_table(storage.manifest_path(spec.name), "video_manifest")
    truth = read_table(storage.ground_truth_path(spec.name), "ground_truth")
    info = storage.read_json(storage.denoiser_info_path(spec.name)) or {}
    report_dir = storage.report_dir(spec.name)
    plot_dir = report_dir / "plots"

    scorer_frames = _scorer_frames(storage, spec.name, frames, manifest)
    baselines = read_table(storage.baseline_scores_path(spec.name), "baseline_scores") \
        if storage.baseline_scores_path(spec.name).is_file() else None
    results: dict[str, Any] = {}
    notes = set()
    for name, f in scorer_frames.items():
        metrics, why = _evaluate(f, config.smoothing_sigma)
        c = clips if name == "diffusion" else baselines[baselines["scorer"] == name]
        results[name] = {"metrics": metrics, "anomalous_clip_share": float(c["anomalous"].mean())}
        if why:
            notes.add(why)

    plots: list[Path] = []
    labelled = frames[frames["label"].notna()]
    if results["diffusion"]["metrics"] is not None:
        curves = {}
        for name, f in scorer_frames.items():
            if results[name]["metrics"] is not None:
                lf = f[f["label"].notna()]
                curves[name] = (lf["label"].astype(int).to_numpy(), lf["score"].to_numpy(),
                                results[name]["metrics"]["roc_auc"])
        plots.append(plot_roc(curves, plot_dir / "roc.png"))
    evaluated = sorted(labelled["video_id"].unique().tolist())
    others = sorted(set(frames["video_id"].unique()) - set(evaluated))
    plots += _curve_plots(frames, clips, truth, (evaluated + others)[: config.max_curve_videos], plot_dir)
    top_png, top = _top_clip_plot(clips, tiles, manifest, config.top_clips, plot_dir / "top_clips.png")
    if top_png:
        plots.append(top_png)

    report = {
        "dataset": spec.name, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(), "spec": spec.to_dict(), "config": config.model_dump(),
        "n_videos": int(frames["video_id"].nunique()), "n_frames": len(frames),
        "n_labelled_frames": len(labelled), "n_anomalous_frames": int(labelled["label"].sum()) if len(labelled) else 0,
        "evaluated_videos": evaluated,
        "denoiser": {k: info.get(k) for k in ("sigma_data", "final_train_loss", "best_val_loss", "memorization_auc",
                                              "epochs_run", "best_epoch", "data_fingerprint", "features_fingerprint",
                                              "mlflow_run_id", "model_name", "model_version")},
        "scoring": {k: v for k, v in read_table_meta(storage.segment_scores_path(spec.name)).items()},
        "scorers": results, "note": "; ".join(sorted(notes)) or None,
        "top_clips": top, "plots": [str(p) for p in plots],
    }
    markdown = render_markdown(report)
    json_path = storage.write_json(report, report_dir / "report.json")
    md_path = storage.write_text(markdown, report_dir / "report.md")

    auc_metrics = {}
    for name, r in results.items():
        m = r["metrics"] or {}
        auc_metrics.update({f"frame_auc.{name}": m.get("roc_auc"), f"frame_ap.{name}": m.get("average_precision"),
                            f"paper_protocol_auc.{name}": m.get("paper_protocol_auc"),
                            f"frame_auc_smoothed.{name}": m.get("smoothed_roc_auc")})
    with tracker.start_run(run_name=f"{spec.name}/evaluation", tags={
            **run_tags(context, spec), "denoiser_run_id": info.get("mlflow_run_id")}) as run:
        run.log_params({"dataset": spec.name, "report": config.model_dump(), "scoring": report["scoring"],
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
        "labelled_frames": len(labelled),
        "mlflow_run_id": run.run_id or "",
    }
    for name, r in results.items():
        if r["metrics"]:
            meta[f"frame_auc_{name}"] = float(r["metrics"]["roc_auc"])
            meta[f"frame_ap_{name}"] = float(r["metrics"]["average_precision"])
    for p in plots:
        meta[f"plot_{p.stem}"] = MetadataValue.path(str(p))
    return MaterializeResult(metadata=meta)


def read_table_meta(path: Path) -> dict[str, str]:
    from vad_core.io.tables import read_metadata

    return read_metadata(path) if Path(path).is_file() else {}


__all__ = ["ReportConfig", "evaluation_report", "render_markdown", "finite_or_none"]
