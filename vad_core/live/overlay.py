"""The overlay video: every frame with its clip's heat map and arg-max tile box, over the score curve so far.

    info = write_overlay(iter_frames(path, kind), "out/overlay.mp4", result.rows, result.clips,
                         threshold=live.rule.threshold, fps=10)

Each input frame becomes one output frame (H.264, yuv420p, MP4 through PyAV): the picture on top,
a panel below it. On the picture, the frame's clip (the highest-scoring clip covering it, the one
that gives the frame its score, as `clips_to_frames`) shows where its score comes from: the heat
map of its region scores (`vad_core.evaluation.anomaly_map.region_heatmap`: a pixel is the mean
score of the regions containing it, coarse with three tiles, finer with a region grid) blended in
with an opacity that grows with the heat from none at the colour scale's low end, so calm regions
stay as filmed and hot ones stand out, and the box of its arg-max tile, red when the clip is
anomalous, green when not. The panel draws the frame scores up to the current frame over the
whole video's time axis, the threshold as a dashed line, the segments above it in red, and the
current frame, score and decision as text. The heat map's colour scale is fixed for the video
(the median row score to the highest or the threshold, as the report's top-clips figure), so
colours compare across frames and the calmer half of the regions stays clear. Drawing is numpy
and Pillow; odd sizes are padded by one pixel (yuv420p).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import NamedTuple, cast

import av
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from vad_core.errors import VADInputError
from vad_core.evaluation.anomaly_map import colorize, region_heatmap
from vad_core.footage.discover import VideoSource
from vad_core.io.tables import atomic_path

__all__ = [
    "ANOMALOUS_COLOR",
    "NORMAL_COLOR",
    "OverlayInfo",
    "ScorePanel",
    "draw_picture",
    "frame_clips",
    "h264_encoder",
    "video_fps",
    "write_overlay",
]

ANOMALOUS_COLOR = (255, 0, 0)
NORMAL_COLOR = (60, 220, 60)
_CURVE = (235, 235, 235)
_THRESHOLD = (255, 190, 0)
_PANEL_BG = (24, 24, 28)
Box = tuple[int, int, int, int]


class OverlayInfo(NamedTuple):
    """What `write_overlay` wrote."""

    path: str
    n_frames: int
    width: int  # of the output video (the frame, padded to even, over the panel)
    height: int
    fps: float
    codec: str
    seconds: float


def h264_encoder() -> str:
    """The H.264 encoder of PyAV's FFmpeg: libx264 when present, else OpenH264; refuses when neither is."""
    for name in ("libx264", "libopenh264"):
        if name in av.codecs_available:
            return name
    raise VADInputError("overlay video: PyAV's FFmpeg has no H.264 encoder (libx264 or libopenh264)")


