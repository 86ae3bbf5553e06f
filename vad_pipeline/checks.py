"""Asset checks: each table guarded for schema, finite values and row counts.

`features_finite_one_dim` is blocking: in a run that also trains, a failure stops the denoiser
(and everything after it) before any training starts. `feature_index_current` and
`ground_truth_fits_manifest` warn (stale tables and partitions, ignored annotation ids,
intervals past a video's end) without stopping anything; `report_matches_scores` fails when a
stored report no longer describes the stored scores. `no_alerts` warns when live scoring raised
alerts for a video: a check spec of `live_alerts` (`NO_ALERTS`, defined beside the asset in
`assets/live.py` and listed here), evaluated in the asset's step with every materialization of a
video partition, since Dagster's stand-alone checks on partitioned assets are still a preview feature.
"""

import json
import math

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from vad_core.errors import VADInputError
from vad_core.io.store import TableStore
from vad_pipeline.assets.common import dataset_spec
from vad_pipeline.assets.consistency import scores_fingerprint
from vad_pipeline.assets.live import NO_ALERTS, no_alerts_result
from vad_pipeline.automation.inventory import dataset_inventory
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage


def _read(store: TableStore, key: str) -> pd.DataFrame | None:
    try:
        return store.read_frame(key)[0]
    except VADInputError:
        return None


def _missing(what: str, store: TableStore, key: str) -> AssetCheckResult:
    return AssetCheckResult(passed=False, description=f"{what} table {store.location(key)} is missing or unreadable")


def _require(df: pd.DataFrame, columns: list[str], what: str) -> AssetCheckResult | None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        return AssetCheckResult(passed=False, description=f"{what}: missing columns {missing}")
    return None


