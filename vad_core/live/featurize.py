"""Per-clip features of a stream: frames as they come -> each finished clip's feature rows.

    feat = ClipFeaturizer(backbone, clip_config, regions, video_id="cam7")
    reader = FrameReader(url, feat.size_for, ...)       # frames scaled to the clip config's frame
    for frame in reader:
        for clip in feat.add(frame):                    # 0 or 1 clip finished by this frame
            rows, features = feat.embed(clip)           # (R,) keys + boxes, (R, D) float32
    for clip in feat.close(): ...                       # the last clip once the stream has ended

The rows are those `vad_core.features.extract.extract_features` writes for a video of the same
frames: the same tile layout (`vad_core.footage.clips.tile_layout`) or region grid
(`vad_core.features.regions.region_layout`), the same clip rule (`clip_starts`: clips every
`stride` frames, one more ending at the last frame when frames remain, a video shorter than a
clip padded with its last frame), the same crops, and the backbone called the same way
(`embed(..., resize=False)` per region crop, or `embed_regions` for the frame pass).

A stream is not one video: wherever it is cut (frames dropped between two indices, a
reconnect: a new `Frame.segment`), the frames before and after are not one motion, so no clip
spans the cut. Each piece between cuts is clipped as a video would be, its clips numbered on
from the previous piece's; `start_frame`/`end_frame` stay stream frame indices, so an alert
names the frames that were shown. Memory: one clip of scaled frames.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from vad_core.errors import VADInputError
from vad_core.features.inputs import as_features, map_stride_for
from vad_core.features.regions import RegionConfig, RegionLayout, region_layout, relative_boxes
from vad_core.footage.clips import ClipConfig
from vad_core.live.source import Frame

__all__ = ["ROW_COLUMNS", "ClipFeaturizer", "StreamClip"]

ROW_COLUMNS = ["video_id", "clip", "start_frame", "end_frame", "tile", "x", "y", "w", "h"]


class StreamClip(NamedTuple):
    """One finished clip: frames `[start_frame, end_frame)` of the stream, `frames` `(clip_len, H, W, 3)`
    uint8 scaled (a short piece padded with its last frame), `last_arrival` of its last real frame."""

    clip: int
    start_frame: int
    end_frame: int
    frames: np.ndarray
    last_arrival: float


class ClipFeaturizer:
    """Cuts frames into clips and clips into feature rows exactly as extraction does (see the module doc).

    `backbone`: as extraction takes it (`BackboneLike`; `embed_regions` and `map_stride` for the
    frame pass). The frame size is fixed by the first frame (`size_for`); another size later is
    refused, as the model's regions would no longer be the ones it learned.
    """

    def __init__(
        self,
        backbone: Any,
        clip_config: ClipConfig = ClipConfig(),
        regions: RegionConfig = RegionConfig(),
        video_id: str = "stream",
    ) -> None:
        map_stride_for(backbone, regions)  # refuse a frame pass the backbone cannot do before any frame
        self.backbone = backbone
        self.clip_config = clip_config
        self.regions = regions
        self.video_id = str(video_id)
        self.size: tuple[int, int] | None = None  # displayed (width, height) of the stream
        self.layout: RegionLayout | None = None
        self.n_clips = 0  # clips finished so far
        self.cuts = 0  # places the stream was cut (drops, reconnects)
        self._ring: deque[Frame] = deque(maxlen=clip_config.clip_len)
        self._piece: tuple[int, int] | None = None  # (segment, first index) of the current piece
        self._next_start = 0  # where the piece's next regular clip starts
        self._last_end: int | None = None  # end_frame of the piece's last clip

    @property
    def boxes(self) -> dict[int, tuple[int, int, int, int]]:
        """Region index -> box `(x, y, w, h)` in original frame pixels (empty before the first frame)."""
        return {} if self.layout is None else {i: tuple(b) for i, b in enumerate(self.layout.boxes)}  # type: ignore[misc]

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The scaled `(w, h)` frames of a `width` x `height` stream are decoded to (`FrameReader`'s hook)."""
        if self.size is None:
            self.size = (int(width), int(height))
            self.layout = region_layout(int(width), int(height), self.clip_config, self.regions)
        elif (int(width), int(height)) != self.size:
            raise VADInputError(
                f"stream {self.video_id!r}: frame size changed from {self.size[0]}x{self.size[1]} to "
                f"{width}x{height}: its regions would not be the ones the model was fitted on"
            )
        assert self.layout is not None
        return self.layout.scaled_size

    def _emit(self, start: int, end: int) -> StreamClip:
        """The clip of real frames `[start, end)`, all in the ring, padded to `clip_len` with the last one."""
        first = self._ring[0].index
        picked = [self._ring[i - first] for i in range(start, end)]
        pad = [picked[-1]] * (self.clip_config.clip_len - len(picked))
        frames = np.stack([f.pixels for f in picked + pad])
        clip = StreamClip(self.n_clips, start, end, frames, picked[-1].arrival)
        self.n_clips += 1
        self._last_end = end
        return clip

    def _close_piece(self) -> list[StreamClip]:
        """The piece's last clip, when frames after its last regular clip remain (`clip_starts`' rule)."""
        if self._piece is None or not self._ring:
            return []
        end = self._ring[-1].index + 1
        self._piece = None
        if self._last_end is None:  # shorter than one clip: one padded clip of all its frames
            return [self._emit(self._ring[0].index, end)]
        if self._last_end < end:
            return [self._emit(end - self.clip_config.clip_len, end)]
        return []

    def add(self, frame: Frame) -> list[StreamClip]:
        """Take the next frame; the clips it finishes (the previous piece's last one when it starts a new piece)."""
        out: list[StreamClip] = []
        if self._piece is not None and (frame.segment != self._piece[0] or frame.index != self._ring[-1].index + 1):
            out += self._close_piece()
            self.cuts += 1
        if self._piece is None:
            self._piece = (frame.segment, frame.index)
            self._ring.clear()
            self._next_start, self._last_end = frame.index, None
        self._ring.append(frame)
        if frame.index + 1 == self._next_start + self.clip_config.clip_len:
            out.append(self._emit(self._next_start, frame.index + 1))
            self._next_start += self.clip_config.stride
        return out

    def close(self) -> list[StreamClip]:
        """The stream has ended: the last piece's final clip, if it has one to give."""
        return self._close_piece()

    def rows(self, clip: StreamClip) -> pd.DataFrame:
        """The clip's feature-row keys `(R,)`: ROW_COLUMNS, one row per region, boxes in original pixels."""
        assert self.layout is not None
        boxes = np.asarray(self.layout.boxes, dtype=np.int64).reshape(-1, 4)
        n = len(boxes)
        data: dict[str, Any] = {"video_id": [self.video_id] * n}
        for name, value in (("clip", clip.clip), ("start_frame", clip.start_frame), ("end_frame", clip.end_frame)):
            data[name] = np.full(n, value, dtype=np.int64)
        data["tile"] = np.arange(n, dtype=np.int64)
        for j, name in enumerate(("x", "y", "w", "h")):
            data[name] = boxes[:, j]
        return pd.DataFrame(data, columns=ROW_COLUMNS)

    def features(self, clip: StreamClip) -> np.ndarray:
        """`(R, D)` float32 features of the clip's regions, embedded as extraction embeds them."""
        if self.layout is None:
            raise VADInputError("ClipFeaturizer: no frame seen yet")
        frames = clip.frames
        if self.regions.backbone_pass == "crop":
            crops = np.stack([frames[:, y : y + h, x : x + w] for x, y, w, h in self.layout.boxes_scaled])
            out = as_features(self.backbone.embed(torch.from_numpy(crops), resize=False))
        else:
            x, y, w, h = self.layout.crop
            band = np.ascontiguousarray(frames[None, :, y : y + h, x : x + w])
            out = as_features(self.backbone.embed_regions(torch.from_numpy(band), relative_boxes(self.layout)))
            out = out.reshape(-1, out.shape[-1])
        n = len(self.layout.boxes)
        if out.shape != (n, int(self.backbone.dim)):
            raise VADInputError(
                f"backbone {self.backbone.name!r} returned shape {out.shape}, expected ({n}, {self.backbone.dim})"
            )
        if not np.isfinite(out).all():
            raise VADInputError(
                f"stream {self.video_id!r}: backbone {self.backbone.name!r} gave non-finite features "
                f"for clip {clip.clip}"
            )
        return out

    def embed(self, clip: StreamClip) -> tuple[pd.DataFrame, np.ndarray]:
        """`(rows (R,), features (R, D))` of one clip."""
        return self.rows(clip), self.features(clip)
