"""Feature extraction: videos -> their clip-features tables (design.md), streamed and atomic.

Each video is decoded once, in a background thread, into (clip, region) backbone inputs
(`vad_core.footage.clips.iter_clips`), which are stacked into batches across videos and
embedded while the next batch is read (`vad_core.features.engine`). Only the `(rows, D)`
features are kept; pixels live in a bounded queue, so memory does not grow with the video's
length. Each table is written once, atomically, when its video's last row is back.

`RegionConfig` (`vad_core.features.regions`) says what a row is: the tiles or a finer grid of
windows, embedded either by one backbone pass per region crop (`backbone_pass="crop"`) or by one
pass per clip over the frame whose feature map is pooled over every region
(`backbone_pass="frame"`: 1.75x less I3D work on Ped2's tiles). Table metadata records how the
rows were pooled.

A table is up to date when its metadata carries the same video fingerprint (content hash),
backbone, weights sha256, dimension, clip config, region config and format version; re-running
is then a no-op (`FeatureResult.skipped`). The fingerprint is recomputed from the video itself,
so a video changed behind a stale manifest row is still re-extracted (and re-probed).

Regions are cut by the clip config at their own size in scaled-frame pixels, and the backbone
sees them at that size (`embed(..., resize=False)`): the config, not the backbone, decides the
input resolution.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from vad_core._malloc import reuse_large_allocations
from vad_core.devices import resolve_device
from vad_core.errors import VADInputError
from vad_core.features.engine import Job, run_jobs
from vad_core.features.inputs import map_stride_for, video_job
from vad_core.features.regions import RegionConfig, RegionLayout, pooling_metadata, region_layout
from vad_core.footage.clips import ClipConfig, clip_starts, tile_layout
from vad_core.footage.discover import VideoSource
from vad_core.footage.probe import fingerprint_source, probe_video
from vad_core.io.feature_tables import (
    FeatureResult,
    build_feature_table,
    feature_key,
    is_up_to_date,
    table_counts,
    write_feature_table,
)
from vad_core.io.store import TableStore

__all__ = ["BackboneLike", "extract_all", "extract_features", "video_row"]

Callback = Callable[[dict], None]


class BackboneLike(Protocol):
    """What extraction needs of a backbone (`vad_core.features.backbones.Backbone` and the test ones)."""

    name: str
    dim: int
    weights_sha256: str

    def embed(self, clips: torch.Tensor, resize: bool = True) -> np.ndarray | torch.Tensor: ...


def video_row(video: Mapping | pd.Series | VideoSource | str | os.PathLike) -> dict[str, Any]:
    """A manifest row as a plain dict: rows and Series are taken as they are, a `VideoSource`
    or a path is probed (`vad_core.footage.probe_video`)."""
    if isinstance(video, pd.Series):
        return {str(k): v for k, v in video.to_dict().items()}
    if isinstance(video, Mapping):
        return dict(video)
    return probe_video(video)


def _check_ok(row: Mapping[str, Any]) -> None:
    missing = [k for k in ("video_id", "path", "kind", "status") if k not in row]
    if missing:
        raise VADInputError(f"video manifest row lacks {missing} (got keys {sorted(row)})")
    if row["status"] != "ok":
        raise VADInputError(
            f"video {row['video_id']!r} ({row['path']}) cannot be used: manifest status "
            f"{row['status']!r}: {row.get('error')}"
        )


def _fresh_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row, re-probed when the video's content no longer matches its fingerprint."""
    try:
        current = fingerprint_source(str(row["path"]), row["kind"])
    except (OSError, VADInputError) as exc:
        raise VADInputError(f"video {row['video_id']!r} ({row['path']}): cannot be read ({exc})") from None
    if current == row.get("fingerprint"):
        return row
    fresh = probe_video(VideoSource(str(row["video_id"]), row["path"], row["kind"]))
    _check_ok(fresh)
    return fresh


