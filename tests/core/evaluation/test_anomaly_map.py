"""Anomaly maps from region scores, their overlay, and the pixel-level check against generated masks."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from tests.core.footage.test_ground_truth import write_pixel_masks
from vad_core.errors import VADInputError
from vad_core.evaluation.anomaly_map import colorize, overlay_heatmap, pixel_metrics, region_heatmap
from vad_core.footage.ground_truth import pixel_mask_files, read_pixel_mask


def test_heat_is_the_mean_score_of_the_covering_regions() -> None:
    # 6x4 frame; a box over columns 0-3 scoring 1, one over columns 2-5 scoring 3, one off-frame part.
    heat = region_heatmap((6, 4), [(0, 0, 4, 4), (2, 0, 4, 4)], [1.0, 3.0])
    np.testing.assert_array_equal(heat, np.array([[1, 1, 2, 2, 3, 3]] * 4, np.float32))
    partial = region_heatmap((6, 4), [(4, 2, 10, 10)], [5.0])  # clipped to the frame; the rest uncovered
    assert np.isnan(partial[:2]).all() and np.isnan(partial[:, :4]).all() and (partial[2:, 4:] == 5).all()
    with pytest.raises(VADInputError, match="2 boxes but 1 scores"):
        region_heatmap((6, 4), [(0, 0, 2, 2), (1, 1, 2, 2)], [1.0])
    with pytest.raises(VADInputError, match="finite"):
        region_heatmap((6, 4), [(0, 0, 2, 2)], [np.nan])


def test_overlay_blends_the_colormap_over_the_frame() -> None:
    frame = np.full((4, 6, 3), 100, np.uint8)
    boxes, scores = [(0, 0, 3, 4), (3, 0, 3, 2)], [0.0, 2.0]
    np.testing.assert_array_equal(overlay_heatmap(frame, boxes, scores, alpha=0.0), frame)
    full = overlay_heatmap(frame, boxes, scores, alpha=1.0, vmin=0.0, vmax=2.0, cmap="viridis")
    cmap = matplotlib.colormaps["viridis"]
    np.testing.assert_array_equal(full[0, 0], np.rint(255 * np.array(cmap(0.0)[:3])).astype(np.uint8))
    np.testing.assert_array_equal(full[0, 5], np.rint(255 * np.array(cmap(1.0)[:3])).astype(np.uint8))
    np.testing.assert_array_equal(full[3, 5], frame[3, 5])  # no region there: the frame shows through
    half = overlay_heatmap(frame, boxes, scores, alpha=0.5, vmin=0.0, vmax=2.0, cmap="viridis")
    expected = np.rint(0.5 * 100 + 0.5 * 255 * np.array(cmap(1.0)[:3])).astype(np.uint8)
    np.testing.assert_array_equal(half[0, 5], expected)
    assert colorize(np.array([[np.nan, 1.0]]))[0, 0, 3] == 0.0
    with pytest.raises(VADInputError, match="uint8"):
        overlay_heatmap(frame.astype(np.float32), boxes, scores)


def test_pixel_metrics_against_generated_masks(tmp_path: Path) -> None:
    write_pixel_masks(tmp_path / "m")
    masks = {vid: read_pixel_mask(f) for vid, f in pixel_mask_files(tmp_path / "m").items()}
    moving = masks["01_0014"]  # 6 frames of 12x16, object at rows 4-7, columns 2t..2t+2
    # Regions: three 8x12 windows every 4 px; those holding the whole object score 1, the rest 0.
    boxes = [(x, 0, 8, 12) for x in (0, 4, 8)]
    good, bad = [], []
    for t in range(6):
        hot = [1.0 if x <= 2 * t and 2 * t + 3 <= x + 8 else 0.0 for x, _, _, _ in boxes]
        good.append((region_heatmap((16, 12), boxes, hot), moving[t]))
        bad.append((-region_heatmap((16, 12), boxes, hot), moving[t]))
    still = [(region_heatmap((16, 12), boxes, [0.0, 0.0, 0.0]), m) for m in masks["02_0001"]]
    g = pixel_metrics(good + still, step=1)
    assert g["n_frames"] == 12 and g["n_anomalous_frames"] == 6
    assert g["hit_rate"] == 1.0 and g["pixel_auc"] is not None and g["pixel_auc"] > 0.8
    b = pixel_metrics(bad + still, step=1)
    assert b["pixel_auc"] is not None and b["pixel_auc"] < 0.5 and b["hit_rate"] == 0.0
    # Exactly: one frame, heat = the mask itself -> AUC 1; the negated mask -> AUC 0.
    m = moving[2]
    assert pixel_metrics([(m.astype(float), m)], step=1)["pixel_auc"] == 1.0
    assert pixel_metrics([(-m.astype(float), m)], step=1)["pixel_auc"] == 0.0
    assert pixel_metrics(still)["pixel_auc"] is None and pixel_metrics(still)["hit_rate"] is None
    with pytest.raises(VADInputError, match="differ in size"):
        pixel_metrics([(np.zeros((3, 3)), m)])
