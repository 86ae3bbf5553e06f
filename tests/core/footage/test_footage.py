"""Footage: discovery, probing (counts, fingerprints, every kind of unreadable video), decoding."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vad_core.errors import VADInputError
from vad_core.footage import (
    MANIFEST_COLUMNS,
    MANIFEST_DTYPES,
    VideoSource,
    build_manifest,
    discover_videos,
    fingerprint_source,
    frame_size,
    iter_frames,
    list_frames,
    probe_video,
    read_frames,
)


def ramp_frames(n: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Frame i is a flat grey of level 8 + 6 i: easy to recognise after lossy coding."""
    return [np.full((height, width, 3), 8 + 6 * i, dtype=np.uint8) for i in range(n)]


def write_video(
    path: Path, frames: list[np.ndarray], fps: int = 12, codec: str = "libx264", options: dict[str, str] | None = None
) -> Path:
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_folder(folder: Path, frames: list[np.ndarray], pattern: str = "{:03d}.png", first: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / pattern.format(first + i))
    return folder


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def source(path: Path) -> VideoSource:
    return VideoSource(path.stem, path, "frames" if path.is_dir() else "file")


# --------------------------------------------------------------------------- discovery


def test_discover_finds_files_and_frame_folders_with_stable_ids(tmp_path: Path) -> None:
    frames = ramp_frames(2, 16, 16)
    (tmp_path / "cam1").mkdir()
    write_video(tmp_path / "cam1" / "morning.mp4", ramp_frames(3))
    (tmp_path / "cam1" / "notes.txt").write_text("not footage")
    (tmp_path / "cam1" / ".hidden.mp4").write_bytes(b"")
    write_folder(tmp_path / "testing" / "frames" / "01", frames)
    write_folder(tmp_path / "Test" / "Test001_gt", frames, "{:03d}.bmp")  # UCSD masks: skipped
    write_folder(tmp_path / ".cache" / "x", frames)  # hidden folder: skipped
    (tmp_path / "clip.AVI").write_bytes(b"anything")  # extension match is case-insensitive
    (tmp_path / "dup.mp4").write_bytes(b"a")
    (tmp_path / "dup.mkv").write_bytes(b"b")
    found = [(s.video_id, s.kind, s.path.name, s.error is not None) for s in discover_videos(tmp_path)]
    assert found == [
        ("cam1/morning", "file", "morning.mp4", False),
        ("clip", "file", "clip.AVI", False),
        # Two files share the id 'dup': neither is renamed (an id depends on its file alone),
        # both are quarantined with a message naming the other.
        ("dup", "file", "dup.mkv", True),
        ("dup", "file", "dup.mp4", True),
        ("testing/frames/01", "frames", "01", False),
    ]
    dup = discover_videos(tmp_path)[2]
    assert "2 videos share the id 'dup'" in str(dup.error) and "dup.mp4" in str(dup.error)
    assert discover_videos(tmp_path) == discover_videos(str(tmp_path))


def test_discover_root_that_is_a_frame_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "Train001", ramp_frames(2, 8, 8), "{:03d}.tif")
    assert [(s.video_id, s.kind) for s in discover_videos(folder)] == [("Train001", "frames")]


def test_discover_rejects_missing_root(tmp_path: Path) -> None:
    with pytest.raises(VADInputError, match="not a directory"):
        discover_videos(tmp_path / "nope")


def test_list_frames_sorts_numerically_and_rejects_gaps_and_duplicates(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", ramp_frames(12, 8, 8), "img_{}.png", first=1)
    (folder / "thumbnail.png").write_bytes(b"")  # no number: not a frame
    assert [p.name for p in list_frames(folder)] == [f"img_{i}.png" for i in range(1, 13)]
    (folder / "img_5.png").unlink()
    with pytest.raises(VADInputError, match="img_4.png to img_6.png"):
        list_frames(folder)
    Image.fromarray(ramp_frames(1, 8, 8)[0]).save(folder / "img_5.png")
    Image.fromarray(ramp_frames(1, 8, 8)[0]).save(folder / "img_005.jpg")
    with pytest.raises(VADInputError, match="two frames carry number 5"):
        list_frames(folder)


# --------------------------------------------------------------------------- probing: good videos


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".avi", "mpeg4")])
def test_probe_counts_frames_exactly(tmp_path: Path, suffix: str, codec: str) -> None:
    path = write_video(tmp_path / f"v{suffix}", ramp_frames(37, 64, 48), fps=12, codec=codec)
    row = probe_video(VideoSource("v", path, "file"))
    assert list(row) == list(MANIFEST_COLUMNS)
    assert (row["status"], row["error"]) == ("ok", None)
    assert (row["n_frames"], row["fps"], row["width"], row["height"]) == (37, 12.0, 64, 48)
    assert row["size_bytes"] == path.stat().st_size
    assert (row["video_id"], row["path"], row["kind"]) == ("v", str(path), "file")
    assert sum(1 for _ in iter_frames(path, "file")) == 37


