"""Feature extraction: one video -> its clip-features table (design.md), streamed and atomic.

`extract_features` decodes the video once in a background thread (`vad_core.footage.clips.prefetch`),
cuts it into (clip, tile) inputs (`vad_core.footage.clips.iter_clips`), stacks them into batches of
`batch_size` tile-clips while the model computes the previous batch, and embeds each batch with
the backbone. Only the `(rows, D)` features are kept; pixels live in a bounded queue, so memory
does not grow with the video's length. The table is written once, atomically, at the end.

A table is up to date when its metadata carries the same video fingerprint (content hash),
backbone, weights sha256, dimension, clip config and format version; re-running is then a
no-op (`FeatureResult.skipped`). The fingerprint is recomputed from the video itself, so a
video changed behind a stale manifest row is still re-extracted (and re-probed).

Tiles are cut by the clip config at `tile_size` pixels, and the backbone sees them at that size
(`embed(..., resize=False)`): the config, not the backbone, decides the input resolution.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from vad_core.devices import resolve_device
from vad_core.errors import VADInputError
from vad_core.footage.clips import ClipBatch, ClipConfig, clip_starts, iter_clips, prefetch, tile_layout
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


def _metadata(row: Mapping[str, Any], backbone: BackboneLike, config: ClipConfig) -> dict[str, Any]:
    width, height, n_frames = int(row["width"]), int(row["height"]), int(row["n_frames"])
    layout = tile_layout(width, height, config)
    sx, sy = f"{layout.scale_x:.6g}", f"{layout.scale_y:.6g}"
    scale = sx if sx == sy else f"{sx},{sy}"
    fps = row.get("fps")
    return {
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
        "scaled_size": f"{layout.scaled_size[0]}x{layout.scaled_size[1]}",
        "tile_boxes": json.dumps(layout.boxes),
        "clip_config": json.dumps(config.to_dict(), sort_keys=True),
        "n_clips": len(clip_starts(n_frames, config.clip_len, config.stride)),
        "n_tiles": len(layout.boxes),
    }


def _batches(items: Iterator[ClipBatch], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(clip, tile) items -> (`(B, 8)` int64 [clip, start, end, tile, x, y, w, h], `(B, T, S, S, 3)` uint8)."""
    keys: list[tuple[int, ...]] = []
    frames: list[np.ndarray] = []
    for item in items:
        keys.append((item.clip, item.start_frame, item.end_frame, item.tile, *item.box))
        frames.append(item.frames)
        if len(frames) == batch_size:
            yield np.asarray(keys, np.int64), np.stack(frames)
            keys, frames = [], []
    if frames:
        yield np.asarray(keys, np.int64), np.stack(frames)


def _embed(backbone: BackboneLike, clips: np.ndarray) -> np.ndarray:
    out = backbone.embed(torch.from_numpy(clips), resize=False)
    if isinstance(out, torch.Tensor):
        out = out.detach().to("cpu", torch.float32).numpy()
    out = np.asarray(out, dtype=np.float32)
    if out.shape != (clips.shape[0], backbone.dim):
        raise VADInputError(
            f"backbone {backbone.name!r} returned shape {out.shape}, expected ({clips.shape[0]}, {backbone.dim})"
        )
    return out


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


