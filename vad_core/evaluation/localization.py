"""Where the score comes from, clip by clip and frame by frame, and the pixel-level check of it.

A clip's anomaly map is `anomaly_map.region_heatmap` of its regions' scores (the per-(clip,
region) companion table of the segment scores). A frame takes the map of the clip it takes its
score from: the highest-scoring clip covering it (`metrics.clips_to_frames` gives frames that
maximum). Where pixel-level ground truth exists (ShanghaiTech-style `test_pixel_mask`, read by
`vad_core.footage.ground_truth`), `localization_metrics` scores those frame maps against the
masks of every labelled frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError
from vad_core.evaluation.anomaly_map import overlay_heatmap, pixel_metrics, region_heatmap
from vad_core.evaluation.plots import top_clips_png
from vad_core.footage.decode import read_frames
from vad_core.footage.ground_truth import read_pixel_mask

__all__ = ["clip_regions", "frame_heatmaps", "frame_sources", "localization_metrics", "top_clips"]

BOX = ["x", "y", "w", "h"]


def clip_regions(tiles: pd.DataFrame, video_id: str, clip: int) -> tuple[np.ndarray, np.ndarray]:
    """`(boxes (R, 4), scores (R,))` of one clip's regions with a box (imported features have none)."""
    rows = tiles[(tiles["video_id"] == video_id) & (tiles["clip"] == clip)]
    rows = rows[(rows["w"] > 0) & (rows["h"] > 0)]
    return rows[BOX].to_numpy(np.int64), rows["score"].to_numpy(np.float64)


def frame_sources(clips: pd.DataFrame, n_frames: int) -> np.ndarray:
    """`(n_frames,)` int64: for each frame of one video, the clip index (the `clip` column) of the
    highest-scoring clip covering it (ties: the earlier clip), -1 where no clip does."""
    best = np.full(n_frames, -np.inf)
    source = np.full(n_frames, -1, np.int64)
    for c, s, e, score in clips[["clip", "start_frame", "end_frame", "score"]].itertuples(index=False):
        lo, hi = max(int(s), 0), min(int(e), n_frames)
        better = best[lo:hi] < float(score)
        best[lo:hi][better] = float(score)
        source[lo:hi][better] = int(c)
    return source


def frame_heatmaps(
    clips: pd.DataFrame, tiles: pd.DataFrame, video_id: str, n_frames: int, size: tuple[int, int]
) -> Iterator[tuple[int, np.ndarray]]:
    """`(frame, heat (h, w))` for every frame of one video, from the clip its score comes from
    (an all-NaN map for a frame without regions)."""
    source = frame_sources(clips[clips["video_id"] == video_id], n_frames)
    cache: dict[int, np.ndarray] = {}
    empty = np.full((size[1], size[0]), np.nan, np.float32)
    for frame, clip in enumerate(source.tolist()):
        if clip < 0:
            yield frame, empty
            continue
        if clip not in cache:
            boxes, scores = clip_regions(tiles, video_id, clip)
            cache.clear()  # clips cover consecutive frames: one map alive at a time
            cache[clip] = region_heatmap(size, boxes, scores) if len(boxes) else empty
        yield frame, cache[clip]


def localization_metrics(
    clips: pd.DataFrame,
    tiles: pd.DataFrame,
    manifest: pd.DataFrame,
    mask_files: Mapping[str, Path],
    videos: list[str],
    pixels_per_frame: int = 1024,
) -> dict[str, Any] | None:
    """Pixel-level figures of the diffusion scores' frame maps on `videos` that have a mask file:
    `anomaly_map.pixel_metrics` pooled over their frames, plus `per_video`, `videos` and the grid
    `step` (every step-th pixel of every step-th row, so that a frame gives at most about
    `pixels_per_frame` pixels: memory stays bounded on long test sets); None when no such video.
    A mask of another size or length than its video is a `VADInputError`."""
    ok = manifest[manifest["status"] == "ok"]
    geometry = {
        str(v): (int(n), (int(w), int(h)))
        for v, n, w, h in zip(ok["video_id"], ok["n_frames"], ok["width"], ok["height"], strict=True)
    }
    chosen = [v for v in videos if v in mask_files and v in geometry]
    if not chosen:
        return None
    per_video: dict[str, Any] = {}
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    step = max(math.ceil(math.sqrt(w * h / pixels_per_frame)) for _, (w, h) in (geometry[v] for v in chosen))
    for vid in chosen:
        n_frames, size = geometry[vid]
        masks = read_pixel_mask(mask_files[vid], n_frames=n_frames, size=size)
        mine = [
            (heat[::step, ::step], masks[frame, ::step, ::step])
            for frame, heat in frame_heatmaps(clips, tiles, vid, n_frames, size)
        ]
        per_video[vid] = pixel_metrics(mine, step=1)
        pairs += mine
    if not pairs:
        raise VADInputError("localization: the masked videos have no frames")
    return {**pixel_metrics(pairs, step=1), "per_video": per_video, "videos": chosen, "step": step}


def top_clips(
    clips: pd.DataFrame, tiles: pd.DataFrame, manifest: pd.DataFrame, n: int
) -> tuple[bytes | None, list[dict[str, Any]]]:
    """The `n` top-scoring clips: a figure of each one's middle frame with its anomaly map (one
    colour scale for all: the median region score of the run, dark, to the highest region score
    of these clips, bright) and its arg-max region's box, and their list for the report."""
    if n <= 0:
        return None, []
    top = clips.sort_values("score", ascending=False).head(n)
    boxes = tiles.drop_duplicates(["video_id", "clip", "tile"]).set_index(["video_id", "clip", "tile"])
    videos = manifest.set_index("video_id")
    vmin = float(tiles["score"].median()) if len(tiles) else 0.0
    listed, regions = [], []
    row: Any  # itertuples rows: one attribute per column
    for row in top.itertuples(index=False):
        box: Any = boxes.loc[(row.video_id, row.clip, row.tile)]  # type: ignore[index]  # pandas-stubs: a MultiIndex key, not (rows, columns)
        x, y, w, h = (int(box[c]) for c in BOX)
        listed.append(
            {
                "video_id": row.video_id,
                "clip": int(row.clip),
                "start_frame": int(row.start_frame),
                "end_frame": int(row.end_frame),
                "score": float(row.score),
                "tile": int(row.tile),
                "box": [x, y, w, h],
            }
        )
        regions.append((row, (x, y, w, h), *clip_regions(tiles, row.video_id, int(row.clip))))
    vmax = max((float(s.max()) for *_, s in regions if len(s)), default=vmin)
    items = []
    for row, box, region_boxes, scores in regions:
        if box[2] <= 0 or box[3] <= 0 or row.video_id not in videos.index:
            continue  # imported features carry no box (-1): nothing to draw
        middle = (int(row.start_frame) + int(row.end_frame)) // 2
        src: Any = videos.loc[row.video_id]
        frame = read_frames(src["path"], src["kind"], middle, middle + 1)[0]
        image = overlay_heatmap(frame, region_boxes, scores, vmin=vmin, vmax=max(vmax, vmin + 1e-12))
        title = f"{row.video_id} frames {row.start_frame}-{row.end_frame}\nscore {row.score:.4g}, tile {row.tile}"
        items.append((image, box, title))
    if not items:
        return None, listed
    return top_clips_png(items), listed