def test_probe_frame_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", ramp_frames(5, 40, 30), "{:04d}.jpg")
    row = probe_video(folder, root=tmp_path)
    assert row["video_id"] == "f" and row["kind"] == "frames" and row["status"] == "ok"
    assert (row["n_frames"], row["width"], row["height"]) == (5, 40, 30)
    assert row["fps"] is None  # a frame folder has no frame rate
    assert row["size_bytes"] == sum(p.stat().st_size for p in folder.iterdir())


def test_file_fingerprint_is_content_sha256(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", ramp_frames(4))
    data = path.read_bytes()
    expected = hashlib.sha256(f"file|{len(data)}|".encode() + data).hexdigest()
    assert fingerprint_source(path, "file") == expected == probe_video(source(path))["fingerprint"]
    os.utime(path, (1, 1))  # touching does not change the content
    assert fingerprint_source(path, "file") == expected
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit in the last byte
    assert fingerprint_source(path, "file") != expected


def test_frame_folder_fingerprint_tracks_every_frame(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", ramp_frames(3, 8, 8))
    before = fingerprint_source(folder, "frames")
    assert probe_video(source(folder))["fingerprint"] == before
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "001.png")
    assert fingerprint_source(folder, "frames") != before
    (folder / "001.png").rename(folder / "003.png")
    assert probe_video(source(folder))["status"] == "error"  # now 000, 002, 003: a gap


def test_probe_ped2_folder(ped2_dir: Path) -> None:
    folder = ped2_dir / "training" / "frames" / "01"
    row = probe_video(folder, root=ped2_dir)
    assert row["video_id"] == "training/frames/01"
    assert (row["status"], row["n_frames"], row["width"], row["height"]) == ("ok", 120, 360, 240)


# --------------------------------------------------------------------------- probing: bad videos


def assert_error(row: dict[str, object], path: Path, *words: str) -> None:
    assert row["status"] == "error", row
    assert row["n_frames"] is None and row["width"] is None
    message = str(row["error"])
    assert str(path) in message
    for w in words:
        assert w in message, message


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert_error(probe_video(source(path)), path, "zero bytes")


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_text("this is a text file with a video extension\n" * 50)
    assert_error(probe_video(source(path)), path, "not a readable video")


def test_truncated_mp4_with_index_at_the_end(tmp_path: Path) -> None:
    path = truncate(write_video(tmp_path / "t.mp4", ramp_frames(30)), 0.6)  # the moov atom is lost
    row = probe_video(source(path))
    assert_error(row, path)
    assert "not a readable video" in str(row["error"]) or "truncated" in str(row["error"])


def test_truncated_mp4_with_index_at_the_start(tmp_path: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(30)]
    path = write_video(tmp_path / "t.mp4", frames, options={"movflags": "faststart"})
    assert probe_video(source(path))["n_frames"] == 30
    truncate(path, 0.5)
    assert_error(probe_video(source(path)), path, "truncated")


def test_truncated_avi_falls_short_of_its_header_count(tmp_path: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(30)]
    path = truncate(write_video(tmp_path / "t.avi", frames, codec="mpeg4"), 0.5)
    assert_error(probe_video(source(path)), path, "truncated", "declares 30 frames")


def test_truncated_mkv_is_caught_from_the_demuxer_not_the_frame_rate(tmp_path: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(60)]
    path = truncate(write_video(tmp_path / "t.mkv", frames, fps=12), 0.3)
    assert_error(probe_video(source(path)), path, "truncated", "File ended prematurely")


def test_single_frame_video_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "one.mp4", ramp_frames(1))
    assert_error(probe_video(source(path)), path, "single frame")


