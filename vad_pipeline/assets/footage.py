"""Footage assets: the video manifest (one row per video found) and the ground truth."""

import json

import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset

from vad_core.evaluation.formatting import markdown_table
from vad_core.footage import discover_videos, manifest_frame, probe_video
from vad_core.footage.ground_truth import GT_COLUMNS, GT_DTYPES, check_ground_truth, read_ground_truth
from vad_pipeline.assets.common import counts_metadata, dataset_spec, read_table
from vad_pipeline.assets.failures import user_errors
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
@user_errors
def video_manifest(
    context: AssetExecutionContext, config: ManifestConfig, storage: VadStorage, dataset: DatasetResource
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    if config.generate_missing and ensure_footage(spec):
        context.log.info(f"generated the {spec.name!r} footage under {spec.footage_root}")
    sources = discover_videos(spec.footage_root, keep=spec.keeps, keep_folder=spec.may_hold)
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
    deps=["video_manifest"],
    description="Anomalous frame intervals [start, end) from the dataset's annotation file; empty when "
    "the dataset has none. Annotated ids the manifest lacks fail it (or, with the spec's "
    "annotations.unknown_ids: ignore, are reported and left out); intervals past a video's end are reported.",
)
@user_errors
def ground_truth(context: AssetExecutionContext, storage: VadStorage, dataset: DatasetResource) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    manifest = read_table(store, keys.manifest, "video_manifest")
    ignored: tuple[str, ...] = ()
    if spec.annotations is None:
        df = pd.DataFrame({c: pd.Series(dtype=GT_DTYPES[c]) for c in GT_COLUMNS})
        context.log.info(f"dataset {spec.name!r} has no annotations: the ground truth is empty")
    else:
        ann = spec.annotations
        ids = list(ann.video_ids) if isinstance(ann.video_ids, tuple) else ann.video_ids
        df = read_ground_truth(ann.path, format=ann.format, video_ids=ids)
        unknown = check_ground_truth(df, manifest).unknown
        if unknown:
            message = f"{ann.path}: " + check_ground_truth(df, manifest).unknown_message(manifest["video_id"])
            if ann.unknown_ids != "ignore":
                raise Failure(
                    description=message + " (fix annotations.video_ids, or set annotations.unknown_ids: ignore)",
                    metadata={"unknown_ids": ", ".join(unknown), "annotation": MetadataValue.path(str(ann.path))},
                )
            context.log.warning(message + ": left out (annotations.unknown_ids: ignore)")
            ignored = unknown
            df = df[~df["video_id"].isin(set(unknown))].reset_index(drop=True)
    past_end = check_ground_truth(df, manifest).past_end
    for vid, start, end, n in past_end:
        context.log.warning(f"{vid}: annotated interval [{start}, {end}) ends past the video's {n} frames")
    store.write_table(
        keys.ground_truth,
        df,
        {
            "dataset": spec.name,
            "annotation": str(spec.annotations.path) if spec.annotations else "",
            "ignored_ids": json.dumps(list(ignored)),
            "past_end": json.dumps([list(p) for p in past_end]),
        },
    )
    return MaterializeResult(
        metadata={
            **counts_metadata(df),
            "path": MetadataValue.path(store.location(keys.ground_truth)),
            "annotation": MetadataValue.path(str(spec.annotations.path)) if spec.annotations else "none",
            "videos_with_anomalies": int(df["video_id"].nunique()),
            "anomalous_frames": int((df["end_frame"] - df["start_frame"]).sum()) if len(df) else 0,
            "ignored_unknown_ids": ", ".join(ignored) or "none",
            "intervals_past_end": len(past_end),
        }
    )


__all__ = ["ManifestConfig", "ground_truth", "video_manifest"]
