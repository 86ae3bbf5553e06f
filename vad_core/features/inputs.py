"""Backbone inputs of one video for each pass, and how a batch of them becomes feature rows.

- crop pass: one input per (clip, region): the region cut from the scaled frames, `(T, h, w, 3)`
  uint8, embedded by `backbone.embed(..., resize=False)` into one row;
- frame pass: one input per clip: the regions' bounding box of the scaled frames, `(T, H, W, 3)`,
  embedded by `backbone.embed_regions(..., boxes)` into one row per region (clip-major, region
  order, as the crop pass gives them).

Keys of each row: `[clip, start_frame, end_frame, region, x, y, w, h]` (the box in original
frame pixels), what the clip-features table stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from vad_core.errors import VADInputError
from vad_core.features.engine import Job
from vad_core.features.regions import RegionConfig, RegionLayout, relative_boxes
from vad_core.footage.clips import ClipConfig, iter_clips

__all__ = ["as_features", "map_stride_for", "video_job"]


def map_stride_for(backbone: Any, regions: RegionConfig) -> int | None:
    """The backbone's map stride when the frame pass is asked for (refused when it has none)."""
    if regions.backbone_pass != "frame":
        return None
    stride = getattr(backbone, "map_stride", None)
    if stride is None or not hasattr(backbone, "embed_regions"):
        raise VADInputError(
            f"backbone {backbone.name!r} has no frame pass (its network pools internally): "
            f"use RegionConfig(backbone_pass='crop')"
        )
    return int(stride)


def as_features(out: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach().to("cpu", torch.float32).numpy()
    return np.asarray(out, dtype=np.float32)


def video_job(
    index: int,
    row: Mapping[str, Any],
    meta: Mapping[str, str],
    layout: RegionLayout,
    backbone: Any,
    config: ClipConfig,
    regions: RegionConfig,
    finish: Callable[[np.ndarray, np.ndarray], None],
) -> Job:
    """The engine's job for one video: its inputs under `regions.backbone_pass`, how a batch of
    them is embedded, and `finish(keys, features)` to store the rows."""
    n_frames, size = int(meta["n_frames"]), (int(meta["width"]), int(meta["height"]))
    boxes = np.asarray(layout.boxes, dtype=np.int64)
    n_rows = int(meta["n_clips"]) * len(boxes)

    if regions.backbone_pass == "crop":

        def crops() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            pairs = list(zip(layout.boxes_scaled, layout.boxes, strict=True))
            for item in iter_clips(str(row["path"]), row["kind"], n_frames, config, size=size, boxes=pairs):
                yield np.array([[item.clip, item.start_frame, item.end_frame, item.tile, *item.box]]), item.frames

        def embed_crops(x: np.ndarray) -> np.ndarray:
            return as_features(backbone.embed(torch.from_numpy(x), resize=False))

        w, h = layout.boxes_scaled[0][2:]
        vid, dim = str(row["video_id"]), int(backbone.dim)
        return Job(index, vid, crops, embed_crops, finish, ("crop", w, h), n_rows, dim, backbone.name)

    rel = relative_boxes(layout)
    x, y, w, h = layout.crop
    crop = [((x, y, w, h), (x, y, w, h))]
    region_ids = np.arange(len(boxes))[:, None]

    def clips() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for item in iter_clips(str(row["path"]), row["kind"], n_frames, config, size=size, boxes=crop):
            head = np.tile([[item.clip, item.start_frame, item.end_frame]], (len(boxes), 1))
            yield np.hstack([head, region_ids, boxes]).astype(np.int64), item.frames

    def embed_frames(x: np.ndarray) -> np.ndarray:
        out = as_features(backbone.embed_regions(torch.from_numpy(x), rel))
        return out.reshape(-1, out.shape[-1])

    vid, dim = str(row["video_id"]), int(backbone.dim)
    return Job(index, vid, clips, embed_frames, finish, ("frame", w, h, rel.tobytes()), n_rows, dim, backbone.name)
