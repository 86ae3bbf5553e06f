"""The evaluation report, rebuilt from the score tables alone: figures, JSON, Markdown and plots.

    report = build_report(ReportTables(frames, clips, tiles, manifest, truth, baselines), ReportSettings(), "demo")
    report.data          # what report.json holds
    report.markdown      # report.md
    report.plots         # {"roc.png": b"...", "scores_<video>.png": ..., "top_clips.png": ...}

Every scorer (the diffusion model and each baseline) gets frame-level ROC AUC / AP, raw and
temporally smoothed, and the paper-protocol AUC of its batch decisions, per video and overall,
on the labelled frames. Nothing here knows where tables live: the caller reads them and stores
the result (the pipeline through its storage interface, `vad report` the same way).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError
from vad_core.evaluation.formatting import fmt, markdown_table
from vad_core.evaluation.localization import localization_metrics, top_clips
from vad_core.evaluation.metrics import clips_to_frames, evaluate
from vad_core.evaluation.plots import roc_png, score_curve_png


@dataclass(frozen=True)
class ReportSettings:
    """`smoothing_sigma`: Gaussian smoothing of frame scores (frames), reported beside the raw figure;
    `top_clips`: how many top-scoring clips get a frame with the arg-max tile drawn;
    `max_curve_videos`: per-video score curves drawn (evaluated videos first)."""

    smoothing_sigma: float | None = 8.0
    top_clips: int = 6
    max_curve_videos: int = 12

    def __post_init__(self) -> None:
        if self.top_clips < 0 or self.max_curve_videos < 0:
            raise VADInputError(
                f"ReportSettings: top_clips and max_curve_videos must be >= 0, "
                f"got {self.top_clips}, {self.max_curve_videos}"
            )
        if self.smoothing_sigma is not None and not self.smoothing_sigma > 0:
            raise VADInputError(f"ReportSettings.smoothing_sigma must be > 0 or None, got {self.smoothing_sigma}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReportTables:
    """The tables a report is built from (the pipeline's design.md tables).

    `frames`: frame scores (video_id, frame, score, anomalous, label); `clips`: segment scores;
    `tiles`: the per-(clip, tile) companion table with the boxes; `manifest`: video manifest
    (paths to read the top clips' frames from); `ground_truth`; `baselines`: the baselines'
    clip scores in long format (`scorer` column) or None; `denoiser_info`: the JSON beside the
    checkpoint; `scoring_metadata`: the segment-score table's schema metadata; `pixel_masks`:
    pixel-level ground truth files by video id (`vad_core.footage.ground_truth.pixel_mask_files`),
    checked against the anomaly maps where present; `skipped_scorers`:
    `{baseline: reason}` for baselines that could not run on this data (listed, never scored);
    `has_annotations`: False when the dataset has no annotation file at all ("no ground truth").
    """

    frames: pd.DataFrame
    clips: pd.DataFrame
    tiles: pd.DataFrame
    manifest: pd.DataFrame
    ground_truth: pd.DataFrame
    baselines: pd.DataFrame | None = None
    denoiser_info: Mapping[str, Any] = field(default_factory=dict)
    scoring_metadata: Mapping[str, str] = field(default_factory=dict)
    pixel_masks: Mapping[str, Path] = field(default_factory=dict)
    skipped_scorers: Mapping[str, str] = field(default_factory=dict)
    has_annotations: bool = True


@dataclass
class EvaluationReport:
    """`data` (report.json), `markdown` (report.md) and `plots` (file name -> PNG bytes, in report order)."""

    data: dict[str, Any]
    markdown: str
    plots: dict[str, bytes]

    def scorer_metrics(self) -> dict[str, dict[str, float | None]]:
        """`{scorer: {metric: value}}` with the metric names of `SCORER_METRICS` (one name per figure,
        the same for every scorer, so a tracker puts scorers side by side); None where not computed."""
        out: dict[str, dict[str, float | None]] = {}
        for name, r in self.data["scorers"].items():
            m = r["metrics"] or {}
            out[name] = {metric: m.get(key) for metric, key in SCORER_METRICS.items()}
        return out


# Tracker metric name -> report.json key of a scorer's figures.
SCORER_METRICS = {
    "frame_auc": "roc_auc",
    "frame_ap": "average_precision",
    "frame_auc_smoothed": "smoothed_roc_auc",
    "paper_protocol_auc": "paper_protocol_auc",
}

DENOISER_KEYS = (
    "recipe",
    "n_models",
    "trim_share",
    "scoring_sigma",
    "sigma_data",
    "final_train_loss",
    "best_val_loss",
    "memorization_auc",
    "epochs_run",
    "best_epoch",
    "data_fingerprint",
    "features_fingerprint",
    "mlflow_run_id",
    "model_name",
    "model_version",
)


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


def scorer_frames(tables: ReportTables) -> dict[str, pd.DataFrame]:
    """Frame tables of every scorer, the baselines' labels copied from the diffusion frame table."""
    out = {"diffusion": tables.frames}
    if tables.baselines is None:
        return out
    ok = tables.manifest[tables.manifest["status"] == "ok"]
    n_frames = {str(v): int(n) for v, n in zip(ok["video_id"], ok["n_frames"], strict=True)}
    labels = tables.frames[["video_id", "frame", "label"]]
    for name, clips in tables.baselines.groupby("scorer", sort=False):
        out[str(name)] = clips_to_frames(clips, n_frames).merge(labels, on=["video_id", "frame"], how="left")
    return out


def _curve_plots(tables: ReportTables, videos: list[str]) -> dict[str, bytes]:
    plots = {}
    frames, clips, truth = tables.frames, tables.clips, tables.ground_truth
    for vid in videos:
        f = frames[frames["video_id"] == vid].sort_values("frame")
        t = truth[truth["video_id"] == vid]
        c = clips[clips["video_id"] == vid]
        safe = vid.replace("/", "__")
        plots[f"scores_{safe}.png"] = score_curve_png(
            f["frame"].to_numpy(),
            f["score"].to_numpy(),
            f["anomalous"].to_numpy(),
            list(zip(t["start_frame"].tolist(), t["end_frame"].tolist(), strict=True)),
            c["threshold"].unique().tolist(),
            title=f"{vid}: diffusion score",
        )
    return plots


def render_markdown(report: Mapping[str, Any], plot_src: Callable[[str], str | None] | None = None) -> str:
    """The report as Markdown: headline table, per-video AUCs, top clips, plots.

    `plot_src(name)` is each plot's image address: default `plots/<name>` (report.md beside its
    plots folder); a `data:` URI embeds it (`vad_core.evaluation.embed`); None lists the plot by
    the location report.json records instead of drawing it."""
    labelled = (
        f"{report['n_labelled_frames']} labelled ({report['n_anomalous_frames']} anomalous)"
        if report["n_labelled_frames"]
        else "none labelled (no ground truth)"
    )
    lines = [
        f"# Evaluation report: {report['dataset']}",
        "",
        f"{report['n_videos']} videos, {report['n_frames']} frames, {labelled}. "
        f"Code {report['code_version']}, {report['created']}.",
        "",
    ]
    d = report.get("denoiser") or {}
    if d:
        recipe = d.get("recipe") if isinstance(d.get("recipe"), dict) else {}
        if recipe:
            lines += [
                f"Detector: recipe {recipe.get('name')!r} ({d.get('n_models')} model(s); out-of-fold screen with "
                f"{recipe.get('screen_folds_used', 0)} video folds"
                + (f" in {recipe['screen_rounds']} rounds" if recipe.get("screen_rounds", 1) > 1 else "")
                + f", {fmt(d.get('trim_share'), 3)} of the fitted rows "
                f"dropped before the refit), scoring sigma {fmt(d.get('scoring_sigma'))} sigma_data (label-free)"
                + (
                    f"; network {'-'.join(str(h) for h in recipe['hidden_used'])}, chosen label-free by the screen's "
                    "median out-of-fold error."
                    if recipe.get("hidden_used")
                    else "."
                ),
                "",
            ]
        lines += [
            f"Denoiser: sigma_data {fmt(d.get('sigma_data'))}, final train loss {fmt(d.get('final_train_loss'))}, "
            f"memorization AUC {fmt(d.get('memorization_auc'), 3)} at the scoring sigma (0.5 = none), "
            f"MLflow model version {d.get('model_version')}.",
            "",
        ]
    rows = []
    for name, r in report["scorers"].items():
        m = r.get("metrics")
        if r.get("skipped"):
            rows.append([name, f"skipped: {r['skipped']}", "", "", "", ""])
        elif m:
            rows.append(
                [
                    name,
                    fmt(m["roc_auc"]),
                    fmt(m["average_precision"]),
                    fmt(m.get("smoothed_roc_auc")),
                    fmt(m["paper_protocol_auc"]),
                    fmt(r["anomalous_clip_share"], 3),
                ]
            )
        else:
            rows.append([name, "n/a", "n/a", "n/a", "n/a", fmt(r["anomalous_clip_share"], 3)])
    sigma = report["config"].get("smoothing_sigma")
    lines += [
        "## Frame-level figures",
        "",
        markdown_table(
            [
                "scorer",
                "ROC AUC",
                "AP",
                f"ROC AUC smoothed (sigma {sigma})",
                "paper-protocol AUC (binarised decisions)",
                "flagged clip share",
            ],
            rows,
        ),
        "",
    ]
    if report.get("note"):
        lines += [f"Note: {report['note']}", ""]
    per_video = {
        n: (r.get("metrics") or {}).get("per_video_auc", {})
        for n, r in report["scorers"].items()
        if not r.get("skipped")
    }
    vids = sorted({v for pv in per_video.values() for v in pv})
    if vids:
        lines += [
            "## Per-video ROC AUC",
            "",
            markdown_table(
                ["video"] + list(per_video), [[v] + [fmt(per_video[n].get(v)) for n in per_video] for v in vids]
            ),
            "",
        ]
    if report.get("top_clips"):
        lines += [
            "## Top-scoring clips (diffusion; the figure shows each clip's anomaly map)",
            "",
            markdown_table(
                ["video", "frames", "score", "tile", "box (x, y, w, h)"],
                [
                    [c["video_id"], f"{c['start_frame']}-{c['end_frame']}", fmt(c["score"]), c["tile"], tuple(c["box"])]
                    for c in report["top_clips"]
                ],
            ),
            "",
        ]
    loc = report.get("localization")
    if loc:
        lines += [
            "## Localization (diffusion anomaly maps against pixel-level ground truth)",
            "",
            f"{loc['n_frames']} frames of {len(loc['videos'])} videos with pixel masks "
            f"({loc['n_anomalous_frames']} with anomalous pixels; every {loc['step']}th pixel and row). "
            "Pixel ROC AUC over all their pixels; hit rate = share of anomalous frames whose map is hotter "
            "inside the mask than outside.",
            "",
            markdown_table(
                ["videos", "pixel ROC AUC", "hit rate"],
                [["all", fmt(loc["pixel_auc"]), fmt(loc["hit_rate"], 3)]]
                + [[v, fmt(m["pixel_auc"]), fmt(m["hit_rate"], 3)] for v, m in loc["per_video"].items()],
            ),
            "",
        ]
    if report.get("plots"):
        src = plot_src or (lambda name: f"plots/{name}")
        lines += ["## Plots", ""]
        for location in report["plots"]:
            name = PurePosixPath(str(location).replace("\\", "/")).name
            address = src(name)
            stem = PurePosixPath(name).stem
            lines += [f"![{stem}]({address})" if address else f"- {stem}: `{location}` (not embedded)", ""]
    return "\n".join(lines)


def build_report(
    tables: ReportTables,
    settings: ReportSettings,
    dataset: str,
    *,
    spec: Mapping[str, Any] | None = None,
    code_version: str = "",
    created: str | None = None,
    plot_location: Callable[[str], str] = lambda name: f"plots/{name}",
) -> EvaluationReport:
    """Figures, JSON, Markdown and plots of one dataset's scores (see the module doc).

    `spec` (the dataset spec as a dict) and `code_version` are recorded as given; `created`
    defaults to now (UTC); `plot_location(name)` is what the JSON lists for each plot (where the
    caller will store it).
    """
    frames, clips = tables.frames, tables.clips
    results: dict[str, Any] = {}
    notes = set()
    per_scorer = scorer_frames(tables)
    for name, f in per_scorer.items():
        metrics, why = _evaluate(f, settings.smoothing_sigma)
        if name == "diffusion" or tables.baselines is None:  # scorer_frames lists baselines only when there are some
            c = clips
        else:
            c = tables.baselines[tables.baselines["scorer"] == name]
        results[name] = {"metrics": metrics, "anomalous_clip_share": float(c["anomalous"].mean())}
        if why:
            notes.add(why if tables.has_annotations else "no ground truth: the dataset has no annotation file")
    for name, reason in tables.skipped_scorers.items():
        results[name] = {"metrics": None, "anomalous_clip_share": None, "skipped": reason}

    plots: dict[str, bytes] = {}
    labelled = frames[frames["label"].notna()]
    if results["diffusion"]["metrics"] is not None:
        curves = {}
        for name, f in per_scorer.items():
            if results[name]["metrics"] is not None:
                lf = f[f["label"].notna()]
                curves[name] = (
                    lf["label"].astype(int).to_numpy(),
                    lf["score"].to_numpy(),
                    results[name]["metrics"]["roc_auc"],
                )
        plots["roc.png"] = roc_png(curves)
    evaluated = sorted(labelled["video_id"].unique().tolist())
    others = sorted(set(frames["video_id"].unique()) - set(evaluated))
    plots.update(_curve_plots(tables, (evaluated + others)[: settings.max_curve_videos]))
    top_png, top = top_clips(tables.clips, tables.tiles, tables.manifest, settings.top_clips)
    if top_png:
        plots["top_clips.png"] = top_png
    localization = None
    if tables.pixel_masks:
        localization = localization_metrics(tables.clips, tables.tiles, tables.manifest, tables.pixel_masks, evaluated)

    info = tables.denoiser_info
    data = {
        "dataset": dataset,
        "created": created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version,
        "spec": dict(spec or {}),
        "config": settings.to_dict(),
        "n_videos": int(frames["video_id"].nunique()),
        "n_frames": len(frames),
        "n_labelled_frames": len(labelled),
        "n_anomalous_frames": int(labelled["label"].sum()) if len(labelled) else 0,
        "evaluated_videos": evaluated,
        "denoiser": {k: info.get(k) for k in DENOISER_KEYS},
        "scoring": dict(tables.scoring_metadata),
        "scorers": results,
        "note": "; ".join(sorted(notes)) or None,
        "top_clips": top,
        "localization": localization,
        "plots": [plot_location(name) for name in plots],
    }
    return EvaluationReport(data=data, markdown=render_markdown(data), plots=plots)


__all__ = [
    "DENOISER_KEYS",
    "SCORER_METRICS",
    "EvaluationReport",
    "ReportSettings",
    "ReportTables",
    "build_report",
    "render_markdown",
    "scorer_frames",
]
