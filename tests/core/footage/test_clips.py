"""Clips and tiles: the clip rule, the tile layout, pixel-exact clip contents, the prefetcher."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vad_core.footage.clips as clips_mod
from vad_core.errors import VADInputError
from vad_core.footage.clips import (
    ClipConfig,
    clip_intervals,
    clip_starts,
    iter_clips,
    prefetch,
    tile_boxes,
    tile_layout,
)


def coded_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Frame i, pixel (y, x) = (i, x mod 251, y mod 241): every pixel tells where it came from."""
    yy, xx = np.mgrid[0:height, 0:width]
    return [np.stack([np.full_like(xx, i), xx % 251, yy % 241], axis=-1).astype(np.uint8) for i in range(n)]


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")  # lossless, so contents compare exactly
    return folder


# --------------------------------------------------------------------------- clip rule


@pytest.mark.parametrize(
    "n,clip_len,stride,expected",
    [
        (160, 16, 16, list(range(0, 145, 16))),
        (170, 16, 16, list(range(0, 145, 16)) + [154]),  # tail clip ends at the last frame
        (16, 16, 16, [0]),
        (10, 16, 16, [0]),  # shorter than a clip: one padded clip
        (40, 16, 8, [0, 8, 16, 24]),
        (41, 16, 8, [0, 8, 16, 24, 25]),
        (17, 16, 1, [0, 1]),
    ],
)
def test_clip_starts(n: int, clip_len: int, stride: int, expected: list[int]) -> None:
    assert clip_starts(n, clip_len, stride) == expected


def test_every_frame_is_covered_and_clips_stay_inside() -> None:
    for n in range(1, 80):
        for clip_len, stride in [(16, 16), (16, 5), (8, 8), (16, 1)]:
            intervals = clip_intervals(n, clip_len, stride)
            covered = np.zeros(n, bool)
            for s, e in intervals:
                assert 0 <= s < e <= n and e - s == min(clip_len, n)
                covered[s:e] = True
            assert covered.all(), (n, clip_len, stride)


def test_clip_rule_rejects_bad_arguments() -> None:
    with pytest.raises(VADInputError):
        clip_starts(0, 16, 16)
    with pytest.raises(VADInputError):
        clip_starts(10, 16, 17)
    with pytest.raises(VADInputError, match="stride"):
        ClipConfig(stride=32)
    with pytest.raises(VADInputError, match="tiling"):
        ClipConfig(tiling="crop")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tiles


def test_ped2_layout_matches_method_md() -> None:
    layout = tile_layout(360, 240, ClipConfig())
    assert layout.scaled_size == (360, 240) and layout.scale_x == layout.scale_y == 1.0
    # method.md: rows 8-231, columns starting at 0, 68 and 136
    assert layout.boxes == [(0, 8, 224, 224), (68, 8, 224, 224), (136, 8, 224, 224)]
    assert layout.boxes_scaled == layout.boxes


def test_plain_fewest_covering_tiles_without_overlap_floor() -> None:
    assert tile_boxes(360, 240, ClipConfig(min_overlap=0.0)) == [(0, 8, 224, 224), (136, 8, 224, 224)]


def test_demo_and_hd_layouts() -> None:
    assert tile_boxes(320, 240) == [(0, 8, 224, 224), (96, 8, 224, 224)]
    hd = tile_layout(1920, 1080)
    # short side 1080 -> 240: scale 2/9, width 426.67 -> 427; 427 - 224 = 203 > 112 -> 3 tiles
    assert hd.scaled_size == (427, 240)
    assert hd.boxes_scaled == [(0, 8, 224, 224), (102, 8, 224, 224), (203, 8, 224, 224)]
    fx, fy = 1920 / 427, 1080 / 240
    assert hd.boxes == [(round(x * fx), round(8 * fy), round(224 * fx), round(224 * fy)) for x in (0, 102, 203)]
    assert round(8 * fy) == 36 and round(224 * fy) == 1008
    assert hd.boxes[2][0] + hd.boxes[2][2] == 1920  # the last tile ends at the right edge


def test_small_frames_are_scaled_up_to_one_tile_and_portrait_tiles_run_down() -> None:
    small = tile_layout(160, 120)
    assert small.scaled_size == (299, 224)  # 160 * 224 / 120 = 298.7
    assert small.boxes_scaled == [(0, 0, 224, 224), (75, 0, 224, 224)]
    portrait = tile_layout(240, 360)
    assert portrait.boxes_scaled == [(8, 0, 224, 224), (8, 68, 224, 224), (8, 136, 224, 224)]


def test_resize_tiling_is_one_squeezed_tile() -> None:
    layout = tile_layout(360, 240, ClipConfig(tiling="resize"))
    assert layout.scaled_size == (224, 224)
    assert layout.boxes == [(0, 0, 360, 240)] and layout.boxes_scaled == [(0, 0, 224, 224)]


