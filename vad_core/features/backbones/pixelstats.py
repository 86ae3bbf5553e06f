"""The weight-free `pixelstats` backbone: a cheap, deterministic clip embedding (tests, quick runs).

`PixelStatsBackbone` embeds a clip by its colour and motion per region: the frame is cut into
a `grid x grid` layout of regions, and for each region and RGB channel it gives the mean
intensity over the clip and the mean absolute difference between consecutive frames (both on
the [0, 1] scale), read on every `step`-th pixel of every `step`-th row (surveillance objects
span many pixels; sampling keeps the cost near the decoder's). That is `dim = 6 * grid**2`
numbers that move when the scene's appearance or motion moves, at the cost of a few array
reductions: no weights, no model, no GPU.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from vad_core.errors import VADInputError
from vad_core.features.backbones.registry import BackboneOptions


class PixelStatsBackbone:
    """Clip embedding from per-region colour means and temporal differences.

    `embed(clips (B, T, H, W, 3) uint8) -> (B, 6 * grid**2) float32`. Feature layout, per clip:
    `[means (grid, grid, 3) flattened row-major, motion (grid, grid, 3) flattened]`, where region
    `(i, j)` covers `np.array_split` part `i` of the sampled rows `range(0, H, step)` and part `j`
    of the sampled columns `range(0, W, step)`. Region pooling makes
    the output independent of resolution up to sampling, so `resize` is accepted and ignored.
    """

    def __init__(self, grid: int = 2, step: int = 4) -> None:
        if not isinstance(grid, int) or grid < 1:
            raise VADInputError(f"PixelStatsBackbone grid must be a positive int, got {grid!r}")
        if not isinstance(step, int) or step < 1:
            raise VADInputError(f"PixelStatsBackbone step must be a positive int, got {step!r}")
        self.grid, self.step = grid, step
        self.name = f"pixelstats-{grid}x{step}"
        self.dim = 6 * grid * grid
        self.device = torch.device("cpu")
        # No weights: the identity of the computation stands in for a weights hash.
        identity = f"vad_core.PixelStatsBackbone:v1:grid={grid}:step={step}"
        self.weights_sha256 = hashlib.sha256(identity.encode()).hexdigest()

    # Statistics of pixels have no receptive field: a region read from the whole clip gives exactly
    # what its crop gives, so the frame pass (`embed_regions`) is exact at any position.
    map_stride = 1

    def to(self, device: str | torch.device) -> PixelStatsBackbone:
        """Numpy-only model: stays on the CPU whatever device is asked for."""
        return self

    def embed(self, clips: np.ndarray | torch.Tensor, resize: bool = True) -> np.ndarray:
        """`(B, T, H, W, 3)` uint8 clips -> `(B, dim)` float32 features."""
        if isinstance(clips, torch.Tensor):
            clips = clips.detach().cpu().numpy()
        clips = np.asarray(clips)
        if clips.ndim != 5 or clips.shape[-1] != 3 or min(clips.shape[:4]) < 1:
            raise VADInputError(f"clips: expected a non-empty (B, T, H, W, 3) array, got shape {clips.shape}")
        if clips.dtype != np.uint8:
            raise VADInputError(f"clips: expected uint8 pixels, got {clips.dtype}")
        clips = clips[:, :, :: self.step, :: self.step]
        b, t, h, w, _ = clips.shape
        if h < self.grid or w < self.grid:
            raise VADInputError(
                f"clips: {h}x{w} sampled pixels per frame (step {self.step}) do not fill "
                f"the {self.grid}x{self.grid} grid"
            )
        rows = np.array_split(np.arange(h), self.grid)
        cols = np.array_split(np.arange(w), self.grid)
        means = np.empty((b, self.grid, self.grid, 3), np.float64)
        motion = np.zeros((b, self.grid, self.grid, 3), np.float64)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                # Work region by region in int16/float so memory stays at one region's worth.
                region = clips[:, :, r[0] : r[-1] + 1, c[0] : c[-1] + 1, :]
                means[:, i, j] = region.mean(axis=(1, 2, 3), dtype=np.float64) / 255.0
                if t > 1:
                    diff = np.abs(np.diff(region.astype(np.int16), axis=1))
                    motion[:, i, j] = diff.mean(axis=(1, 2, 3), dtype=np.float64) / 255.0
        return np.concatenate([means.reshape(b, -1), motion.reshape(b, -1)], axis=1).astype(np.float32)

    def embed_regions(self, clips: np.ndarray | torch.Tensor, boxes: np.ndarray | list) -> np.ndarray:
        """The frame pass: `(B, R, dim)` features of `R` regions `(x, y, w, h)` of `(B, T, H, W, 3)` clips."""
        if isinstance(clips, torch.Tensor):
            clips = clips.detach().cpu().numpy()
        clips = np.asarray(clips)
        b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        if clips.ndim != 5:
            raise VADInputError(f"clips: expected a non-empty (B, T, H, W, 3) array, got shape {clips.shape}")
        h, w = clips.shape[2:4]
        if len(b) == 0 or (b[:, :2] < 0).any() or (b[:, 0] + b[:, 2] > w).any() or (b[:, 1] + b[:, 3] > h).any():
            raise VADInputError(f"regions {b.tolist()}: must be non-empty boxes inside the {w}x{h} clip")
        return np.stack([self.embed(clips[:, :, y : y + bh, x : x + bw]) for x, y, bw, bh in b.tolist()], axis=1)


def from_registry(variant: str | None, options: BackboneOptions) -> PixelStatsBackbone:
    """`load_backbone("pixelstats")`, `"pixelstats-3"` (grid 3) or `"pixelstats-3x2"` (grid 3, step 2):
    the same names `PixelStatsBackbone.name` gives, so a table's backbone name loads it again.
    Weight-free and numpy-only: `device`, `weights`, `compile` and `precision` do not apply."""
    if options.weights not in (None, "random"):
        raise VADInputError(f"pixelstats: takes no weights file (got {options.weights!r})")
    if variant is None:
        return PixelStatsBackbone()
    grid, _, step = variant.partition("x")
    try:
        return PixelStatsBackbone(grid=int(grid), step=int(step) if step else 4)
    except ValueError:
        raise VADInputError(
            f"backbone pixelstats-{variant}: expected pixelstats-<grid> or pixelstats-<grid>x<step> with integers"
        ) from None


__all__ = ["PixelStatsBackbone", "from_registry"]
