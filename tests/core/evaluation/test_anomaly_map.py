"""Anomaly maps from region scores, their overlay, and the pixel-level check against generated masks."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
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


def test_report_draws_anomaly_maps_and_checks_them_against_pixel_masks(tmp_path: Path, monkeypatch) -> None:
    """Video b (32 frames of 16x12): clip 1 scores its right region high, and the mask marks an
    object in the right half of frames 16-31. The report's localization figures must equal
    sklearn on the hand-built frame maps, and the top-clips figure must show the overlay."""
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    import vad_core.evaluation.localization as localization
    from vad_core.evaluation.report import ReportSettings, ReportTables, build_report

    rng = np.random.default_rng(0)
    for vid in ("a", "b"):
        (tmp_path / vid).mkdir()
        for i in range(32):
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / vid / f"{i:03d}.png")
    mask = np.zeros((32, 12, 16), np.uint8)
    mask[16:, 2:10, 10:14] = 1
    (tmp_path / "masks").mkdir()
    np.save(tmp_path / "masks" / "b.npy", mask)
    clips = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b"],
            "clip": [0, 1, 0, 1],
            "start_frame": [0, 16, 0, 16],
            "end_frame": [16, 32, 16, 32],
            "score": [0.1, 0.3, 0.2, 0.9],
            "tile": [0, 0, 0, 1],
            "batch": [0] * 4,
            "threshold": [0.5] * 4,
            "anomalous": [False, False, False, True],
        }
    )
    left, right = (0, 0, 8, 12), (8, 0, 8, 12)
    region_scores = {("a", 0): (0.1, 0.05), ("a", 1): (0.3, 0.2), ("b", 0): (0.2, 0.1), ("b", 1): (0.3, 0.9)}
    tiles = pd.DataFrame(
        [
            {"video_id": v, "clip": c, "tile": t, **dict(zip("xywh", box, strict=True)), "score": s[t]}
            for (v, c), s in region_scores.items()
            for t, box in enumerate((left, right))
        ]
    )
    frames = pd.DataFrame({"video_id": np.repeat(["a", "b"], 32), "frame": np.tile(np.arange(32), 2)})
    frames["score"] = np.repeat(clips["score"].to_numpy(), 16)
    frames["anomalous"] = np.repeat(clips["anomalous"].to_numpy(), 16)
    frames["label"] = pd.array(np.r_[np.zeros(48), np.ones(16)].astype(int), dtype="Int8")
    manifest = pd.DataFrame(
        {
            "video_id": ["a", "b"],
            "path": [str(tmp_path / "a"), str(tmp_path / "b")],
            "kind": ["frames"] * 2,
            "n_frames": [32, 32],
            "width": [16, 16],
            "height": [12, 12],
            "status": ["ok", "ok"],
        }
    )
    truth = pd.DataFrame({"video_id": ["b"], "start_frame": [16], "end_frame": [32], "source": ["gt.csv"]})
    drawn: list = []
    real = localization.top_clips_png
    monkeypatch.setattr(localization, "top_clips_png", lambda items: drawn.extend(items) or real(items))
    tables = ReportTables(frames, clips, tiles, manifest, truth, pixel_masks=pixel_mask_files(tmp_path / "masks"))
    report = build_report(tables, ReportSettings(top_clips=1, smoothing_sigma=None), "toy", created="now")

    heat = np.zeros((32, 12, 16))
    heat[:16, :, :8], heat[:16, :, 8:], heat[16:, :, :8], heat[16:, :, 8:] = 0.2, 0.1, 0.3, 0.9
    loc = report.data["localization"]
    assert loc["videos"] == ["b"] and loc["n_frames"] == 32 and loc["n_anomalous_frames"] == 16 and loc["step"] == 1
    assert loc["pixel_auc"] == pytest.approx(roc_auc_score(mask.ravel(), heat.ravel()))
    assert loc["hit_rate"] == 1.0
    assert "## Localization" in report.markdown and "top_clips.png" in report.plots
    # the top clip is b/1, drawn with its map on one scale: median region score .. highest region score
    image, box, _ = drawn[0]
    frame = np.asarray(Image.open(tmp_path / "b" / "024.png").convert("RGB"))
    vmin = float(np.median([s for pair in region_scores.values() for s in pair]))
    np.testing.assert_array_equal(image, overlay_heatmap(frame, [left, right], [0.3, 0.9], vmin=vmin, vmax=0.9))
    assert box == right
