"""Regions and the frame pass: geometry, pooling weights, extraction by either pass, batching across videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.core.features.test_extract import SMALL, make_frames, table_keys, write_folder
from vad_core.errors import VADInputError
from vad_core.features import extract_all, extract_features
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.features.regions import (
    RegionConfig,
    grid_boxes,
    pooling_metadata,
    region_layout,
    region_weights,
    relative_boxes,
)
from vad_core.footage import VideoSource, build_manifest, probe_video
from vad_core.footage.clips import ClipConfig
from vad_core.io.feature_tables import LEGACY_METADATA, read_clip_features
from vad_core.io.store import MemoryTableStore
from vad_core.io.tables import feature_matrix

FRAME = RegionConfig(backbone_pass="frame")
GRID = RegionConfig(regions="grid", grid_step=16, grid_window=32)

# --- geometry ----------------------------------------------------------------------------


def test_region_config_checks_and_key() -> None:
    assert json.loads(RegionConfig().key()) == {"backbone_pass": "crop", "regions": "tiles"}
    assert RegionConfig().key() == LEGACY_METADATA["region_config"]  # what a table without the key holds
    # the grid's settings only identify a grid feature set
    assert RegionConfig(grid_step=64).key() == RegionConfig().key()
    assert json.loads(GRID.key()) == {"backbone_pass": "crop", "regions": "grid", "grid_step": 16, "grid_window": 32}
    for bad in ({"backbone_pass": "tiles"}, {"regions": "cells"}, {"grid_step": 0}, {"grid_window": -1}):
        with pytest.raises(VADInputError, match="RegionConfig"):
            RegionConfig(**bad)  # type: ignore[arg-type]  # wrong on purpose


def test_grid_windows_start_every_step_and_meet_the_far_edge() -> None:
    # Ped2's 360x240 with tile-sized windows every 32 px: x 0..128 then flush right at 136; y 0, 16.
    boxes = grid_boxes((360, 240), 224, 32)
    assert [b[0] for b in boxes[:6]] == [0, 32, 64, 96, 128, 136]
    assert sorted({b[1] for b in boxes}) == [0, 16] and len(boxes) == 12
    assert all(b[2:] == (224, 224) for b in boxes)
    assert grid_boxes((64, 64), 64, 32) == [(0, 0, 64, 64)]  # exactly one fits
    assert grid_boxes((50, 40), 64, 8) == [(0, 0, 50, 40)]  # a window longer than the frame shrinks to it


def test_layouts_of_ped2_and_of_a_scaled_video() -> None:
    tiles = region_layout(360, 240, ClipConfig(), FRAME)
    assert tiles.boxes == [(0, 8, 224, 224), (68, 8, 224, 224), (136, 8, 224, 224)]
    assert tiles.crop == (0, 8, 360, 224)  # the band the tiles see, not the dropped margin rows
    assert relative_boxes(tiles).tolist() == [[0, 0, 224, 224], [68, 0, 224, 224], [136, 0, 224, 224]]
    grid = region_layout(360, 240, ClipConfig(), RegionConfig(regions="grid"))
    assert grid.crop == (0, 0, 360, 240) and len(grid.boxes) == 12
    # 720x480 is scaled by 1/2: boxes come back in original pixels.
    big = region_layout(720, 480, ClipConfig(), RegionConfig(regions="grid", grid_step=64))
    assert big.scaled_size == (360, 240)
    assert big.boxes_scaled[1] == (64, 0, 224, 224) and big.boxes[1] == (128, 0, 448, 448)


def test_region_weights_are_area_shares_of_the_cells() -> None:
    # A 224-wide box starting 68 px in, over 32-px cells: 28 px of cell 2, all of 3..8, 4 px of cell 9.
    w = region_weights([(68, 0, 224, 32), (0, 0, 64, 64)], (2, 12), 32)
    assert w.shape == (2, 2, 12)
    expected = np.zeros(12)
    expected[2], expected[3:9], expected[9] = 28, 32, 4
    np.testing.assert_allclose(w[0, 0], expected / 224, atol=1e-7)
    np.testing.assert_allclose(w[0, 1], 0)
    np.testing.assert_allclose(w[1], np.pad(np.full((2, 2), 0.25), ((0, 0), (0, 10))), atol=1e-7)
    np.testing.assert_allclose(w.sum(axis=(1, 2)), 1.0, atol=1e-6)
    with pytest.raises(VADInputError, match="outside"):
        region_weights([(0, 0, 400, 32)], (1, 12), 32)
    with pytest.raises(VADInputError, match="non-empty"):
        region_weights([(0, 0, 0, 32)], (1, 12), 32)


def test_pooling_metadata_describes_the_pass() -> None:
    layout = region_layout(360, 240, ClipConfig(), FRAME)
    meta = pooling_metadata(layout, FRAME, 32)
    assert meta["region_config"] == FRAME.key()
    desc = json.loads(meta["pooling"])
    assert desc["crop_scaled"] == [0, 8, 360, 224] and desc["input_size"] == [384, 224]
    assert desc["map_stride"] == 32 and desc["n_regions"] == 3 and "area-weighted" in desc["pool"]
    with pytest.raises(VADInputError, match="map stride"):
        pooling_metadata(layout, FRAME, None)


# --- extraction by either pass ------------------------------------------------------------


class _Counting(PixelStatsBackbone):
    """PixelStats that records the batch size of every call (a backbone sees one batch per call)."""

    def __init__(self) -> None:
        super().__init__(grid=2, step=1)
        self.calls: list[tuple[str, int]] = []

    def embed(self, clips, resize=True):  # type: ignore[no-untyped-def]  # the base signature
        if not getattr(self, "_inner", False):
            self.calls.append(("crop", len(clips)))
        return super().embed(clips, resize)

    def embed_regions(self, clips, boxes):  # type: ignore[no-untyped-def]
        self.calls.append(("frame", len(clips)))
        self._inner = True
        try:
            return super().embed_regions(clips, boxes)
        finally:
            self._inner = False


@pytest.mark.parametrize("regions", [RegionConfig(), GRID], ids=["tiles", "grid"])
def test_frame_pass_rows_match_the_crop_pass(tmp_path, regions: RegionConfig) -> None:
    """PixelStats has no receptive field, so a region pooled from the clip is its crop's feature
    exactly: the frame pass must reproduce the crop pass row for row (boxes, order, values)."""
    row = probe_video(VideoSource("cam", write_folder(tmp_path / "cam", make_frames(10)), "frames"))
    store = MemoryTableStore()
    crop = extract_features(row, PixelStatsBackbone(step=1), SMALL, store, "crop.parquet", regions=regions)
    frame_regions = RegionConfig("frame", regions.regions, regions.grid_step, regions.grid_window)
    frame = extract_features(row, _Counting(), SMALL, store, "frame.parquet", batch_size=2, regions=frame_regions)
    a, meta_a = read_clip_features(store, crop.key)
    b, meta_b = read_clip_features(store, frame.key)
    assert table_keys(a) == table_keys(b) and crop.n_rows == frame.n_rows
    np.testing.assert_allclose(feature_matrix(a), feature_matrix(b), rtol=0, atol=1e-7)
    assert meta_a["region_config"] == regions.key() and meta_b["region_config"] == frame_regions.key()
    if regions.regions == "tiles":  # the frame pass sees the tiles' band only
        assert json.loads(meta_b["pooling"])["crop_scaled"] == [0, 8, 96, 32] and frame.n_tiles == 5
    else:  # 96x48 frame, 32-px windows every 16 px: x 0, 16, 32, 48, 64 and y 0, 16
        assert json.loads(meta_b["pooling"])["crop_scaled"] == [0, 0, 96, 48]
        assert frame.n_tiles == 10 and meta_b["n_tiles"] == "10"
        assert list(zip(b["x"], b["y"], strict=True))[:10] == [(x, y) for y in (0, 16) for x in (0, 16, 32, 48, 64)]


def test_a_different_pooling_is_a_different_table(tmp_path) -> None:
    row = probe_video(VideoSource("cam", write_folder(tmp_path / "cam", make_frames(8)), "frames"))
    store, bb = MemoryTableStore(), PixelStatsBackbone(step=1)
    assert not extract_features(row, bb, SMALL, store, "t.parquet").skipped
    assert extract_features(row, bb, SMALL, store, "t.parquet").skipped
    assert not extract_features(row, bb, SMALL, store, "t.parquet", regions=FRAME).skipped
    assert extract_features(row, bb, SMALL, store, "t.parquet", regions=FRAME).skipped
    assert not extract_features(row, bb, SMALL, store, "t.parquet", regions=GRID).skipped
    # A table written before regions existed (no region_config) still counts as the crop pass over tiles.
    extract_features(row, bb, SMALL, store, "old.parquet")
    table = store.read_table("old.parquet")
    meta = {k.decode(): v for k, v in table.schema.metadata.items() if k.decode() not in ("region_config", "pooling")}
    store.write_table("old.parquet", table.replace_schema_metadata(meta))
    assert "region_config" not in store.read_metadata("old.parquet")
    assert extract_features(row, bb, SMALL, store, "old.parquet").skipped
    assert not extract_features(row, bb, SMALL, store, "old.parquet", regions=FRAME).skipped


def test_a_backbone_without_a_feature_map_refuses_the_frame_pass(tmp_path) -> None:
    from vad_core.features.backbones import load_backbone

    row = probe_video(VideoSource("cam", write_folder(tmp_path / "cam", make_frames(4)), "frames"))
    r3d = load_backbone("r3d_18", weights="random", compile=False)
    with pytest.raises(VADInputError, match="'r3d_18' has no frame pass"):
        extract_features(row, r3d, SMALL, MemoryTableStore(), "x.parquet", regions=FRAME)
    with pytest.raises(VADInputError, match="no frame pass"):
        r3d.embed_regions(np.zeros((1, 4, 32, 32, 3), np.uint8), [(0, 0, 32, 32)])  # type: ignore[attr-defined]


# --- batching across videos ---------------------------------------------------------------


def test_batches_span_videos_and_a_broken_video_loses_only_its_rows(tmp_path) -> None:
    root = tmp_path / "root"
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        write_folder(root / name, make_frames(10, seed=seed))  # 3 clips x 5 tiles = 15 rows each
    manifest = build_manifest(root)
    single = MemoryTableStore()
    for row in manifest.to_dict("records"):
        extract_features(row, PixelStatsBackbone(grid=2, step=1), SMALL, single, f"{row['video_id']}.parquet")

    bb, store, events = _Counting(), MemoryTableStore(), []
    results = extract_all(manifest, bb, SMALL, store, "f", batch_size=4, callback=events.append)
    assert [r.ok for r in results] == [True] * 3 and [r.n_rows for r in results] == [15] * 3
    # 45 inputs in batches of 4: one short batch at the very end, none per video.
    assert bb.calls == [("crop", 4)] * 11 + [("crop", 1)]
    for r in results:
        a, _ = read_clip_features(store, r.key)
        b, _ = read_clip_features(single, f"{r.video_id}.parquet")
        assert table_keys(a) == table_keys(b)
        np.testing.assert_array_equal(feature_matrix(a), feature_matrix(b))
    done = [e for e in events if e["event"] == "video_done"]
    assert [e["video_id"] for e in done] == ["a", "b", "c"] and [e["videos_done"] for e in done] == [1, 2, 3]

    # The frame pass batches clips: 9 clips in batches of 4.
    bb = _Counting()
    extract_all(manifest, bb, SMALL, MemoryTableStore(), "f", batch_size=4, regions=FRAME)
    assert bb.calls == [("frame", 4), ("frame", 4), ("frame", 1)]

    # b breaks after probing (a frame no longer decodes): a and c are written, b reports its file.
    (root / "b" / "007.png").write_bytes(b"not a png")
    store = MemoryTableStore()
    results = extract_all(manifest, _Counting(), SMALL, store, "f", batch_size=4)
    assert [r.ok for r in results] == [True, False, True] and "007.png" in str(results[1].error)
    assert store.list("f") == ["f/a.parquet", "f/c.parquet"]
    c, _ = read_clip_features(store, "f/c.parquet")
    np.testing.assert_array_equal(feature_matrix(c), feature_matrix(read_clip_features(single, "c.parquet")[0]))


def test_non_finite_rows_fail_their_video_only(tmp_path) -> None:
    root = tmp_path / "root"
    write_folder(root / "a", make_frames(8, seed=1))
    write_folder(root / "b", np.full((8, 48, 96, 3), 255, np.uint8))  # white: the backbone below fails on it
    manifest = build_manifest(root)

    class _NaNOnWhite(PixelStatsBackbone):
        def embed(self, clips, resize=True):  # type: ignore[no-untyped-def]
            out = super().embed(clips, resize)
            out[out[:, :3].mean(axis=1) > 0.99] = np.nan
            return out

    store = MemoryTableStore()
    # a gives 10 inputs: its last one shares a batch of 3 with b's first two
    results = extract_all(manifest, _NaNOnWhite(step=1), SMALL, store, "f", batch_size=3)
    assert results[0].ok and results[0].n_rows == 10
    assert (
        not results[1].ok
        and "'b'" in str(results[1].error)
        and "non-finite features for clip 0 tile 0" in str(results[1].error)
    )
    assert store.list("f") == ["f/a.parquet"]