def extract_features(
    video: Mapping | pd.Series | VideoSource | str | os.PathLike,
    backbone: BackboneLike,
    clip_config: ClipConfig,
    store: TableStore,
    key: str,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    callback: Callback | None = None,
) -> FeatureResult:
    """Store the clip-features table of one video under `key` of `store` (atomically); see the module doc.

    `video` is a manifest row (dict or Series) or a `VideoSource`/path (probed). `batch_size`
    counts tile-clips per `embed` call. `device`, when given, moves the backbone there if it
    has `to`, and otherwise must be where the backbone already is. `callback` receives dicts
    with `event` in `video_start`, `batch`, `video_done` and `video_id`, `clips_done`,
    `clips_total`, `rows_done`, `rows_total`. Raises
    `VADInputError` for a video with status `error` or one that fails to decode (nothing is
    written then).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise VADInputError(f"batch_size must be a positive int, got {batch_size!r}")
    start = time.perf_counter()
    row = video_row(video)
    _check_ok(row)
    row = _fresh_row(row)
    video_id = str(row["video_id"])
    meta = _metadata(row, backbone, clip_config)
    n_clips, n_tiles = int(meta["n_clips"]), int(meta["n_tiles"])
    base = {"video_id": video_id, "clips_total": n_clips, "rows_total": n_clips * n_tiles}

    def emit(event: str, rows_done: int, **extra: object) -> None:
        if callback is not None:
            callback({"event": event, **base, "clips_done": rows_done // n_tiles, "rows_done": rows_done, **extra})

    if is_up_to_date(store, key, {k: str(v) for k, v in meta.items()}):
        result = FeatureResult(
            video_id,
            key,
            skipped=True,
            source=str(row["path"]),
            seconds=time.perf_counter() - start,
            **table_counts(store, key),
        )
        emit("video_done", result.n_rows, skipped=True, seconds=result.seconds)
        return result
    if device is not None:
        _place(backbone, resolve_device(device))

    emit("video_start", 0)
    keys: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    done = 0
    items = iter_clips(
        str(row["path"]),
        row["kind"],
        int(meta["n_frames"]),
        clip_config,
        size=(int(meta["width"]), int(meta["height"])),
    )
    # Two batches in flight: the reader decodes and stacks batch k+1 while the model runs batch k.
    for batch_keys, clips in prefetch(_batches(items, batch_size), max_queue=2):
        out = _embed(backbone, clips)
        if not np.isfinite(out).all():  # never write a table the asset checks would reject anyway
            bad = batch_keys[~np.isfinite(out).all(axis=1)]
            raise VADInputError(
                f"video {video_id!r}: backbone {backbone.name!r} gave non-finite features "
                f"for clip {int(bad[0, 0])} tile {int(bad[0, 3])}"
            )
        feats.append(out)
        keys.append(batch_keys)
        done += len(batch_keys)
        emit("batch", done)
    k = np.concatenate(keys)
    if len(k) != n_clips * n_tiles:
        raise VADInputError(f"video {video_id!r}: produced {len(k)} rows, expected {n_clips} clips x {n_tiles} tiles")
    table = build_feature_table(video_id, k[:, 0], k[:, 1], k[:, 2], k[:, 3], k[:, 4:8], np.concatenate(feats))
    write_feature_table(table, store, key, {k_: str(v) for k_, v in meta.items()})
    seconds = time.perf_counter() - start
    emit("video_done", done, skipped=False, seconds=seconds)
    return FeatureResult(
        video_id,
        key,
        n_clips=n_clips,
        n_tiles=n_tiles,
        n_rows=done,
        dim=int(backbone.dim),
        skipped=False,
        seconds=seconds,
        source=str(row["path"]),
    )


def extract_all(
    manifest: pd.DataFrame,
    backbone: BackboneLike,
    clip_config: ClipConfig,
    store: TableStore,
    prefix: str = "",
    device: str | torch.device | None = None,
    batch_size: int = 8,
    callback: Callback | None = None,
) -> list[FeatureResult]:
    """Extract every video of a manifest to `<prefix>/<video_id>.parquet` in `store`, going on past failures.

    Returns one `FeatureResult` per manifest row, in manifest order; a video with status
    `error` or one that fails to decode gets `error` set and no table. Callback events are
    those of `extract_features` plus `videos_done` / `videos_total`.
    """
    if "video_id" not in manifest.columns:
        raise VADInputError(f"manifest has no 'video_id' column (columns: {list(manifest.columns)})")
    total = len(manifest)
    results: list[FeatureResult] = []
    for i, (_, series) in enumerate(manifest.iterrows()):
        row = series.to_dict()
        video_id = str(row["video_id"])

        def relay(event: dict, _done: int = i) -> None:
            if callback is not None:
                callback({**event, "videos_done": _done + (event["event"] == "video_done"), "videos_total": total})

        t0 = time.perf_counter()
        try:
            key = feature_key(prefix, video_id)
            results.append(extract_features(row, backbone, clip_config, store, key, device, batch_size, relay))
        except VADInputError as exc:
            results.append(
                FeatureResult(
                    video_id, None, source=str(row.get("path", "")), error=str(exc), seconds=time.perf_counter() - t0
                )
            )
            if callback is not None:
                callback(
                    {
                        "event": "video_done",
                        "video_id": video_id,
                        "error": str(exc),
                        "videos_done": i + 1,
                        "videos_total": total,
                    }
                )
    return results