@pytest.mark.parametrize(
    "size", [(360, 240), (320, 240), (640, 480), (1280, 720), (1920, 1080), (480, 640), (200, 150)]
)
def test_tiles_cover_the_scaled_frame_but_the_allowed_crop(size: tuple[int, int]) -> None:
    cfg = ClipConfig()
    layout = tile_layout(*size, cfg)
    sw, sh = layout.scaled_size
    assert min(sw, sh) == max(cfg.tile_size, min(cfg.short_side, min(size)))
    covered = np.zeros((sh, sw), bool)
    for x, y, w, h in layout.boxes_scaled:
        assert 0 <= x and x + w <= sw and 0 <= y and y + h <= sh
        covered[y : y + h, x : x + w] = True
    m = (cfg.max_crop + 1) // 2  # a centred single tile may drop up to max_crop/2 on each side
    assert covered[m : sh - m, m : sw - m].all()


# --------------------------------------------------------------------------- iter_clips


def test_iter_clips_contents_are_exact_tiles_of_the_right_frames(tmp_path: Path) -> None:
    frames = coded_frames(40, 360, 240)
    folder = write_folder(tmp_path / "v", frames)
    batches = list(iter_clips(folder, "frames", 40, ClipConfig()))
    # starts 0, 16 and the tail clip 24 (overlapping); three tiles each
    assert [(b.clip, b.start_frame, b.end_frame, b.tile) for b in batches] == [
        (c, s, s + 16, t) for c, s in enumerate([0, 16, 24]) for t in range(3)
    ]
    video = np.stack(frames)
    for b in batches:
        x, y, w, h = b.box
        assert b.frames.shape == (16, 224, 224, 3) and b.frames.dtype == np.uint8
        np.testing.assert_array_equal(b.frames, video[b.start_frame : b.end_frame, y : y + h, x : x + w])


def test_short_video_is_padded_with_its_last_frame(tmp_path: Path) -> None:
    frames = coded_frames(10, 320, 240)
    folder = write_folder(tmp_path / "v", frames)
    batches = list(iter_clips(folder, "frames", 10, ClipConfig()))
    assert [(b.start_frame, b.end_frame) for b in batches] == [(0, 10), (0, 10)]
    np.testing.assert_array_equal(batches[0].frames[:, 0, 0, 0], list(range(10)) + [9] * 6)


def test_overlapping_stride_and_decoding_each_frame_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = coded_frames(30, 320, 240)
    folder = write_folder(tmp_path / "v", frames)
    decoded = []
    real = clips_mod.iter_frames

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        for f in real(*args, **kwargs):
            decoded.append(int(f[0, 0, 0]))
            yield f

    monkeypatch.setattr(clips_mod, "iter_frames", counting)
    batches = list(iter_clips(folder, "frames", 30, ClipConfig(stride=4)))
    assert decoded == list(range(30))
    starts = sorted({b.start_frame for b in batches})
    assert starts == [0, 4, 8, 12, 14]
    for b in batches:
        np.testing.assert_array_equal(b.frames[:, 0, 0, 0], np.arange(b.start_frame, b.start_frame + 16))


def test_resize_tiling_squeezes_each_frame(tmp_path: Path) -> None:
    frames = coded_frames(16, 360, 240)
    folder = write_folder(tmp_path / "v", frames)
    (batch,) = list(iter_clips(folder, "frames", 16, ClipConfig(tiling="resize")))
    expected = np.asarray(Image.fromarray(frames[5]).resize((224, 224), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(batch.frames[5], expected)
    assert batch.box == (0, 0, 360, 240)


def test_scaled_video_file(tmp_path: Path) -> None:
    import av

    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 640, 480, "yuv420p"
        for i in range(20):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((480, 640, 3), 10 * i, np.uint8), format="rgb24")))
        c.mux(s.encode())
    batches = list(iter_clips(path, "file", 20))
    # 640x480 -> 320x240: two tiles at x = 0, 96 (scaled) = 0, 192 (original)
    assert [(b.start_frame, b.tile, b.box) for b in batches] == [
        (0, 0, (0, 16, 448, 448)),
        (0, 1, (192, 16, 448, 448)),
        (4, 0, (0, 16, 448, 448)),
        (4, 1, (192, 16, 448, 448)),
    ]
    np.testing.assert_allclose(batches[2].frames.mean(axis=(1, 2, 3)), 10 * np.arange(4, 20), atol=2.5)


def test_frame_count_mismatch_is_an_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", coded_frames(20, 240, 240))
    with pytest.raises(VADInputError, match="decoded 20 frames, expected 21"):
        list(iter_clips(folder, "frames", 21))
    with pytest.raises(VADInputError, match="more than the expected 19"):
        list(iter_clips(folder, "frames", 19))


# --------------------------------------------------------------------------- prefetch


def test_prefetch_yields_everything_in_order() -> None:
    assert list(prefetch(iter(range(100)), max_queue=3)) == list(range(100))


def test_prefetch_reraises_producer_errors_after_the_good_items() -> None:
    def producer():  # type: ignore[no-untyped-def]
        yield from range(3)
        raise VADInputError("frame 3 is corrupt")

    got = []
    with pytest.raises(VADInputError, match="frame 3 is corrupt"):
        for item in prefetch(producer(), max_queue=1):
            got.append(item)
    assert got == [0, 1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    produced = []

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = prefetch(endless(), max_queue=2)
    assert [next(gen) for _ in range(5)] == list(range(5))
    gen.close()
    assert not any(t.name == "vad-prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 5 + 2 + 2  # read ahead by at most the queue and the item in hand
