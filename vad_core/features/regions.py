"""Regions: where in the frame each feature row comes from, and how one feature map is pooled over them.

A feature row is one (clip, region). `RegionConfig` says which regions and how they are embedded:

- `regions="tiles"`: the clip config's tiles (`vad_core.footage.clips.tile_layout`), so the
  default feature set keeps its meaning; `regions="grid"`: windows of `grid_window` pixels
  (default: the tile size, the footprint the backbone was fed per tile) starting every
  `grid_step` pixels of the scaled frame along each axis, plus one against the far edge so the
  whole frame is covered. With `grid_step` = the map stride the windows sit on map cells.
- `backbone_pass="crop"`: cut each region out of the scaled frame and run the backbone on it
  (one pass per region, the method as published); `backbone_pass="frame"`: run the backbone once
  per clip over the regions' bounding box of the scaled frame, padded on the right and bottom to
  a multiple of its spatial stride (zeros in the network's input space: the value its own SAME
  padding uses), keep the feature map `(C, T', H', W')` and average it over each region.

Pooling a map over a region (`region_weights`): map cell `(i, j)` covers input pixels
`[s*i, s*(i+1)) x [s*j, s*(j+1))` (`s` = the stride) and enters the region's mean with the
share of its area inside the region; the weights of a region sum to 1 and time is averaged
evenly. A region aligned with the cells therefore gets exactly the mean over its own cells, as a
crop of it would over its own map; an unaligned one (Ped2's middle tile starts 68 px in) gets
the area-weighted blend of the cells it overlaps.

For Ped2's 360x240 frames the tiles cover rows 8-231 and every column: the frame pass sees that
224x360 band, padded to 224x384 (1.75x fewer pixels and 1.75x fewer I3D FLOPs than the three
224x224 crops); the grid's bounding box is the whole frame.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from vad_core.errors import VADInputError
from vad_core.footage.clips import Box, ClipConfig, tile_layout

BackbonePass = Literal["frame", "crop"]
RegionSet = Literal["tiles", "grid"]


@dataclass(frozen=True)
class RegionConfig:
    """Which regions a clip is embedded over and how (see the module docstring)."""

    backbone_pass: BackbonePass = "crop"  # "frame": one pass per clip, pooled; "crop": one pass per region
    regions: RegionSet = "tiles"  # "tiles": the clip config's tiles; "grid": sliding windows
    grid_step: int = 32  # grid: pixels of the scaled frame between window starts
    grid_window: int | None = None  # grid: window side in scaled pixels; None = the tile size

    def __post_init__(self) -> None:
        if self.backbone_pass not in ("frame", "crop"):
            raise VADInputError(f"RegionConfig.backbone_pass must be 'frame' or 'crop', got {self.backbone_pass!r}")
        if self.regions not in ("tiles", "grid"):
            raise VADInputError(f"RegionConfig.regions must be 'tiles' or 'grid', got {self.regions!r}")
        if not isinstance(self.grid_step, int) or self.grid_step < 1:
            raise VADInputError(f"RegionConfig.grid_step must be a positive int, got {self.grid_step!r}")
        if self.grid_window is not None and (not isinstance(self.grid_window, int) or self.grid_window < 1):
            raise VADInputError(f"RegionConfig.grid_window must be a positive int or None, got {self.grid_window!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """What identifies the feature set (table metadata `region_config`, compared by the
        up-to-date check): the grid's settings only count when the regions are a grid."""
        d: dict[str, Any] = {"backbone_pass": self.backbone_pass, "regions": self.regions}
        if self.regions == "grid":
            d.update(grid_step=self.grid_step, grid_window=self.grid_window)
        return json.dumps(d, sort_keys=True)


class RegionLayout(NamedTuple):
    """The regions of one frame size: `scaled_size` (w, h) of the scaled frame, `boxes_scaled`
    `(x, y, w, h)` in it, `boxes` the same in original frame pixels (rounded), and `crop` the
    regions' bounding box in scaled pixels (what the frame pass feeds the backbone)."""

    scaled_size: tuple[int, int]
    boxes_scaled: list[Box]
    boxes: list[Box]
    crop: Box


def _starts(length: int, window: int, step: int) -> list[int]:
    """Window starts along one axis: every `step` from 0, plus one flush with the far edge."""
    last = length - window
    starts = list(range(0, last + 1, step))
    if starts[-1] != last:
        starts.append(last)
    return starts


def grid_boxes(scaled_size: tuple[int, int], window: int, step: int) -> list[Box]:
    """Sliding windows `(x, y, w, h)` over a `(w, h)` frame, row-major (a window longer than an axis shrinks to it)."""
    width, height = scaled_size
    ww, wh = min(window, width), min(window, height)
    return [(x, y, ww, wh) for y in _starts(height, wh, step) for x in _starts(width, ww, step)]


