"""Feature assets: one clip-features table per video partition, and the index over all of them."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset

from vad_core.evaluation.formatting import markdown_table
from vad_core.features import extract_features
from vad_core.features.regions import RegionConfig
from vad_core.footage import VideoSource, discover_videos
from vad_core.footage.clips import ClipConfig
from vad_core.io.feature_tables import read_feature_matrix
from vad_core.io.store import TableStore
from vad_pipeline.assets.common import core_config, counts_metadata, dataset_spec, read_table
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.automation.fingerprints import combined_fingerprint
from vad_pipeline.automation.inventory import dataset_inventory
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME, video_partitions
from vad_pipeline.cluster.profile import gpu_step_tags
from vad_pipeline.resources.backbone import BackboneResource
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage

_CLIP = ClipConfig()
_REGIONS = RegionConfig()


class FeatureConfig(Config):
    """How videos are cut and tiled (vad_core.footage.clips.ClipConfig), which regions become
    rows and how they are embedded (vad_core.features.regions.RegionConfig: `backbone_pass`
    "frame" = one pass per clip pooled over the regions, "crop" = one pass per region; `regions`
    "tiles" or "grid"), and the embedding batch size (backbone inputs per call)."""

    clip_len: int = _CLIP.clip_len
    stride: int = _CLIP.stride
    tiling: str = _CLIP.tiling
    short_side: int = _CLIP.short_side
    tile_size: int = _CLIP.tile_size
    min_overlap: float = _CLIP.min_overlap
    max_crop: int = _CLIP.max_crop
    backbone_pass: str = _REGIONS.backbone_pass
    regions: str = _REGIONS.regions
    grid_step: int = _REGIONS.grid_step
    grid_window: int | None = _REGIONS.grid_window
    batch_size: int = 8

    def to_core(self) -> ClipConfig:
        return core_config(self, ClipConfig)

    def to_regions(self) -> RegionConfig:
        return core_config(self, RegionConfig)


def _video(store: TableStore, keys: DatasetKeys, root: Path, video_id: str) -> dict | VideoSource:
    """The video of a partition: its manifest row when the manifest lists it (no re-probe for an
    unchanged video), else the source found on disk (a video the sensor saw before the manifest)."""
    if store.exists(keys.manifest):
        manifest = read_table(store, keys.manifest, "video_manifest")
        row = manifest[manifest["video_id"] == video_id]
        if len(row):
            return {k: (None if pd.isna(v) else v) for k, v in row.iloc[0].to_dict().items()}
    for source in discover_videos(root):
        if source.video_id == video_id:
            return source
    raise Failure(
        description=f"video {video_id!r} is not under {root} any more (removed?); its partition is stale: "
        "run the cleanup_stale_job to delete it"
    )


@asset(
    partitions_def=video_partitions,
    group_name="features",
    deps=["video_manifest"],
    description="The clip-features table of one video: one row per (clip, tile), design.md schema.",
    op_tags=gpu_step_tags(),  # the cluster profile's GPU queue, when a GPU worker pool exists
)
@user_errors
def clip_features(
    context: AssetExecutionContext,
    config: FeatureConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    backbone: BackboneResource,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    video_id = context.partition_key
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    video = _video(store, keys, spec.footage_root, video_id)
    embedder = backbone.load()
    key = keys.features(video_id)

    def progress(event: dict) -> None:
        if event.get("event") in ("video_start", "video_done"):
            context.log.info(f"{video_id}: {event}")

    # The extraction's own time, measured here around the whole call (planning, decoding, embedding,
    # writing): the benchmark's "work"; vad_core's per-video seconds start after the first batch.
    started, cpu_started = time.perf_counter(), time.process_time()
    result = extract_features(
        video,
        embedder,
        config.to_core(),
        store,
        key,
        device=backbone.resolved_device(),
        batch_size=config.batch_size,
        callback=progress,
        regions=config.to_regions(),
    )
    work_seconds, work_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if not result.ok:
        raise Failure(description=f"feature extraction failed for {video_id}: {result.error}")
    return MaterializeResult(
        metadata={
            "rows": result.n_rows,
            "dagster/row_count": result.n_rows,
            "clips": result.n_clips,
            "tiles_per_clip": result.n_tiles,
            "feature_dim": result.dim,
            "skipped_up_to_date": result.skipped,
            "work_seconds": float(work_seconds),
            # CPU seconds of this process meanwhile (torch and the decoding thread): against the wall
            # seconds it shows whether the step had its cores or shared them with other processes.
            "work_cpu_seconds": float(work_cpu_seconds),
            "torch_threads": torch.get_num_threads(),
            "backbone": embedder.name,
            "weights_sha256": embedder.weights_sha256,
            "region_config": config.to_regions().key(),
            "path": MetadataValue.path(store.location(key)),
        }
    )


def index_features(
    store: TableStore,
    keys: DatasetKeys,
    video_ids: list[str],
    train: Callable[[str], bool],
    evaluate: Callable[[str], bool],
) -> pd.DataFrame:
    """One row per video that has a feature table: counts, dimension, non-finite values, sha256."""
    rows = []
    for vid in sorted(video_ids):
        key = keys.features(vid)
        if not store.exists(key):
            continue
        meta = store.read_metadata(key)
        x = read_feature_matrix(store, key)
        tiles = store.read_table(key, columns=["clip", "tile"]).to_pandas()
        rows.append(
            {
                "video_id": vid,
                "path": store.location(key),
                "n_rows": int(x.shape[0]),
                "n_clips": int(tiles["clip"].nunique()),
                "n_tiles": int(tiles["tile"].nunique()),
                "dim": int(x.shape[1]),
                "n_nonfinite": int((~np.isfinite(x)).sum()),
                "backbone": meta.get("backbone", ""),
                "table_sha256": store.sha256(key),
                "train": bool(train(vid)),
                "evaluate": bool(evaluate(vid)),
            }
        )
    columns = [
        "video_id",
        "path",
        "n_rows",
        "n_clips",
        "n_tiles",
        "dim",
        "n_nonfinite",
        "backbone",
        "table_sha256",
        "train",
        "evaluate",
    ]
    return pd.DataFrame(rows, columns=columns)


def _listing(items: dict[str, str], limit: int = 20) -> str:
    rows = [[k, v] for k, v in sorted(items.items())[:limit]]
    more = f"\n\n... and {len(items) - limit} more" if len(items) > limit else ""
    return markdown_table(["video_id", "why"], rows) + more if rows else "none"


@asset(
    group_name="features",
    deps=["clip_features", "video_manifest"],
    description="Index of the feature tables of the current manifest's readable videos: rows, dimension, "
    "non-finite count, sha256, train/evaluate flags; stale tables and partitions (deleted, unreadable or "
    "renamed videos) are reported and left out. Its fingerprint is what the retraining schedule compares.",
)
@user_errors
def feature_index(context: AssetExecutionContext, storage: VadStorage, dataset: DatasetResource) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    inventory = dataset_inventory(store, keys, spec, context.instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
    features = inventory.features
    df = index_features(store, keys, list(features.current), spec.is_train, spec.is_evaluated)
    fingerprint = combined_fingerprint(dict(zip(df["video_id"], df["table_sha256"], strict=True)))
    waiting = {**{v: "no feature table yet" for v in features.missing}, **features.outdated}
    if waiting:
        context.log.warning(
            f"{len(waiting)} readable videos have no up-to-date feature table yet: {sorted(waiting)[:10]}"
        )
    if inventory.stale_count:
        context.log.warning(inventory.summary())
    stale_tables = {t.video_id: t.reason for t in features.stale}
    store.write_table(
        keys.feature_index,
        df,
        {
            "dataset": spec.name,
            "features_fingerprint": fingerprint or "",
            "stale_tables": json.dumps([t.to_dict() for t in features.stale]),
            "stale_partitions": json.dumps(inventory.stale_partitions, sort_keys=True),
            "waiting": json.dumps(waiting, sort_keys=True),
        },
    )
    dims = sorted(df["dim"].unique().tolist())
    return MaterializeResult(
        metadata={
            **counts_metadata(df),
            "path": MetadataValue.path(store.location(keys.feature_index)),
            "videos": len(df),
            "videos_missing_features": len(waiting),
            "stale_tables": len(stale_tables),
            "stale_partitions": len(inventory.stale_partitions),
            "stale": MetadataValue.md(
                "**tables**\n\n"
                + _listing(stale_tables)
                + "\n\n**partitions**\n\n"
                + _listing(inventory.stale_partitions)
            ),
            "waiting_for_features": MetadataValue.md(_listing(waiting)),
            "feature_rows": int(df["n_rows"].sum()),
            "train_rows": int(df.loc[df["train"], "n_rows"].sum()),
            "feature_dim": int(dims[0]) if len(dims) == 1 else str(dims),
            "nonfinite_values": int(df["n_nonfinite"].sum()),
            "features_fingerprint": fingerprint or "",
        }
    )


__all__ = ["FeatureConfig", "clip_features", "feature_index", "index_features"]
