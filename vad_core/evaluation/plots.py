"""Report plots as PNG bytes: loss curve, per-video score curves, ROC, top clips, heatmaps.

Every function returns the encoded PNG; the caller stores it wherever it keeps outputs (the
pipeline writes through its storage interface). Matplotlib with the Agg backend: no display
needed, safe in worker processes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from vad_core.errors import VADInputError  # noqa: E402


def figure_png(fig: plt.Figure, dpi: int = 110) -> bytes:
    """Encode a figure as PNG and close it (figures are never left open in a long-lived worker)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def loss_curve_png(history: Sequence[Mapping[str, Any]], best_epoch: int | None = None) -> bytes:
    """Training and validation loss per epoch; the kept (best) epoch marked."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    val = [h.get("val_loss") for h in history]
    if any(v is not None for v in val):
        ax.plot(epochs, [np.nan if v is None else v for v in val], label="validation loss (held-back rows)")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", ls=":", label=f"kept epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("EDM loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("denoiser training")
    return figure_png(fig)


def score_curve_png(
    frame: np.ndarray,
    score: np.ndarray,
    anomalous: np.ndarray,
    gt_intervals: Sequence[tuple[int, int]],
    thresholds: Sequence[float],
    title: str,
) -> bytes:
    """One video's frame scores `(F,)` with ground-truth spans shaded and threshold crossings marked.

    A crossing is a frame where the decision turns from normal to anomalous.
    """
    fig, ax = plt.subplots(figsize=(8, 3))
    for i, (s, e) in enumerate(gt_intervals):
        ax.axvspan(s - 0.5, e - 0.5, color="tab:red", alpha=0.15, lw=0, label="ground truth" if i == 0 else None)
    ax.plot(frame, score, color="tab:blue", lw=1.2, label="score")
    for i, t in enumerate(sorted(set(float(t) for t in thresholds))):
        ax.axhline(t, color="tab:orange", ls="--", lw=1, label="batch threshold" if i == 0 else None)
    flags = np.asarray(anomalous, dtype=bool)
    onsets = np.flatnonzero(flags & ~np.concatenate([[False], flags[:-1]]))
    if onsets.size:
        ax.scatter(
            np.asarray(frame)[onsets],
            np.asarray(score)[onsets],
            color="tab:orange",
            marker="v",
            zorder=3,
            label="threshold crossing",
        )
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return figure_png(fig)


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> bytes:
    """ROC curves of several scorers: `{name: (labels (F,), scores (F,), auc)}`."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (labels, scores, auc) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("frame-level ROC")
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


def top_clips_png(items: Sequence[tuple[np.ndarray, tuple[int, int, int, int], str]]) -> bytes:
    """A grid of frames `(H, W, 3)` uint8 (the report passes them with their anomaly map blended
    in: `vad_core.evaluation.anomaly_map.overlay_heatmap`), each with its arg-max tile box drawn."""
    n = max(len(items), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, (x, y, w, h), title) in zip(axes.ravel(), items, strict=False):
        ax.imshow(image)
        ax.add_patch(mpatches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="red", lw=2))
        ax.set_title(title, fontsize=8)
    fig.suptitle("top-scoring clips: middle frame, anomaly map (bright = high), arg-max tile in red", y=1.0)
    return figure_png(fig)


def heatmap_png(
    table: pd.DataFrame, x: str, y: str, title: str, value: str = "frame_auc", mark: tuple[float, float] | None = None
) -> bytes:
    """A heatmap of `value` over two columns of `table` (max over any remaining rows per cell)."""
    if table.empty:
        raise VADInputError(f"heatmap {title!r}: no rows to plot")
    grid = table.pivot_table(index=y, columns=x, values=value, aggfunc="max")
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * grid.shape[1], 1.0 + 0.55 * grid.shape[0]))
    im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(grid.shape[1]), [f"{c:g}" if isinstance(c, float) else str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{c:g}" if isinstance(c, float) else str(c) for c in grid.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    vals = grid.to_numpy()
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isfinite(vals[i, j]):
                ax.text(
                    j,
                    i,
                    f"{100 * vals[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if vals[i, j] < np.nanmean(vals) else "black",
                )
    if mark is not None and mark[0] in grid.columns and mark[1] in grid.index:
        ax.add_patch(
            plt.Rectangle(
                (list[Any](grid.columns).index(mark[0]) - 0.5, list[Any](grid.index).index(mark[1]) - 0.5),
                1,
                1,
                fill=False,
                ec="red",
                lw=2,
            )
        )
    fig.colorbar(im, ax=ax, label=value.replace("_", " "))
    ax.set_title(title, fontsize=9)
    return figure_png(fig, dpi=90)


__all__ = ["figure_png", "heatmap_png", "loss_curve_png", "roc_png", "score_curve_png", "top_clips_png"]