def _metadata(
    row: Mapping[str, Any], backbone: BackboneLike, config: ClipConfig, regions: RegionConfig
) -> tuple[dict[str, str], RegionLayout]:
    width, height, n_frames = int(row["width"]), int(row["height"]), int(row["n_frames"])
    tiles = tile_layout(width, height, config)
    layout = region_layout(width, height, config, regions)
    sx, sy = f"{tiles.scale_x:.6g}", f"{tiles.scale_y:.6g}"
    scale = sx if sx == sy else f"{sx},{sy}"
    fps = row.get("fps")
    meta = {
        "video_id": row["video_id"],
        "video_path": row["path"],
        "video_kind": row["kind"],
        "video_fingerprint": row["fingerprint"],
        "n_frames": n_frames,
        "width": width,
        "height": height,
        "fps": "" if fps is None or pd.isna(fps) else fps,
        "backbone": backbone.name,
        "weights_sha256": backbone.weights_sha256,
        "dim": int(backbone.dim),
        "clip_len": config.clip_len,
        "stride": config.stride,
        "tiling": config.tiling,
        "short_side": config.short_side,
        "tile_size": config.tile_size,
        "scale": scale,
        "scaled_size": f"{tiles.scaled_size[0]}x{tiles.scaled_size[1]}",
        "tile_boxes": json.dumps(layout.boxes),
        "clip_config": json.dumps(config.to_dict(), sort_keys=True),
        **pooling_metadata(layout, regions, map_stride_for(backbone, regions)),
        "n_clips": len(clip_starts(n_frames, config.clip_len, config.stride)),
        "n_tiles": len(layout.boxes),
        # Only when the video is turned, so that tables of upright videos stay up to date; a table
        # written before rotation was applied lacks the key and is re-extracted.
        **({"rotation": int(rotation)} if (rotation := row.get("rotation")) and not pd.isna(rotation) else {}),
    }
    return {k: str(v) for k, v in meta.items()}, layout


def _place(backbone: BackboneLike, device: torch.device) -> None:
    """Move the backbone to `device` when it can move; refuse when it sits elsewhere and cannot."""
    if hasattr(backbone, "to"):
        backbone.to(device)
        return
    current = getattr(backbone, "device", None)
    if current is not None and torch.device(current).type != device.type:
        raise VADInputError(
            f"backbone {backbone.name!r} is on {current}, device {device} was asked: load it there "
            f"(vad_core.features.backbones.load_backbone(name, device=...))"
        )


def _on_cpu(backbone: BackboneLike, device: str | torch.device | None) -> bool:
    """Whether the embedding runs on the CPU: the device asked for, else where the backbone sits."""
    where = device if device is not None else getattr(backbone, "device", None)
    return where is None or resolve_device(where).type == "cpu"


def _writer(
    store: TableStore, key: str, row: Mapping[str, Any], meta: Mapping[str, str]
) -> Callable[[np.ndarray, np.ndarray], None]:
    """`finish(keys (N, 8), features (N, D))`: build the video's table and store it atomically."""

    def finish(keys: np.ndarray, features: np.ndarray) -> None:
        table = build_feature_table(
            str(row["video_id"]), keys[:, 0], keys[:, 1], keys[:, 2], keys[:, 3], keys[:, 4:8], features
        )
        write_feature_table(table, store, key, meta)

    return finish


@dataclass
class _Plan:
    """One video of a run: its row, key and metadata, and either a result already (skipped) or a job."""

    row: dict[str, Any]
    key: str
    meta: dict[str, str]
    result: FeatureResult | None = None
    job: Job | None = None


