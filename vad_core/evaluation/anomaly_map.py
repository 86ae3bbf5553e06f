"""Anomaly maps: per-region scores -> where in the frame a clip's score comes from.

    heat = region_heatmap((w, h), boxes, scores)          # (h, w) float32, NaN where no region reaches
    image = overlay_heatmap(frame, boxes, scores)          # (h, w, 3) uint8, the heat blended over the frame

A pixel's heat is the mean score of the regions that contain it: every region spreads its score
evenly over its box, so where overlapping regions (Ped2's three tiles, or a grid of
tile-sized windows) all score high, the heat peaks; one high region alone lifts only its own
box. Boxes are `(x, y, w, h)` in the frame's pixels (the clip-features table's boxes). The
report's top-clips figure and the live overlay video draw the same images with these functions.

`pixel_metrics` checks the maps against pixel-level ground truth (ShanghaiTech-style masks,
`vad_core.footage.ground_truth.read_pixel_mask`): pixel ROC AUC over the labelled frames'
pixels (sub-sampled on a grid) and, on frames with anomalous pixels, the share where the map is
hotter inside the mask than outside.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vad_core.errors import VADInputError

__all__ = ["colorize", "overlay_heatmap", "pixel_metrics", "region_heatmap"]


def _boxes_scores(boxes: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) != len(s):
        raise VADInputError(f"anomaly map: {len(b)} boxes but {len(s)} scores")
    if len(b) and (b[:, 2:] < 1).any():
        raise VADInputError(f"anomaly map: boxes need a positive width and height, got {b[(b[:, 2:] < 1).any(1)][0]}")
    if not np.isfinite(s).all():
        raise VADInputError("anomaly map: scores must be finite")
    return b, s


def region_heatmap(size: tuple[int, int], boxes: object, scores: object) -> np.ndarray:
    """`(h, w)` float32 map of a `size = (w, h)` frame: each pixel the mean score of the `(R, 4)`
    boxes containing it, NaN where none does (boxes are clipped to the frame)."""
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise VADInputError(f"anomaly map: frame size must be positive, got {size}")
    b, s = _boxes_scores(boxes, scores)
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.int32)
    for (x, y, w, h), score in zip(b.tolist(), s.tolist(), strict=True):
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 > x0 and y1 > y0:
            total[y0:y1, x0:x1] += score
            count[y0:y1, x0:x1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def colorize(
    heat: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str = "inferno"
) -> np.ndarray:
    """`(h, w)` values -> `(h, w, 4)` float RGBA in [0, 1] (NaN fully transparent), scaled to [vmin, vmax]
    (default: the map's own finite range)."""
    import matplotlib  # the evaluation stage draws with matplotlib already (plots.py)

    finite = heat[np.isfinite(heat)]
    lo = float(vmin) if vmin is not None else float(finite.min()) if finite.size else 0.0
    hi = float(vmax) if vmax is not None else float(finite.max()) if finite.size else 1.0
    scaled = (heat - lo) / (hi - lo) if hi > lo else np.full_like(heat, 0.5)
    rgba = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0))
    rgba[~np.isfinite(heat), 3] = 0.0
    return rgba


def overlay_heatmap(
    frame: np.ndarray,
    boxes: object,
    scores: object,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    cmap: str = "inferno",
) -> np.ndarray:
    """The frame `(h, w, 3)` uint8 with the regions' heat (`region_heatmap`) blended over it at `alpha`.

    `vmin`/`vmax` fix the colour scale (an overlay video passes one scale for every frame, e.g.
    the decision threshold and the run's maximum); by default the clip's own scores span it.
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise VADInputError(f"overlay_heatmap: frame must be (h, w, 3) uint8, got {img.shape} {img.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise VADInputError(f"overlay_heatmap: alpha must be in [0, 1], got {alpha}")
    heat = region_heatmap((img.shape[1], img.shape[0]), boxes, scores)
    rgba = colorize(heat, vmin, vmax, cmap)
    a = (alpha * rgba[..., 3])[..., None]
    out = img.astype(np.float64) * (1.0 - a) + 255.0 * rgba[..., :3] * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pixel_metrics(pairs: Iterable[tuple[np.ndarray, np.ndarray]], step: int = 4) -> dict[str, float | int | None]:
    """Pixel-level figures of anomaly maps against masks: `pairs` of (heat `(h, w)`, mask `(h, w)` bool),
    one per labelled frame (a frame no region covers has an all-NaN heat, counted as the lowest score).

    Returns `pixel_auc` (ROC AUC over every `step`-th pixel of every `step`-th row of all frames;
    None without both classes), `hit_rate` (the share of frames with anomalous pixels where the
    map is hotter on average inside the mask than outside it: robust to the ties of a
    piecewise-constant region map; None without such frames), `n_frames`, `n_anomalous_frames`.
    """
    from sklearn.metrics import roc_auc_score

    scores, labels, hits, n, n_anom = [], [], 0, 0, 0
    for heat, mask in pairs:
        h = np.asarray(heat, dtype=np.float64)
        m = np.asarray(mask).astype(bool)
        if h.shape != m.shape:
            raise VADInputError(f"pixel_metrics: heat map {h.shape} and mask {m.shape} differ in size")
        n += 1
        low = np.nanmin(h) if np.isfinite(h).any() else 0.0
        filled = np.where(np.isfinite(h), h, low - 1.0)
        scores.append(filled[::step, ::step].ravel())
        labels.append(m[::step, ::step].ravel())
        if m.any() and not m.all():
            n_anom += 1
            hits += bool(filled[m].mean() > filled[~m].mean())
    if not n:
        raise VADInputError("pixel_metrics: no frames")
    y, s = np.concatenate(labels), np.concatenate(scores)
    auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    return {
        "pixel_auc": auc,
        "hit_rate": hits / n_anom if n_anom else None,
        "n_frames": n,
        "n_anomalous_frames": n_anom,
    }
