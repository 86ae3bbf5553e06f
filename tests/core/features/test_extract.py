"""Feature extraction into clip-features tables, with the cheap PixelStats backbone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vad_core.errors import VADInputError
from vad_core.features import extract_all, extract_features
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.footage import VideoSource, build_manifest, probe_video
from vad_core.footage.clips import ClipConfig, clip_starts, tile_boxes
from vad_core.io.feature_tables import (
    FEATURE_FORMAT_VERSION,
    FORMAT_KEY,
    feature_key,
    read_clip_features,
    results_frame,
)
from vad_core.io.store import LocalTableStore, MemoryTableStore
from vad_core.io.tables import feature_matrix

# 96x48 frames, 32-px tiles: scale 1 (short side 48 = short_side), one row of tiles centred at
# y = 8 (excess 16 <= max_crop), and along x (excess 64, neighbours >= 50 % overlapping, i.e.
# at most 16 px apart) five tiles at x = 0, 16, 32, 48, 64.
SMALL = ClipConfig(clip_len=4, stride=4, short_side=48, tile_size=32)
SMALL_BOXES = [(x, 8, 32, 32) for x in (0, 16, 32, 48, 64)]


def make_frames(n: int, width: int = 96, height: int = 48, seed: int = 0) -> np.ndarray:
    """`(n, H, W, 3)` uint8: smooth noise plus a bright square moving right (codec-friendly)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(height // 8, width // 8, 3)).repeat(8, 0).repeat(8, 1)
    frames = np.repeat(base[None].astype(np.uint8), n, axis=0)
    for t in range(n):
        x = (3 * t) % (width - 10)
        frames[t, 10:20, x : x + 10] = 250
    return frames


def write_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return folder


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def expected_rows(frames: np.ndarray, config: ClipConfig, backbone: PixelStatsBackbone) -> tuple[list, np.ndarray]:
    """Independent reference: crop each clip's tiles straight from the frames and embed them."""
    n = len(frames)
    keys, clips = [], []
    for c, s in enumerate(clip_starts(n, config.clip_len, config.stride)):
        for j, (x, y, w, h) in enumerate(tile_boxes(frames.shape[2], frames.shape[1], config)):
            keys.append((c, s, min(s + config.clip_len, n), j, x, y, w, h))
            clips.append(frames[s : s + config.clip_len, y : y + h, x : x + w])
    return keys, backbone.embed(np.stack(clips))


def table_keys(df) -> list[tuple]:
    cols = ["clip", "start_frame", "end_frame", "tile", "x", "y", "w", "h"]
    return [tuple(int(v) for v in row) for row in df[cols].to_numpy()]


# --- the cheap backbone -------------------------------------------------------------------


def test_pixelstats_constant_and_ramp() -> None:
    bb = PixelStatsBackbone(grid=2, step=1)
    assert bb.dim == 24
    clip = np.zeros((1, 3, 8, 8, 3), np.uint8)
    clip[..., 0] = 51  # red 0.2
    for t in range(3):
        clip[0, t, :, :, 2] = 10 * t  # blue ramps by 10 per frame
    clip[0, :, :, 4:, 1] = 255  # green only in the right half
    out = bb.embed(clip)
    assert out.shape == (1, 24) and out.dtype == np.float32
    means, motion = out[0, :12].reshape(2, 2, 3), out[0, 12:].reshape(2, 2, 3)
    np.testing.assert_allclose(means[..., 0], 0.2, atol=1e-6)
    np.testing.assert_allclose(means[..., 1], [[0, 1], [0, 1]], atol=1e-6)
    np.testing.assert_allclose(means[..., 2], 10 / 255, atol=1e-6)  # mean of 0, 10, 20
    np.testing.assert_allclose(motion[..., :2], 0, atol=1e-7)
    np.testing.assert_allclose(motion[..., 2], 10 / 255, atol=1e-6)
    np.testing.assert_array_equal(bb.embed(torch.from_numpy(clip)), out)


def test_pixelstats_step_and_errors() -> None:
    clip = np.zeros((2, 2, 8, 8, 3), np.uint8)
    clip[:, :, ::4, ::4] = 255  # only the sampled pixels are lit
    np.testing.assert_allclose(PixelStatsBackbone(grid=1, step=4).embed(clip)[:, :3], 1.0)
    np.testing.assert_allclose(PixelStatsBackbone(grid=1, step=1).embed(clip)[:, :3], 4 / 64)
    assert PixelStatsBackbone(2, 1).weights_sha256 != PixelStatsBackbone(2, 4).weights_sha256
    with pytest.raises(VADInputError, match="uint8"):
        PixelStatsBackbone().embed(clip.astype(np.float32))
    with pytest.raises(VADInputError, match=r"\(B, T, H, W, 3\)"):
        PixelStatsBackbone().embed(clip[0])
    with pytest.raises(VADInputError, match="grid"):
        PixelStatsBackbone(grid=0)


# --- extraction ---------------------------------------------------------------------------


def test_frame_folder_table(tmp_path) -> None:
    frames = make_frames(10)  # clips start 0, 4 and a tail clip 6 (covers 6..9)
    folder = write_folder(tmp_path / "root" / "cam1", frames)
    row = probe_video(VideoSource("cam1", folder, "frames"))
    bb = PixelStatsBackbone(grid=2, step=1)
    events: list[dict] = []
    store, out = LocalTableStore(tmp_path), "feat/cam1.parquet"
    result = extract_features(row, bb, SMALL, store, out, batch_size=4, callback=events.append)
    assert result.ok and not result.skipped
    assert (result.n_clips, result.n_tiles, result.n_rows, result.dim) == (3, 5, 15, 24)

    df, meta = read_clip_features(store, out)
    keys, feats = expected_rows(frames, SMALL, bb)
    assert table_keys(df) == keys
    assert [k[1] for k in keys[::5]] == [0, 4, 6] and [k[2] for k in keys[::5]] == [4, 8, 10]
    assert [tuple(k[4:]) for k in keys[:5]] == SMALL_BOXES
    assert (df["video_id"] == "cam1").all()
    np.testing.assert_allclose(feature_matrix(df), feats, rtol=0, atol=1e-6)

    assert meta["backbone"] == bb.name and meta["weights_sha256"] == bb.weights_sha256
    assert meta["dim"] == "24" and meta["clip_len"] == "4" and meta["stride"] == "4"
    assert meta["tiling"] == "tiles" and meta["tile_size"] == "32" and meta["scale"] == "1"
    assert meta["video_fingerprint"] == row["fingerprint"] and meta[FORMAT_KEY] == FEATURE_FORMAT_VERSION
    assert json.loads(meta["clip_config"]) == SMALL.to_dict()
    assert [tuple(b) for b in json.loads(meta["tile_boxes"])] == SMALL_BOXES

    # Progress: start, one event per batch of 4 rows (15 rows -> 4 batches), done.
    assert [e["event"] for e in events] == ["video_start"] + ["batch"] * 4 + ["video_done"]
    assert [e["rows_done"] for e in events[1:5]] == [4, 8, 12, 15]
    assert [e["clips_done"] for e in events[1:5]] == [0, 1, 2, 3]
    assert all(e["clips_total"] == 3 for e in events)


def test_rerun_is_noop_and_changes_reextract(tmp_path) -> None:
    frames = make_frames(8)
    folder = write_folder(tmp_path / "cam", frames)
    row = probe_video(VideoSource("cam", folder, "frames"))
    bb = PixelStatsBackbone(step=1)
    store, out = LocalTableStore(tmp_path), "cam.parquet"
    extract_features(row, bb, SMALL, store, out)
    before = os.stat(tmp_path / out).st_mtime_ns
    events: list[dict] = []
    again = extract_features(row, bb, SMALL, store, out, callback=events.append)
    assert again.skipped and again.n_rows == 10 and os.stat(tmp_path / out).st_mtime_ns == before
    assert events == [
        {
            "event": "video_done",
            "video_id": "cam",
            "clips_total": 2,
            "rows_total": 10,
            "clips_done": 2,
            "rows_done": 10,
            "skipped": True,
            "seconds": again.seconds,
        }
    ]

    # A new backbone or clip config makes the table stale.
    assert not extract_features(row, PixelStatsBackbone(grid=1, step=1), SMALL, store, out).skipped
    overlap = ClipConfig(clip_len=4, stride=2, short_side=48, tile_size=32)
    res = extract_features(row, bb, overlap, store, out)
    assert not res.skipped and res.n_clips == len(clip_starts(8, 4, 2)) == 3

    # The video changes behind the (now stale) manifest row: re-probed and re-extracted.
    changed = frames.copy()
    changed[5, :, :] = 0
    Image.fromarray(changed[5]).save(folder / "005.png")
    res = extract_features(row, bb, overlap, store, out)
    assert not res.skipped
    df, meta = read_clip_features(store, out)
    assert meta["video_fingerprint"] != row["fingerprint"]
    _, feats = expected_rows(changed, overlap, bb)
    np.testing.assert_allclose(feature_matrix(df), feats, atol=1e-6)


def test_error_videos(tmp_path) -> None:
    bad = tmp_path / "root" / "bad.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    row = probe_video(VideoSource("bad", bad, "file"))
    assert row["status"] == "error"
    with pytest.raises(VADInputError, match="'bad'.*status 'error'"):
        extract_features(row, PixelStatsBackbone(), SMALL, LocalTableStore(tmp_path), "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()

    # A frame broken after probing: the stale row is re-probed and refused, nothing is written.
    folder = write_folder(tmp_path / "root" / "cut", make_frames(8))
    row = probe_video(VideoSource("cut", folder, "frames"))
    (folder / "003.png").write_bytes(b"not a png")
    with pytest.raises(VADInputError, match="003.png"):
        extract_features(row, PixelStatsBackbone(), SMALL, LocalTableStore(tmp_path), "cut.parquet")
    assert not (tmp_path / "cut.parquet").exists()
    with pytest.raises(VADInputError, match="batch_size"):
        extract_features(row, PixelStatsBackbone(), SMALL, LocalTableStore(tmp_path), "x.parquet", batch_size=0)


def test_extract_all_goes_on_and_mp4(tmp_path) -> None:
    root = tmp_path / "root"
    frames = make_frames(12, seed=1)
    write_mp4(root / "street" / "a.mp4", frames)
    write_folder(root / "b", make_frames(6, seed=2))
    (root / "c.mp4").write_bytes(b"\x00" * 100)  # not a video
    manifest = build_manifest(root)
    assert manifest["video_id"].tolist() == ["b", "c", "street/a"]
    events: list[dict] = []
    bb = PixelStatsBackbone(step=1)
    store = LocalTableStore(tmp_path)
    results = extract_all(manifest, bb, SMALL, store, "feat", callback=events.append)
    by_id = {r.video_id: r for r in results}
    assert by_id["b"].ok and by_id["street/a"].ok
    assert not by_id["c"].ok and "c.mp4" in by_id["c"].error and by_id["c"].key is None
    assert by_id["street/a"].key == feature_key("feat", "street/a") == "feat/street/a.parquet"
    assert (tmp_path / "feat" / "street" / "a.parquet").is_file()
    report = results_frame(results)
    assert report["video_id"].tolist() == ["b", "c", "street/a"]
    assert report["error"].notna().tolist() == [False, True, False]
    done = [e for e in events if e["event"] == "video_done"]
    assert [e["videos_done"] for e in done] == [1, 2, 3] and all(e["videos_total"] == 3 for e in done)

    # The mp4's table: same rows as the frames would give; features close (lossy codec).
    df, meta = read_clip_features(store, by_id["street/a"].key)
    keys, feats = expected_rows(frames, SMALL, bb)
    assert table_keys(df) == keys and meta["fps"] == "10.0"
    np.testing.assert_allclose(feature_matrix(df)[:, :12], feats[:, :12], atol=0.03)  # colour means

    again = extract_all(manifest, bb, SMALL, store, "feat")
    assert [r.skipped for r in again] == [True, False, True]
    assert extract_features(manifest.iloc[0], bb, SMALL, store, by_id["b"].key).skipped  # a Series row


def test_resize_tiling_one_box(tmp_path) -> None:
    folder = write_folder(tmp_path / "v", make_frames(5))
    config = ClipConfig(clip_len=4, stride=4, tiling="resize", tile_size=32)
    result = extract_features(
        probe_video(VideoSource("v", folder, "frames")),
        PixelStatsBackbone(),
        config,
        LocalTableStore(tmp_path),
        "v.parquet",
    )
    df, meta = read_clip_features(LocalTableStore(tmp_path), result.key)
    assert table_keys(df) == [(0, 0, 4, 0, 0, 0, 96, 48), (1, 1, 5, 0, 0, 0, 96, 48)]
    assert meta["tiling"] == "resize" and meta["n_tiles"] == "1"


def test_ped2_video_through_cheap_backbone(ped2_dir: Path, tmp_path) -> None:
    folder = ped2_dir / "testing" / "frames" / "01"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    bb = PixelStatsBackbone()
    result = extract_features(
        VideoSource("testing/frames/01", folder, "frames"), bb, ClipConfig(), LocalTableStore(tmp_path), "01.parquet"
    )
    assert (result.n_clips, result.n_tiles, result.n_rows) == (12, 3, 36)
    df, meta = read_clip_features(LocalTableStore(tmp_path), result.key)
    assert df["x"].tolist() == [0, 68, 136] * 12
    assert (df["y"] == 8).all() and (df["w"] == 224).all() and (df["h"] == 224).all()
    starts = list(range(0, 161, 16)) + [164]
    assert df["start_frame"].tolist()[::3] == starts and df["end_frame"].tolist()[::3] == [s + 16 for s in starts]
    # Last clip, middle tile, recomputed straight from the JPEGs.
    clip = np.stack(
        [np.asarray(Image.open(folder / f"{i:03d}.jpg").convert("RGB"))[8:232, 68:292] for i in range(164, 180)]
    )
    np.testing.assert_allclose(feature_matrix(df)[34], bb.embed(clip[None])[0], atol=1e-6)
    assert meta["width"] == "360" and meta["height"] == "240" and meta["n_frames"] == "180"


class _Fixed:
    """A backbone without `to`, pinned to the CPU, returning `dim` columns of the clip's mean."""

    name, weights_sha256, device = "fixed", "0" * 64, torch.device("cpu")

    def __init__(self, dim: int, out_dim: int | None = None) -> None:
        self.dim, self.out_dim = dim, out_dim or dim

    def embed(self, clips: torch.Tensor, resize: bool = True) -> torch.Tensor:
        assert not resize  # extraction feeds tiles at the config's size
        return clips.float().mean(dim=(1, 2, 3, 4))[:, None].repeat(1, self.out_dim)


def test_device_and_backbone_contract(tmp_path) -> None:
    frames = make_frames(4)
    row = probe_video(VideoSource("v", write_folder(tmp_path / "v", frames), "frames"))
    res = extract_features(row, _Fixed(2), SMALL, LocalTableStore(tmp_path), "a.parquet", device="cpu")
    df, _ = read_clip_features(LocalTableStore(tmp_path), res.key)
    expected = [frames[:, 8:40, x : x + 32].astype(np.float64).mean() for x in (0, 16, 32, 48, 64)]
    np.testing.assert_allclose(feature_matrix(df)[:, 0], expected, rtol=1e-6)
    with pytest.raises(VADInputError, match="is on cpu, device meta"):
        extract_features(row, _Fixed(2), SMALL, LocalTableStore(tmp_path), "b.parquet", device="meta")
    with pytest.raises(VADInputError, match=r"returned shape \(5, 3\), expected \(5, 2\)"):
        extract_features(row, _Fixed(2, out_dim=3), SMALL, LocalTableStore(tmp_path), "c.parquet")
    assert not (tmp_path / "c.parquet").exists()

    class _NaNAfterFirst(_Fixed):
        def embed(self, clips: torch.Tensor, resize: bool = True) -> torch.Tensor:
            out = super().embed(clips, resize)
            out[1:] = float("nan")
            return out

    with pytest.raises(VADInputError, match="non-finite features for clip 0 tile 1"):
        extract_features(row, _NaNAfterFirst(2), SMALL, LocalTableStore(tmp_path), "d.parquet")
    assert not (tmp_path / "d.parquet").exists()


def test_cpu_extraction_keeps_freed_blocks_for_reuse(tmp_path, monkeypatch) -> None:
    """On CPU the embedding runs inside `reuse_large_allocations` (glibc only); the table is the same."""
    from vad_core import _malloc

    class _Recording(_Fixed):
        def __init__(self, dim: int, device: str = "cpu") -> None:
            super().__init__(dim)
            self.device, self.depths = torch.device(device), []

        def embed(self, clips: torch.Tensor, resize: bool = True) -> torch.Tensor:
            self.depths.append(_malloc._depth)  # > 0 while the tuning is applied
            return super().embed(clips, resize)

    row = probe_video(VideoSource("v", write_folder(tmp_path / "v", make_frames(8)), "frames"))
    store = LocalTableStore(tmp_path)
    tuned = _Recording(2)
    extract_features(row, tuned, SMALL, store, "tuned.parquet", batch_size=4)
    glibc = _malloc._glibc() is not None
    assert tuned.depths and set(tuned.depths) == ({1} if glibc else {0}) and _malloc._depth == 0
    elsewhere = _Recording(2, device="meta")  # a backbone that says it sits off the CPU: nothing to tune
    extract_features(row, elsewhere, SMALL, store, "meta.parquet", batch_size=4)
    assert elsewhere.depths and set(elsewhere.depths) == {0}
    monkeypatch.setenv("VAD_MALLOC_TUNING", "0")
    plain = _Recording(2)
    extract_features(row, plain, SMALL, store, "plain.parquet", batch_size=4)
    assert set(plain.depths) == {0}
    assert store.sha256("plain.parquet") == store.sha256("tuned.parquet")


def test_extraction_into_a_memory_store_touches_no_disk(tmp_path) -> None:
    frames = make_frames(10)
    row = probe_video(VideoSource("cam1", write_folder(tmp_path / "cam1", frames), "frames"))
    store = MemoryTableStore()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = extract_features(row, PixelStatsBackbone(grid=2, step=1), SMALL, store, "features/cam1.parquet")
    assert result.ok and store.list("features") == ["features/cam1.parquet"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # only the footage is on disk
    df, meta = read_clip_features(store, result.key)
    assert len(df) == result.n_rows == 15 and meta["video_id"] == "cam1"
    again = extract_features(row, PixelStatsBackbone(grid=2, step=1), SMALL, store, "features/cam1.parquet")
    assert again.skipped and again.n_rows == 15