def region_layout(width: int, height: int, clip_config: ClipConfig, regions: RegionConfig) -> RegionLayout:
    """The regions of a `width` x `height` video (tiles or the grid) and their bounding box."""
    tiles = tile_layout(width, height, clip_config)
    if regions.regions == "tiles":
        scaled, original = tiles.boxes_scaled, tiles.boxes
    else:
        window = regions.grid_window or clip_config.tile_size
        scaled = grid_boxes(tiles.scaled_size, window, regions.grid_step)
        fx, fy = width / tiles.scaled_size[0], height / tiles.scaled_size[1]
        original = [(round(x * fx), round(y * fy), round(w * fx), round(h * fy)) for x, y, w, h in scaled]
    x0, y0 = min(b[0] for b in scaled), min(b[1] for b in scaled)
    x1, y1 = max(b[0] + b[2] for b in scaled), max(b[1] + b[3] for b in scaled)
    return RegionLayout(tiles.scaled_size, list(scaled), list(original), (x0, y0, x1 - x0, y1 - y0))


def padded(length: int, stride: int) -> int:
    """`length` rounded up to a multiple of `stride`."""
    return -(-length // stride) * stride


def _axis_overlap(starts: np.ndarray, lengths: np.ndarray, n_cells: int, stride: int) -> np.ndarray:
    """(R, n_cells): pixels of each [start, start + length) inside each cell [s*j, s*(j+1))."""
    lo = np.arange(n_cells) * stride
    hi = lo + stride
    a, b = starts[:, None], (starts + lengths)[:, None]
    return np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0, None).astype(np.float64)


def region_weights(boxes: np.ndarray | list[Box], map_size: tuple[int, int], stride: int) -> np.ndarray:
    """Area weights `(R, H', W')` float32 of `R` boxes `(x, y, w, h)` (input pixels, relative to the
    map's origin) over a map of `map_size` = (H', W') cells of `stride` pixels; each region's sum is 1.

    Raises `VADInputError` for an empty box or one reaching outside the map.
    """
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    hp, wp = map_size
    if len(b) == 0 or (b[:, 2:] < 1).any():
        raise VADInputError(f"region_weights: need non-empty boxes, got {b.tolist()}")
    if (b[:, :2] < 0).any() or (b[:, 0] + b[:, 2] > wp * stride).any() or (b[:, 1] + b[:, 3] > hp * stride).any():
        raise VADInputError(f"region_weights: boxes {b.tolist()} reach outside the {wp * stride}x{hp * stride} map")
    wy = _axis_overlap(b[:, 1], b[:, 3], hp, stride) / b[:, 3:4]
    wx = _axis_overlap(b[:, 0], b[:, 2], wp, stride) / b[:, 2:3]
    return (wy[:, :, None] * wx[:, None, :]).astype(np.float32)


def pooling_metadata(layout: RegionLayout, regions: RegionConfig, map_stride: int | None) -> dict[str, str]:
    """Table metadata that says how the rows were pooled: `region_config` (compared by the
    up-to-date check), `pooling` (a JSON description with the frame pass's geometry)."""
    desc: dict[str, Any] = {**regions.to_dict(), "n_regions": len(layout.boxes)}
    if regions.regions == "grid":
        desc["grid_window"] = layout.boxes_scaled[0][2] if regions.grid_window is None else regions.grid_window
    if regions.backbone_pass == "frame":
        if map_stride is None:
            raise VADInputError("pooling_metadata: the frame pass needs the backbone's map stride")
        x, y, w, h = layout.crop
        desc.update(
            crop_scaled=[x, y, w, h],
            input_size=[padded(w, map_stride), padded(h, map_stride)],
            map_stride=map_stride,
            pool="area-weighted mean over feature-map cells, mean over time",
        )
    else:
        desc["pool"] = "backbone's own pooling of each region's crop"
    return {"region_config": regions.key(), "pooling": json.dumps(desc, sort_keys=True)}


def relative_boxes(layout: RegionLayout) -> np.ndarray:
    """`(R, 4)` int64 region boxes in scaled pixels relative to the crop's corner."""
    x0, y0 = layout.crop[:2]
    return np.asarray([(x - x0, y - y0, w, h) for x, y, w, h in layout.boxes_scaled], dtype=np.int64)


def map_cells(length: int, stride: int) -> int:
    """Map cells along an axis of `length` input pixels once padded to `stride`."""
    return math.ceil(length / stride)


__all__ = [
    "BackbonePass",
    "RegionConfig",
    "RegionLayout",
    "RegionSet",
    "grid_boxes",
    "map_cells",
    "padded",
    "pooling_metadata",
    "region_layout",
    "region_weights",
    "relative_boxes",
]
