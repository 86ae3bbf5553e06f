"""Asset checks: each table guarded for schema, finite values and row counts.

`features_finite_one_dim` is blocking: in a run that also trains, a failure stops the denoiser
(and everything after it) before any training starts.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from vad_core.errors import VADInputError
from vad_core.io.tables import read_parquet
from vad_pipeline.assets.common import dataset_spec
from vad_pipeline.resources import DatasetResource, VadStorage


def _read(path) -> pd.DataFrame | None:
    try:
        return read_parquet(path)[0]
    except VADInputError:
        return None


def _missing(what: str, path) -> AssetCheckResult:
    return AssetCheckResult(passed=False, description=f"{what} table {path} is missing or unreadable")


def _require(df: pd.DataFrame, columns: list[str], what: str) -> AssetCheckResult | None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        return AssetCheckResult(passed=False, description=f"{what}: missing columns {missing}")
    return None


@asset_check(asset="video_manifest", description="At least one readable video; unreadable ones listed.")
def manifest_has_videos(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    df = _read(storage.manifest_path(spec.name))
    if df is None:
        return _missing("video_manifest", storage.manifest_path(spec.name))
    ok = int((df["status"] == "ok").sum())
    bad = df.loc[df["status"] != "ok", "video_id"].astype(str).tolist()
    return AssetCheckResult(
        passed=ok > 0,
        severity=AssetCheckSeverity.ERROR if ok == 0 else AssetCheckSeverity.WARN,
        description=f"{ok} readable videos" + (f"; unreadable: {', '.join(bad[:10])}" if bad else ""),
        metadata={"videos_ok": ok, "videos_error": len(bad)},
    )


@asset_check(asset="feature_index", blocking=True,
             description="Every feature table finite, all with one dimension, and at least one train row "
             "(blocking: training does not run on bad features).")
def features_finite_one_dim(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    df = _read(storage.feature_index_path(spec.name))
    if df is None:
        return _missing("feature_index", storage.feature_index_path(spec.name))
    problems = []
    if df.empty:
        problems.append("no feature tables at all")
    bad = df[df["n_nonfinite"] > 0]
    if len(bad):
        problems.append("non-finite values in " + ", ".join(f"{v} ({n})" for v, n in zip(bad["video_id"], bad["n_nonfinite"])))
    dims = sorted(df["dim"].unique().tolist())
    if len(dims) > 1:
        problems.append(f"tables disagree on the feature dimension: {dims}")
    empty = df.loc[df["n_rows"] == 0, "video_id"].tolist()
    if empty:
        problems.append(f"empty tables: {empty}")
    if not df.empty and int(df.loc[df["train"], "n_rows"].sum()) == 0:
        problems.append("no rows in the train videos")
    return AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or f"{len(df)} tables, {int(df['n_rows'].sum())} rows, dim {dims[0]}",
        metadata={"tables": len(df), "nonfinite_values": int(df["n_nonfinite"].sum()) if len(df) else 0,
                  "dims": str(dims)},
    )


@asset_check(asset="denoiser", description="Training loss finite at every epoch and lower at the end "
             "than after the first epoch.")
def loss_finite_and_decreasing(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    info = storage.read_json(storage.denoiser_info_path(spec.name))
    if not info or not info.get("history"):
        return AssetCheckResult(passed=False, description="no training history beside the checkpoint")
    losses = [h.get("train_loss") for h in info["history"]]
    finite = all(v is not None and math.isfinite(v) for v in losses)
    decreasing = finite and (len(losses) < 2 or losses[-1] < losses[0])
    desc = (f"train loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} epochs" if finite
            else "non-finite training loss")
    return AssetCheckResult(
        passed=finite and decreasing,
        severity=AssetCheckSeverity.ERROR if not finite else AssetCheckSeverity.WARN,
        description=desc, metadata={"first_loss": losses[0] if finite else -1.0,
                                    "last_loss": losses[-1] if finite else -1.0},
    )


def _scores_check(df: pd.DataFrame | None, path, what: str, columns: list[str]) -> AssetCheckResult:
    if df is None:
        return _missing(what, path)
    if (bad := _require(df, columns, what)) is not None:
        return bad
    s = df["score"].to_numpy(np.float64)
    n_bad = int((~np.isfinite(s)).sum())
    return AssetCheckResult(passed=n_bad == 0 and len(df) > 0,
                            description=f"{len(df)} rows, {n_bad} non-finite scores",
                            metadata={"rows": len(df), "nonfinite": n_bad})


@asset_check(asset="segment_scores", description="Clip scores and thresholds finite; design.md columns.")
def segment_scores_finite(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    path = storage.segment_scores_path(spec.name)
    return _scores_check(_read(path), path, "segment_scores",
                         ["video_id", "clip", "start_frame", "end_frame", "batch", "score", "tile", "threshold", "anomalous"])


@asset_check(asset="frame_scores", description="Frame scores finite; design.md columns.")
def frame_scores_finite(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    path = storage.frame_scores_path(spec.name)
    return _scores_check(_read(path), path, "frame_scores", ["video_id", "frame", "score", "anomalous", "label"])


@asset_check(asset="baseline_scores", description="Every baseline's clip scores finite.")
def baseline_scores_finite(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    path = storage.baseline_scores_path(spec.name)
    return _scores_check(_read(path), path, "baseline_scores", ["scorer", "video_id", "clip", "score", "anomalous"])


@asset_check(asset="evaluation_report", description="report.json and report.md present; when ground "
             "truth labels frames, a finite ROC AUC for every scorer.")
def report_has_aucs(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    report_dir = storage.report_dir(spec.name)
    report = storage.read_json(report_dir / "report.json")
    if report is None or not (report_dir / "report.md").is_file():
        return AssetCheckResult(passed=False, description=f"report files missing under {report_dir}")
    if not report.get("n_labelled_frames"):
        return AssetCheckResult(passed=True, description="no labelled frames: no AUC expected")
    missing = [n for n, r in report["scorers"].items()
               if not (r.get("metrics") and r["metrics"].get("roc_auc") is not None)]
    return AssetCheckResult(passed=not missing,
                            description=f"AUC missing for {missing}" if missing else
                            f"AUCs for {len(report['scorers'])} scorers on {report['n_labelled_frames']} labelled frames")


ALL_CHECKS = [manifest_has_videos, features_finite_one_dim, loss_finite_and_decreasing, segment_scores_finite,
              frame_scores_finite, baseline_scores_finite, report_has_aucs]