@asset_check(asset="video_manifest", description="At least one readable video; unreadable ones listed.")
def manifest_has_videos(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    store, key = storage.store(), storage.dataset_keys(spec.name).manifest
    df = _read(store, key)
    if df is None:
        return _missing("video_manifest", store, key)
    ok = int((df["status"] == "ok").sum())
    bad = df.loc[df["status"] != "ok", "video_id"].astype(str).tolist()
    return AssetCheckResult(
        passed=ok > 0,
        severity=AssetCheckSeverity.ERROR if ok == 0 else AssetCheckSeverity.WARN,
        description=f"{ok} readable videos" + (f"; unreadable: {', '.join(bad[:10])}" if bad else ""),
        metadata={"videos_ok": ok, "videos_error": len(bad)},
    )


@asset_check(
    asset="feature_index",
    blocking=True,
    description="Every feature table finite, all with one dimension, and at least one train row "
    "(blocking: training does not run on bad features).",
)
def features_finite_one_dim(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    store, key = storage.store(), storage.dataset_keys(spec.name).feature_index
    df = _read(store, key)
    if df is None:
        return _missing("feature_index", store, key)
    problems = []
    if df.empty:
        problems.append("no feature tables at all")
    bad = df[df["n_nonfinite"] > 0]
    if len(bad):
        problems.append(
            "non-finite values in "
            + ", ".join(f"{v} ({n})" for v, n in zip(bad["video_id"], bad["n_nonfinite"], strict=True))
        )
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
        metadata={
            "tables": len(df),
            "nonfinite_values": int(df["n_nonfinite"].sum()) if len(df) else 0,
            "dims": str(dims),
        },
    )


@asset_check(
    asset="feature_index",
    description="No stale feature tables or video partitions: every one belongs to a readable video of the "
    "current manifest (a warning: stale ones are left out of training; the cleanup_stale_job deletes them).",
)
def feature_index_current(
    context: AssetCheckExecutionContext, storage: VadStorage, dataset: DatasetResource
) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    try:
        inventory = dataset_inventory(store, keys, spec, context.instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
    except VADInputError as exc:
        return AssetCheckResult(passed=False, description=str(exc).splitlines()[0])
    return AssetCheckResult(
        passed=inventory.stale_count == 0,
        severity=AssetCheckSeverity.WARN,
        description=inventory.summary(),
        metadata={
            "stale_tables": MetadataValue.json([t.to_dict() for t in inventory.features.stale]),
            "stale_partitions": MetadataValue.json(inventory.stale_partitions),
        },
    )


@asset_check(
    asset="ground_truth",
    description="Every annotated interval lies within its video, and no annotated id was ignored "
    "(a warning: unknown ids ignored by the spec's annotations.unknown_ids, intervals past a video's end).",
)
def ground_truth_fits_manifest(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    store, key = storage.store(), storage.dataset_keys(spec.name).ground_truth
    try:
        meta = store.read_metadata(key)
    except VADInputError:
        return _missing("ground_truth", store, key)
    ignored = json.loads(meta.get("ignored_ids") or "[]")
    past = json.loads(meta.get("past_end") or "[]")
    problems = []
    if ignored:
        problems.append(f"{len(ignored)} annotated ids not in the manifest were ignored: {', '.join(ignored[:10])}")
    if past:
        problems.append(
            f"{len(past)} intervals end past their video: "
            + ", ".join(f"{v} [{s}, {e}) of {n} frames" for v, s, e, n in past[:10])
        )
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(problems) or "every annotation fits the manifest",
        metadata={"ignored_ids": len(ignored), "intervals_past_end": len(past)},
    )


@asset_check(
    asset="denoiser", description="Training loss finite at every epoch and lower at the end than after the first epoch."
)
def loss_finite_and_decreasing(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    info = storage.store().read_json(storage.dataset_keys(spec.name).denoiser_info)
    if not info or not info.get("history"):
        return AssetCheckResult(passed=False, description="no training history beside the checkpoint")
    losses = [h.get("train_loss") for h in info["history"]]
    finite = all(v is not None and math.isfinite(v) for v in losses)
    decreasing = finite and (len(losses) < 2 or losses[-1] < losses[0])
    desc = (
        f"train loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} epochs"
        if finite
        else "non-finite training loss"
    )
    return AssetCheckResult(
        passed=finite and decreasing,
        severity=AssetCheckSeverity.ERROR if not finite else AssetCheckSeverity.WARN,
        description=desc,
        metadata={"first_loss": losses[0] if finite else -1.0, "last_loss": losses[-1] if finite else -1.0},
    )


def _scores_check(store: TableStore, key: str, what: str, columns: list[str]) -> AssetCheckResult:
    df = _read(store, key)
    if df is None:
        return _missing(what, store, key)
    if (bad := _require(df, columns, what)) is not None:
        return bad
    s = df["score"].to_numpy(np.float64)
    n_bad = int((~np.isfinite(s)).sum())
    return AssetCheckResult(
        passed=n_bad == 0 and len(df) > 0,
        description=f"{len(df)} rows, {n_bad} non-finite scores",
        metadata={"rows": len(df), "nonfinite": n_bad},
    )


@asset_check(asset="segment_scores", description="Clip scores and thresholds finite; design.md columns.")
def segment_scores_finite(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    return _scores_check(
        storage.store(),
        storage.dataset_keys(spec.name).segment_scores,
        "segment_scores",
        ["video_id", "clip", "start_frame", "end_frame", "batch", "score", "tile", "threshold", "anomalous"],
    )


@asset_check(asset="frame_scores", description="Frame scores finite; design.md columns.")
def frame_scores_finite(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    return _scores_check(
        storage.store(),
        storage.dataset_keys(spec.name).frame_scores,
        "frame_scores",
        ["video_id", "frame", "score", "anomalous", "label"],
    )


@asset_check(asset="baseline_scores", description="Every baseline's clip scores finite.")
def baseline_scores_finite(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    return _scores_check(
        storage.store(),
        storage.dataset_keys(spec.name).baseline_scores,
        "baseline_scores",
        ["scorer", "video_id", "clip", "score", "anomalous"],
    )


@asset_check(
    asset="evaluation_report",
    description="report.json and report.md present; when ground "
    "truth labels frames, a finite ROC AUC for every scorer.",
)
def report_has_aucs(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    report = store.read_json(keys.report_json)
    if report is None or not store.exists(keys.report_md):
        return AssetCheckResult(
            passed=False,
            description=f"report files missing: {store.location(keys.report_json)}, {store.location(keys.report_md)}",
        )
    if not report.get("n_labelled_frames"):
        return AssetCheckResult(passed=True, description="no labelled frames: no AUC expected")
    skipped = sorted(n for n, r in report["scorers"].items() if r.get("skipped"))
    missing = [
        n
        for n, r in report["scorers"].items()
        if not r.get("skipped") and not (r.get("metrics") and r["metrics"].get("roc_auc") is not None)
    ]
    return AssetCheckResult(
        passed=not missing,
        description=(
            f"AUC missing for {missing}"
            if missing
            else f"AUCs for {len(report['scorers']) - len(skipped)} scorers on {report['n_labelled_frames']} "
            "labelled frames"
        )
        + (f"; skipped (cannot run on this data): {', '.join(skipped)}" if skipped else ""),
    )


@asset_check(
    asset="evaluation_report",
    description="The stored report describes the stored scores: the score tables' fingerprint recorded in "
    "report.json equals theirs now (scoring removes the report; a mismatch means it was rewritten behind it).",
)
def report_matches_scores(storage: VadStorage, dataset: DatasetResource) -> AssetCheckResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    report = store.read_json(keys.report_json)
    if report is None:
        return AssetCheckResult(passed=False, description=f"no report at {store.location(keys.report_json)}")
    now = scores_fingerprint(store, keys)
    recorded = report.get("scores_fingerprint")
    return AssetCheckResult(
        passed=recorded == now,
        description="the report describes the stored scores"
        if recorded == now
        else f"the report was built from other scores ({str(recorded)[:12]} != {now[:12]}): rebuild it (vad report)",
        metadata={"recorded": str(recorded), "current": now},
    )


ALL_CHECKS = [
    manifest_has_videos,
    ground_truth_fits_manifest,
    features_finite_one_dim,
    feature_index_current,
    loss_finite_and_decreasing,
    segment_scores_finite,
    frame_scores_finite,
    baseline_scores_finite,
    report_has_aucs,
    report_matches_scores,
]


__all__ = [
    "ALL_CHECKS",
    "NO_ALERTS",
    "baseline_scores_finite",
    "feature_index_current",
    "features_finite_one_dim",
    "frame_scores_finite",
    "ground_truth_fits_manifest",
    "loss_finite_and_decreasing",
    "manifest_has_videos",
    "no_alerts_result",
    "report_has_aucs",
    "report_matches_scores",
    "segment_scores_finite",
]