def video_fps(video: VideoSource) -> float | None:
    """The frame rate a video file declares (average rate of its first video stream); None for frame folders."""
    if video.kind != "file":
        return None
    try:
        with av.open(str(video.path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
    except (av.FFmpegError, OSError):
        return None
    return float(rate) if rate else None


def frame_clips(clips: pd.DataFrame, n_frames: int) -> np.ndarray:
    """`(n_frames,)` position in `clips` of the highest-scoring clip covering each frame (-1: none)."""
    out = np.full(n_frames, -1, np.int64)
    best = np.full(n_frames, -np.inf)
    for i, (start, end, score) in enumerate(clips[["start_frame", "end_frame", "score"]].itertuples(index=False)):
        span = slice(int(start), min(int(end), n_frames))
        better = score > best[span]
        out[span][better] = i
        best[span][better] = score
    return out


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ValueError, TypeError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _heat_layer(
    size: tuple[int, int], boxes: np.ndarray, scores: np.ndarray, vmin: float, vmax: float, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """`(opacity (h, w, 1), colour * opacity (h, w, 3))` of one clip's region heat map."""
    heat = region_heatmap(size, boxes, scores)
    rgba = colorize(heat, vmin, vmax)
    level = np.clip((np.nan_to_num(heat, nan=vmin) - vmin) / (vmax - vmin), 0.0, 1.0) if vmax > vmin else 0.5
    a = (alpha * level * rgba[..., 3])[..., None]
    return a, 255.0 * rgba[..., :3] * a


def draw_picture(
    frame: np.ndarray,
    box: Box | None,
    anomalous: bool,
    heat: tuple[np.ndarray, np.ndarray] | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """The frame `(h, w, 3)` uint8 with a heat layer (`_heat_layer`) blended in and the box's outline
    (`thickness` px inside the box, ANOMALOUS_COLOR or NORMAL_COLOR) drawn over it."""
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise VADInputError(f"overlay: frames must be (h, w, 3) uint8, got {img.shape} {img.dtype}")
    out = img.copy()
    if heat is not None:
        a, add = heat
        out = np.clip(np.rint(img * (1.0 - a) + add), 0, 255).astype(np.uint8)
    if box is not None and min(box[2], box[3]) > 0:
        h, w = img.shape[:2]
        t = thickness or max(2, round(min(h, w) / 120))
        x0, y0 = max(box[0], 0), max(box[1], 0)
        x1, y1 = min(box[0] + box[2], w), min(box[1] + box[3], h)
        if x1 > x0 and y1 > y0:
            color = np.array(ANOMALOUS_COLOR if anomalous else NORMAL_COLOR, np.uint8)
            out[y0 : min(y0 + t, y1), x0:x1] = color
            out[max(y1 - t, y0) : y1, x0:x1] = color
            out[y0:y1, x0 : min(x0 + t, x1)] = color
            out[y0:y1, max(x1 - t, x0) : x1] = color
    return out


class ScorePanel:
    """The panel under the picture: the score curve so far, drawn incrementally (each frame adds one segment)."""

    def __init__(self, width: int, height: int, n_frames: int, scores: np.ndarray, threshold: float) -> None:
        self.width, self.height, self.n_frames, self.threshold = width, height, n_frames, float(threshold)
        finite = np.asarray(scores, np.float64)
        lo, hi = min(float(finite.min()), self.threshold), max(float(finite.max()), self.threshold)
        pad = 0.08 * (hi - lo) if hi > lo else 1.0
        self.lo, self.hi = lo - pad, hi + pad
        self.font = _font(max(8, height // 6))
        self.top = max(10, height // 4) + 2  # the text line above the plot
        self.canvas = Image.new("RGB", (width, height), _PANEL_BG)
        draw = ImageDraw.Draw(self.canvas)
        y = self.y(self.threshold)
        for x in range(2, width - 2, 8):  # dashed threshold line
            draw.line([(x, y), (min(x + 4, width - 3), y)], fill=_THRESHOLD, width=1)
        self._last: tuple[float, float] | None = None
        self._prev_score = -np.inf

    def x(self, frame: int) -> float:
        return 2 + (self.width - 5) * frame / max(self.n_frames - 1, 1)

    def y(self, score: float) -> float:
        return self.height - 3 - (self.height - 3 - self.top) * (score - self.lo) / (self.hi - self.lo)

    def add(self, frame: int, score: float) -> None:
        """Extend the curve to `frame` (frames in order): red where either end is above the threshold."""
        point = (self.x(frame), self.y(score))
        last = self._last or point
        above = score > self.threshold or self._prev_score > self.threshold
        ImageDraw.Draw(self.canvas).line([last, point], fill=ANOMALOUS_COLOR if above else _CURVE, width=2)
        self._last, self._prev_score = point, score

    def render(self, frame: int, score: float, anomalous: bool) -> np.ndarray:
        """`(height, width, 3)` uint8: the curve so far, a cursor at `frame`, and the frame's text."""
        image = self.canvas.copy()
        draw = ImageDraw.Draw(image)
        x = self.x(frame)
        draw.line([(x, self.top), (x, self.height - 3)], fill=(120, 120, 140), width=1)
        color = ANOMALOUS_COLOR if anomalous else _CURVE
        flag = "ANOMALY  " if anomalous else ""
        for text in (
            f"{flag}frame {frame}  score {score:.3f}  threshold {self.threshold:.3f}",
            f"{flag}{frame}: {score:.3f} / {self.threshold:.3f}",
            f"{frame}: {score:.2f}",
        ):  # the longest that fits the panel's width
            if draw.textlength(text, font=self.font) <= self.width - 6:
                break
        draw.text((3, 1), text, fill=color, font=self.font)
        return np.asarray(image)


def _even(n: int) -> int:
    return n + n % 2


def write_overlay(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    rows: pd.DataFrame,
    clips: pd.DataFrame,
    *,
    threshold: float,
    fps: float | None = None,
    heatmap: bool = True,
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    crf: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> OverlayInfo:
    """Write the overlay MP4 of one video (see the module doc) atomically at `path`.

    `frames`: the video's RGB frames `(h, w, 3)` uint8 in order (`iter_frames`), exactly as many as
    the clips cover; `rows`: its row scores with `clip, tile, x, y, w, h, score`; `clips`:
    CLIP_COLUMNS (one video). `fps` None: 10 (Ped2's rate; frame folders carry none). `vmin`/`vmax`:
    the heat map's colour scale (default: the rows' median score, and the highest or the
    threshold); `alpha` the opacity at its top. `progress(done, total)` per frame. Raises
    `VADInputError` when the frames are fewer or more than the clips cover, or the tables are empty.
    """
    t0 = time.perf_counter()
    if len(clips) == 0 or len(rows) == 0:
        raise VADInputError("overlay: no clip scores to draw")
    if clips["video_id"].nunique() != 1:
        raise VADInputError(f"overlay: clips of one video expected, got {clips['video_id'].nunique()}")
    clips = clips.sort_values("clip", kind="stable").reset_index(drop=True)
    n_frames = int(clips["end_frame"].max())
    owner = frame_clips(clips, n_frames)
    if (owner < 0).any():
        raise VADInputError(f"overlay: frame {int(np.flatnonzero(owner < 0)[0])} is in no clip")
    frame_scores = clips["score"].to_numpy(np.float64)[owner]
    flags = clips["anomalous"].to_numpy(bool)
    regions = _clip_regions(rows, clips)
    row_scores = rows["score"].to_numpy(np.float64)
    lo = float(np.median(row_scores)) if vmin is None else float(vmin)
    hi = max(float(row_scores.max()), float(threshold)) if vmax is None else float(vmax)
    fps = float(fps or 10.0)
    codec = h264_encoder()
    heat: tuple[int, tuple[np.ndarray, np.ndarray] | None] = (-1, None)  # (clip position, layer): one clip at a time
    panel: ScorePanel | None = None
    size, n = (0, 0), 0
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = cast(av.VideoStream, container.add_stream(codec, rate=rate))
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            if n >= n_frames:
                raise VADInputError(f"overlay: the video has more frames than its {n_frames} scored ones")
            h, w = frame.shape[:2]
            if panel is None:  # the first frame fixes the size: picture padded to even, panel below
                panel = ScorePanel(_even(w), _even(max(40, round(h * 0.3))), n_frames, frame_scores, threshold)
                stream.width, stream.height = _even(w), _even(h) + panel.height
                size = (w, h)
            if (w, h) != size:
                raise VADInputError(f"overlay: frame {n} is {w}x{h}, the first was {size[0]}x{size[1]}")
            i = int(owner[n])
            boxes, scores, box = regions[i]
            if heatmap and heat[0] != i:
                heat = (i, _heat_layer(size, boxes, scores, lo, hi, alpha) if len(boxes) else None)
            picture = draw_picture(frame, box, bool(flags[i]), heat[1] if heatmap else None)
            canvas = np.zeros((stream.height, stream.width, 3), np.uint8)
            canvas[:h, :w] = picture
            if w % 2:
                canvas[:h, w] = picture[:, -1]  # repeat the edge rather than add a black line
            if h % 2:
                canvas[h, :w] = picture[-1]
            panel.add(n, float(frame_scores[n]))
            canvas[_even(h) :] = panel.render(n, float(frame_scores[n]), bool(flags[i]))
            video_frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            video_frame.pts, video_frame.time_base = n, 1 / rate
            container.mux(stream.encode(video_frame))
            n += 1
            if progress is not None:
                progress(n, n_frames)
        if n != n_frames:
            raise VADInputError(f"overlay: the video gave {n} frames, its clips cover {n_frames}")
        container.mux(stream.encode(None))
        width, height = stream.width, stream.height
    return OverlayInfo(str(path), n, width, height, fps, codec, time.perf_counter() - t0)


def _clip_regions(rows: pd.DataFrame, clips: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray, Box | None]]:
    """Per clip (in `clips` order): its regions' boxes `(R, 4)` and scores `(R,)` (known boxes only),
    and its arg-max tile's box (None when unknown)."""
    need = ["clip", "tile", "x", "y", "w", "h", "score"]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise VADInputError(f"overlay: row scores miss column(s) {missing}")
    by_clip = {int(cast(int, c)): part.sort_values("tile") for c, part in rows[need].groupby("clip", sort=False)}
    out: list[tuple[np.ndarray, np.ndarray, Box | None]] = []
    for clip, tile in clips[["clip", "tile"]].to_numpy(np.int64).tolist():
        part = by_clip.get(clip)
        if part is None:
            raise VADInputError(f"overlay: clip {clip} has no row scores")
        boxes = part[["x", "y", "w", "h"]].to_numpy(np.int64)
        known = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        at = np.flatnonzero(part["tile"].to_numpy(np.int64) == tile)
        box = tuple(int(v) for v in boxes[at[0]]) if len(at) and known[at[0]] else None
        out.append((boxes[known], part["score"].to_numpy(np.float64)[known], cast(Box | None, box)))
    return out
