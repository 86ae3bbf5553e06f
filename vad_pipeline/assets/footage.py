"""Footage assets: the video manifest (one row per video found) and the ground truth."""

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.evaluation.formatting import markdown_table
from vad_core.footage import discover_videos, manifest_frame, probe_video
from vad_core.footage.ground_truth import GT_COLUMNS, GT_DTYPES, read_ground_truth
from vad_pipeline.assets.common import counts_metadata, dataset_spec
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.specs import ensure_footage


class ManifestConfig(Config):
    """`generate_missing`: fill an empty footage root when the spec names a generator (demo)."""

    generate_missing: bool = True


@asset(
    group_name="footage",
    description="One row per video under the dataset's footage root "
    "(design.md columns); unreadable videos are rows with status 'error'.",
)
def video_manifest(
    context: AssetExecutionContext, config: ManifestConfig, storage: VadStorage, dataset: DatasetResource
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    if config.generate_missing and ensure_footage(spec):
        context.log.info(f"generated the {spec.name!r} footage under {spec.footage_root}")
    sources = [s for s in discover_videos(spec.footage_root) if spec.keeps(s.video_id, s.kind)]
    rows = []
    for i, source in enumerate(sources, start=1):
        rows.append(probe_video(source, spec.footage_root))
        if rows[-1]["status"] != "ok":
            context.log.warning(f"{source.video_id}: {rows[-1]['error']}")
        if i % 10 == 0 or i == len(sources):
            context.log.info(f"probed {i}/{len(sources)} videos")
    df = manifest_frame(rows)
    store, key = storage.store(), storage.dataset_keys(spec.name).manifest
    store.write_table(key, df, {"dataset": spec.name, "footage_root": str(spec.footage_root)})
    ok = df[df["status"] == "ok"]
    errors = df[df["status"] != "ok"]
    preview = (
        markdown_table(["video_id", "error"], errors[["video_id", "error"]].head(20).values.tolist())
        if len(errors)
        else "every video is readable"
    )
    return MaterializeResult(
        metadata={
            **counts_metadata(df),
            "dataset": spec.name,
            "footage_root": MetadataValue.path(str(spec.footage_root)),
            "path": MetadataValue.path(store.location(key)),
            "videos_ok": len(ok),
            "videos_error": len(errors),
            "total_frames": int(ok["n_frames"].sum()) if len(ok) else 0,
            "total_bytes": int(df["size_bytes"].sum()) if len(df) else 0,
            "errors": MetadataValue.md(preview),
        }
    )


@asset(
    group_name="footage",
    description="Anomalous frame intervals [start, end) from the dataset's "
    "annotation file; empty when the dataset has none.",
)
def ground_truth(context: AssetExecutionContext, storage: VadStorage, dataset: DatasetResource) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    if spec.annotations is None:
        df = pd.DataFrame({c: pd.Series(dtype=GT_DTYPES[c]) for c in GT_COLUMNS})
        context.log.info(f"dataset {spec.name!r} has no annotations: the ground truth is empty")
    else:
        ann = spec.annotations
        ids = list(ann.video_ids) if isinstance(ann.video_ids, tuple) else ann.video_ids
        df = read_ground_truth(ann.path, format=ann.format, video_ids=ids)
    store, key = storage.store(), storage.dataset_keys(spec.name).ground_truth
    store.write_table(key, df, {"dataset": spec.name})
    return MaterializeResult(
        metadata={
            **counts_metadata(df),
            "path": MetadataValue.path(store.location(key)),
            "annotation": MetadataValue.path(str(spec.annotations.path)) if spec.annotations else "none",
            "videos_with_anomalies": int(df["video_id"].nunique()),
            "anomalous_frames": int((df["end_frame"] - df["start_frame"]).sum()) if len(df) else 0,
        }
    )


__all__ = ["ManifestConfig", "ground_truth", "video_manifest"]