def test_corrupt_jpeg_in_frame_folder(tmp_path: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(4)]
    folder = write_folder(tmp_path / "f", frames, "{:03d}.jpg")
    bad = truncate(folder / "002.jpg", 0.5)
    assert_error(probe_video(source(folder)), bad, "corrupt")
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert_error(probe_video(source(folder)), bad, "corrupt")


def test_frames_of_mixed_sizes(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", ramp_frames(3, 64, 48))
    Image.fromarray(np.zeros((50, 64, 3), np.uint8)).save(folder / "003.png")
    assert_error(probe_video(source(folder)), folder, "mixed sizes", "64x48", "64x50")


def test_single_frame_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", ramp_frames(1))
    assert_error(probe_video(source(folder)), folder, "single frame")


def test_build_manifest_keeps_going_past_bad_videos(tmp_path: Path) -> None:
    write_video(tmp_path / "good.mp4", ramp_frames(20))
    (tmp_path / "bad.mp4").write_bytes(b"")
    write_folder(tmp_path / "frames" / "a", ramp_frames(3, 16, 16))
    calls: list[tuple[int, int, str]] = []
    df = build_manifest(tmp_path, callback=lambda i, n, row: calls.append((i, n, str(row["video_id"]))))
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in MANIFEST_DTYPES.items()
    }
    assert df["video_id"].tolist() == ["bad", "frames/a", "good"]
    assert df["status"].tolist() == ["error", "ok", "ok"]
    assert df["n_frames"].tolist() == [pd.NA, 3, 20]
    assert calls == [(1, 3, "bad"), (2, 3, "frames/a"), (3, 3, "good")]


def test_empty_manifest_has_the_schema(tmp_path: Path) -> None:
    df = build_manifest(tmp_path)
    assert len(df) == 0 and list(df.columns) == list(MANIFEST_COLUMNS)
    assert str(df["n_frames"].dtype) == "Int64"


# --------------------------------------------------------------------------- decoding


def test_iter_frames_file_order_and_content(tmp_path: Path) -> None:
    frames = ramp_frames(20, 64, 48)
    path = write_video(tmp_path / "v.mp4", frames)
    decoded = list(iter_frames(path, "file"))
    assert len(decoded) == 20
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in decoded)
    means = np.array([f.mean() for f in decoded])
    np.testing.assert_allclose(means, [f.mean() for f in frames], atol=2.5)  # lossy, but close


def test_iter_frames_folder_is_exact_and_converts_to_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for _ in range(3)]
    folder = write_folder(tmp_path / "f", frames)
    Image.fromarray(frames[2][..., 0]).save(folder / "003.png")  # a greyscale frame
    decoded = list(iter_frames(folder, "frames"))
    for a, b in zip(decoded, frames, strict=False):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(decoded[3], np.repeat(frames[2][..., :1], 3, axis=2))


def test_iter_frames_resizes_while_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", ramp_frames(3, 64, 48))
    assert {f.shape for f in iter_frames(path, "file", size=(32, 24))} == {(24, 32, 3)}
    folder = write_folder(tmp_path / "f", ramp_frames(3, 64, 48))
    assert {f.shape for f in iter_frames(folder, "frames", size=(32, 24))} == {(24, 32, 3)}
    assert frame_size(path, "file") == (64, 48) == frame_size(folder, "frames")


def test_read_frames_range(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", ramp_frames(10, 8, 8))
    clip = read_frames(folder, "frames", 3, 6)
    assert clip.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(clip[:, 0, 0, 0], [8 + 6 * 3, 8 + 6 * 4, 8 + 6 * 5])
    with pytest.raises(VADInputError):
        read_frames(folder, "frames", 20, 30)


def test_iter_frames_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_text("nope")
    with pytest.raises(VADInputError, match="fake.mp4"):
        list(iter_frames(path, "file"))
    folder = write_folder(tmp_path / "f", ramp_frames(2, 8, 8), "{:03d}.png")
    (folder / "001.png").write_bytes(b"garbage")
    with pytest.raises(VADInputError, match="001.png"):
        list(iter_frames(folder, "frames"))
