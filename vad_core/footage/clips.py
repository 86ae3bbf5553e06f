"""Clips and tiles: cut a decoded video into 16-frame clips and each clip into 224x224 tiles.

Clip rule (`clip_starts`): clips start every `stride` frames from frame 0 while a whole clip
fits; if frames remain after the last such clip, one more clip ends exactly at the last frame
(it starts at `n_frames - clip_len` and overlaps its predecessor), so every frame is covered by
at least one clip. A video shorter than `clip_len` gives one clip, padded by repeating its last
frame; its `end_frame` stays `n_frames` (the interval covers real frames only).

Tile rule (`tile_layout`, method.md "Features"): scale the frame so its short side is
`short_side` (down only; a frame whose short side would be under `tile_size` is scaled up to
`tile_size`, the one case of upscaling). Along each axis of the scaled frame, a length that
exceeds the tile by at most `max_crop` pixels gets one centred tile (the margins are dropped);
a longer axis gets the fewest tiles whose neighbours overlap by at least `min_overlap` of a
tile, spread evenly from edge to edge. Ped2's 360x240: scale 1, three tiles at x = 0, 68, 136,
y = 8 (rows 8-231), the layout measured in method.md. `min_overlap=0` gives the plain fewest
covering tiles (two for Ped2). `tiling="resize"` squeezes the whole frame to one tile.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple, TypeVar

import numpy as np

from vad_core.errors import VADInputError
from vad_core.footage.decode import frame_size, iter_frames
from vad_core.footage.discover import Kind

Box = tuple[int, int, int, int]
T = TypeVar("T")


@dataclass(frozen=True)
class ClipConfig:
    """How a video is cut: clip length/stride in frames, and the tiling of each frame."""

    clip_len: int = 16
    stride: int = 16
    tiling: Literal["tiles", "resize"] = "tiles"
    short_side: int = 240
    tile_size: int = 224
    min_overlap: float = 0.5
    max_crop: int = 16

    def __post_init__(self) -> None:
        if self.clip_len < 1:
            raise VADInputError(f"ClipConfig.clip_len must be >= 1, got {self.clip_len}")
        if not 1 <= self.stride <= self.clip_len:
            raise VADInputError(
                f"ClipConfig.stride must be in [1, clip_len={self.clip_len}] so every frame is "
                f"covered, got {self.stride}"
            )
        if self.tiling not in ("tiles", "resize"):
            raise VADInputError(f"ClipConfig.tiling must be 'tiles' or 'resize', got {self.tiling!r}")
        if self.tile_size < 1 or self.short_side < 1:
            raise VADInputError(
                f"ClipConfig: tile_size and short_side must be positive (got {self.tile_size}, {self.short_side})"
            )
        if not 0.0 <= self.min_overlap < 1.0:
            raise VADInputError(f"ClipConfig.min_overlap must be in [0, 1), got {self.min_overlap}")
        if self.max_crop < 0:
            raise VADInputError(f"ClipConfig.max_crop must be >= 0, got {self.max_crop}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class TileLayout(NamedTuple):
    """Where the tiles of one frame size lie.

    `scaled_size` is `(width, height)` of the frame after scaling; `boxes_scaled` are the tiles
    `(x, y, w, h)` in that frame (each `w = h = tile_size`); `boxes` the same tiles in original
    frame pixels (rounded); `scale_x`, `scale_y` = scaled / original (equal unless "resize").
    """

    width: int
    height: int
    scaled_size: tuple[int, int]
    scale_x: float
    scale_y: float
    boxes_scaled: list[Box]
    boxes: list[Box]


class ClipBatch(NamedTuple):
    """One tile (or region) of one clip: frames `[start_frame, end_frame)`, pixels `(T, h, w, 3)` uint8."""

    clip: int
    start_frame: int
    end_frame: int
    tile: int
    box: Box
    frames: np.ndarray


def clip_starts(n_frames: int, clip_len: int = 16, stride: int = 16) -> list[int]:
    """First frame of every clip (see the module docstring for the rule)."""
    if n_frames < 1:
        raise VADInputError(f"n_frames must be >= 1, got {n_frames}")
    if clip_len < 1 or not 1 <= stride <= clip_len:
        raise VADInputError(f"need clip_len >= 1 and 1 <= stride <= clip_len, got {clip_len}, {stride}")
    if n_frames <= clip_len:
        return [0]
    starts = list(range(0, n_frames - clip_len + 1, stride))
    if starts[-1] + clip_len < n_frames:
        starts.append(n_frames - clip_len)
    return starts


def clip_intervals(n_frames: int, clip_len: int = 16, stride: int = 16) -> list[tuple[int, int]]:
    """`[start, end)` of every clip, `end` capped at `n_frames` for a padded short video."""
    return [(s, min(s + clip_len, n_frames)) for s in clip_starts(n_frames, clip_len, stride)]


def _axis_positions(length: int, tile: int, min_overlap: float, max_crop: int) -> list[int]:
    excess = length - tile
    if excess <= max_crop:
        return [excess // 2]
    step = tile * (1.0 - min_overlap)  # the largest allowed distance between neighbours
    n = 1 + math.ceil(excess / step - 1e-9)
    return [round(i * excess / (n - 1)) for i in range(n)]


def tile_layout(width: int, height: int, config: ClipConfig = ClipConfig()) -> TileLayout:
    """Scaled frame size and tile boxes for a `width` x `height` video."""
    if width < 1 or height < 1:
        raise VADInputError(f"frame size must be positive, got {width}x{height}")
    s = config.tile_size
    if config.tiling == "resize":
        return TileLayout(width, height, (s, s), s / width, s / height, [(0, 0, s, s)], [(0, 0, width, height)])
    short = min(width, height)
    scale = min(1.0, config.short_side / short)
    if short * scale < s:
        scale = s / short
    sw = max(s, round(width * scale))
    sh = max(s, round(height * scale))
    xs = _axis_positions(sw, s, config.min_overlap, config.max_crop)
    ys = _axis_positions(sh, s, config.min_overlap, config.max_crop)
    boxes_scaled = [(x, y, s, s) for y in ys for x in xs]
    fx, fy = width / sw, height / sh
    boxes = [(round(x * fx), round(y * fy), round(s * fx), round(s * fy)) for x, y, _, _ in boxes_scaled]
    return TileLayout(width, height, (sw, sh), sw / width, sh / height, boxes_scaled, boxes)


def tile_boxes(width: int, height: int, config: ClipConfig = ClipConfig()) -> list[Box]:
    """Tile boxes `(x, y, w, h)` in original frame pixels, row-major (tile index order)."""
    return tile_layout(width, height, config).boxes


def iter_clips(
    path: str | os.PathLike,
    kind: Kind,
    n_frames: int,
    config: ClipConfig = ClipConfig(),
    size: tuple[int, int] | None = None,
    boxes: Sequence[tuple[Box, Box]] | None = None,
) -> Iterator[ClipBatch]:
    """Every (clip, tile) of a video, clip-major then tile order.

    Frames are decoded once, scaled while decoding, and held in a ring of `clip_len` frames,
    so memory stays `clip_len` scaled frames whatever the video's length. `size` is the
    original `(width, height)` (read from the header when omitted). `boxes` cuts other
    regions than the tiles: `(box in the scaled frame, box in original pixels)` pairs, each
    item's `tile` being the pair's index (`vad_core.features.regions`). Raises `VADInputError`
    when the video does not decode to exactly `n_frames` frames.
    """
    width, height = size if size is not None else frame_size(path, kind)
    layout = tile_layout(width, height, config)
    regions = list(boxes) if boxes is not None else list(zip(layout.boxes_scaled, layout.boxes, strict=True))
    starts = clip_starts(n_frames, config.clip_len, config.stride)
    L = config.clip_len
    sw, sh = layout.scaled_size
    for (x, y, w, h), _ in regions:
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > sw or y + h > sh:
            raise VADInputError(f"iter_clips: box {(x, y, w, h)} does not lie in the {sw}x{sh} scaled frame")
    ring = np.empty((L, sh, sw, 3), dtype=np.uint8)

    def emit(clip: int, start: int) -> Iterator[ClipBatch]:
        # Frame start + t sits in slot (start + t) % L; padding repeats the last real frame.
        order = [min(start + t, n_frames - 1) % L for t in range(L)]
        end = min(start + L, n_frames)
        for tile, ((x, y, w, h), box) in enumerate(regions):
            yield ClipBatch(clip, start, end, tile, box, ring[order, y : y + h, x : x + w])

    nxt, n = 0, 0
    for frame in iter_frames(path, kind, size=(sw, sh)):
        if n >= n_frames:
            raise VADInputError(f"{path}: decodes to more than the expected {n_frames} frames (stale manifest?)")
        if frame.shape != (sh, sw, 3):
            raise VADInputError(f"{path}: frame {n} has shape {frame.shape}, expected {(sh, sw, 3)}")
        ring[n % L] = frame
        n += 1
        while nxt < len(starts) and n >= min(starts[nxt] + L, n_frames):
            yield from emit(nxt, starts[nxt])
            nxt += 1
    if n != n_frames:
        raise VADInputError(f"{path}: decoded {n} frames, expected {n_frames}")


def prefetch(iterable: Iterable[T], max_queue: int = 8) -> Iterator[T]:
    """Run `iterable` in a background thread, `max_queue` items ahead of the consumer.

    Decoding (PyAV, Pillow) and torch both release the GIL, so clips are read while the model
    computes. An exception in the producer is re-raised in the consumer; closing the consumer
    early stops the producer.
    """
    if max_queue < 1:
        raise VADInputError(f"prefetch: max_queue must be >= 1, got {max_queue}")
    q: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=max_queue)
    stop = threading.Event()
    end = object()

    def put(item: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((False, exc))

    worker = threading.Thread(target=produce, name="vad-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is end:
                return
            yield item  # type: ignore[misc]  # the queue holds T, the end sentinel and errors; both are gone here
    finally:
        stop.set()
        worker.join(timeout=30.0)


__all__ = [
    "Box",
    "ClipBatch",
    "ClipConfig",
    "TileLayout",
    "clip_intervals",
    "clip_starts",
    "iter_clips",
    "prefetch",
    "tile_boxes",
    "tile_layout",
]