def _run(
    rows: list[dict[str, Any]],
    keys: list[str | VADInputError],
    backbone: BackboneLike,
    config: ClipConfig,
    regions: RegionConfig,
    store: TableStore,
    device: str | torch.device | None,
    batch_size: int,
    callback: Callable[[int, dict], None],
) -> list[FeatureResult]:
    """Plan every video (skip the up-to-date ones), run the rest as one stream of batches."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise VADInputError(f"batch_size must be a positive int, got {batch_size!r}")
    t0 = time.perf_counter()
    plans: list[_Plan | FeatureResult] = []
    jobs: list[Job] = []
    for i, (raw, key) in enumerate(zip(rows, keys, strict=True)):
        try:
            if isinstance(key, VADInputError):
                raise key
            _check_ok(raw)
            row = _fresh_row(raw)
            meta, layout = _metadata(row, backbone, config, regions)
        except VADInputError as exc:
            vid = str(raw.get("video_id", ""))
            plans.append(FeatureResult(vid, None, source=str(raw.get("path", "")), error=str(exc)))
            callback(i, {"event": "video_done", "video_id": vid, "error": str(exc)})
            continue
        plan = _Plan(row, key, meta)
        if is_up_to_date(store, key, meta):
            plan.result = FeatureResult(
                str(row["video_id"]), key, skipped=True, source=str(row["path"]), **table_counts(store, key)
            )
        else:
            plan.job = video_job(i, row, meta, layout, backbone, config, regions, _writer(store, key, row, meta))
            jobs.append(plan.job)
        plans.append(plan)
    if jobs and device is not None:
        _place(backbone, resolve_device(device))

    started: dict[int, float] = {}
    seconds: dict[int, float] = {}

    def base(i: int, rows_done: int) -> dict[str, Any]:
        plan = plans[i]
        assert isinstance(plan, _Plan)
        n_clips, n_tiles = int(plan.meta["n_clips"]), int(plan.meta["n_tiles"])
        return {
            "video_id": str(plan.row["video_id"]),
            "clips_total": n_clips,
            "rows_total": n_clips * n_tiles,
            "clips_done": rows_done // n_tiles,
            "rows_done": rows_done,
        }

    def relay(i: int, event: str, rows_done: int, extra: dict[str, Any]) -> None:
        now = time.perf_counter()
        started.setdefault(i, now)
        if event == "video_done":
            seconds[i] = now - started[i]
            extra = {**extra, "skipped": False, "seconds": seconds[i]}
        callback(i, {"event": event, **base(i, rows_done), **extra})

    for i, planned in enumerate(plans):  # the skipped ones are done before any work starts
        if isinstance(planned, _Plan) and planned.result is not None:
            callback(i, {"event": "video_done", **base(i, planned.result.n_rows), "skipped": True, "seconds": 0.0})
    # On CPU, keep freed activations in the heap for the next batch instead of unmapping and
    # page-faulting them in again (vad_core._malloc: 1.3x on I3D); restored and trimmed on return.
    with reuse_large_allocations(bool(jobs) and _on_cpu(backbone, device)):
        outcomes = run_jobs(jobs, batch_size, relay)
    results: list[FeatureResult] = []
    for i, planned in enumerate(plans):
        if isinstance(planned, FeatureResult):
            results.append(planned)
        elif planned.result is not None:
            results.append(planned.result)
        else:
            plan = planned
            outcome = outcomes[i]
            vid, src = str(plan.row["video_id"]), str(plan.row["path"])
            if outcome.error is not None:
                results.append(FeatureResult(vid, None, source=src, error=outcome.error, seconds=seconds.get(i, 0.0)))
                continue
            n_tiles = int(plan.meta["n_tiles"])
            results.append(
                FeatureResult(
                    vid,
                    plan.key,
                    n_clips=int(plan.meta["n_clips"]),
                    n_tiles=n_tiles,
                    n_rows=outcome.n_rows,
                    dim=int(backbone.dim),
                    seconds=seconds.get(i, time.perf_counter() - t0),
                    source=src,
                )
            )
    return results


def extract_features(
    video: Mapping | pd.Series | VideoSource | str | os.PathLike,
    backbone: BackboneLike,
    clip_config: ClipConfig,
    store: TableStore,
    key: str,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    callback: Callback | None = None,
    regions: RegionConfig = RegionConfig(),
) -> FeatureResult:
    """Store the clip-features table of one video under `key` of `store` (atomically); see the module doc.

    `video` is a manifest row (dict or Series) or a `VideoSource`/path (probed). `batch_size`
    counts backbone inputs per `embed` call (region crops, or clips for the frame pass).
    `device`, when given, moves the backbone there if it has `to`, and otherwise must be where
    the backbone already is. `callback` receives dicts with `event` in `video_start`, `batch`,
    `video_done` and `video_id`, `clips_done`, `clips_total`, `rows_done`, `rows_total`.
    Raises `VADInputError` for a video with status `error`, one that fails to decode, or a
    backbone without the frame pass `regions` asks for (nothing is written then).
    """
    row = video_row(video)
    _check_ok(row)
    result = _run(
        [row], [key], backbone, clip_config, regions, store, device, batch_size, lambda _, e: callback and callback(e)
    )[0]
    if result.error is not None:
        raise VADInputError(result.error)
    return result


def extract_all(
    manifest: pd.DataFrame,
    backbone: BackboneLike,
    clip_config: ClipConfig,
    store: TableStore,
    prefix: str = "",
    device: str | torch.device | None = None,
    batch_size: int = 8,
    callback: Callback | None = None,
    regions: RegionConfig = RegionConfig(),
) -> list[FeatureResult]:
    """Extract every video of a manifest to `<prefix>/<video_id>.parquet` in `store`, going on past failures.

    The videos' inputs are batched across videos (`vad_core.features.engine`). Returns one
    `FeatureResult` per manifest row, in manifest order; a video with status `error` or one
    that fails to decode gets `error` set and no table. Callback events are those of
    `extract_features` plus `videos_done` / `videos_total`.
    """
    if "video_id" not in manifest.columns:
        raise VADInputError(f"manifest has no 'video_id' column (columns: {list(manifest.columns)})")
    rows = [{str(k): v for k, v in series.to_dict().items()} for _, series in manifest.iterrows()]
    keys: list[str | VADInputError] = []
    for row in rows:
        try:
            keys.append(feature_key(prefix, str(row["video_id"])))
        except VADInputError as exc:  # reported as that video's error
            keys.append(exc)
    total, finished = len(rows), set()

    def relay(i: int, event: dict) -> None:
        if event["event"] == "video_done":
            finished.add(i)
        if callback is not None:
            callback({**event, "videos_done": len(finished), "videos_total": total})

    return _run(rows, keys, backbone, clip_config, regions, store, device, batch_size, relay)
