"""Stream scoring: per-clip features equal extraction's, drops when behind, reconnects with back-off, clean stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from tests.core.live._streams import file_answer, file_features, live_model, scene, video
from vad_core.errors import VADInputError
from vad_core.features.backbones import load_backbone
from vad_core.features.regions import RegionConfig
from vad_core.footage.clips import ClipConfig
from vad_core.live.featurize import ClipFeaturizer
from vad_core.live.source import Frame, FrameReader, ReaderConfig, open_options
from vad_core.live.stream import score_stream

KEYS = ["clip", "start_frame", "end_frame", "tile", "x", "y", "w", "h"]


def _stream_rows(path, regions: RegionConfig, clip_config: ClipConfig = ClipConfig()):
    feat = ClipFeaturizer(load_backbone("pixelstats"), clip_config, regions, video_id="cam")
    rows, feats = [], []
    with FrameReader(str(path), feat.size_for, ReaderConfig(queue=4)) as reader:
        clips = [c for frame in reader for c in feat.add(frame)]
        assert reader.stats.dropped == 0 and reader.stats.ended == "end"  # a file waits, it never drops
    for clip in clips + feat.close():
        r, f = feat.embed(clip)
        rows.append(r)
        feats.append(f)
    import pandas as pd

    return pd.concat(rows, ignore_index=True), np.concatenate(feats)


@pytest.mark.parametrize("regions", [RegionConfig(), RegionConfig(backbone_pass="frame")], ids=["crop", "frame"])
@pytest.mark.parametrize("n_frames", [125, 11], ids=["tail-clip", "short-padded"])
def test_per_clip_rows_equal_extract_features(tmp_path, regions, n_frames):
    path = video(tmp_path, n_frames)
    expected_rows, expected_x = file_features(path, "cam", regions)
    rows, x = _stream_rows(path, regions)
    # 125 frames: clips at 0, 16, ..., 96 and one more ending at the last frame (start 109); 11: one padded clip
    want_starts = [0, 16, 32, 48, 64, 80, 96, 109] if n_frames == 125 else [0]
    assert sorted(set(rows["start_frame"])) == want_starts
    assert rows[KEYS].to_numpy().tolist() == expected_rows[KEYS].to_numpy().tolist()
    assert (rows["video_id"] == "cam").all()
    np.testing.assert_array_equal(x, expected_x)


def _frames(pixels: np.ndarray, pause: float = 0.0) -> Iterator[av.VideoFrame]:
    for p in pixels:
        if pause:
            time.sleep(pause)
        yield av.VideoFrame.from_ndarray(p, format="rgb24")


def _frame(index: int, segment: int = 0) -> Frame:
    return Frame(index, segment, float(index), np.full((240, 360, 3), index % 250, np.uint8))


def test_a_cut_stream_is_clipped_piece_by_piece():
    feat = ClipFeaturizer(load_backbone("pixelstats"), ClipConfig(clip_len=4, stride=2), video_id="cam")
    feat.size_for(360, 240)
    # Frames 0-6, a drop (7, 8 lost), 9-11, then a reconnect (segment 1) from 12 to 13.
    frames = [_frame(i) for i in range(7)] + [_frame(i) for i in (9, 10, 11)] + [_frame(i, 1) for i in (12, 13)]
    clips = [c for f in frames for c in feat.add(f)] + feat.close()
    # Piece 0-6: clips_starts(7, 4, 2) = [0, 2, 3]; piece 9-11 (3 frames < 4): one padded clip; piece 12-13 too.
    assert [(c.clip, c.start_frame, c.end_frame) for c in clips] == [
        (0, 0, 4),
        (1, 2, 6),
        (2, 3, 7),
        (3, 9, 12),
        (4, 12, 14),
    ]
    assert feat.cuts == 2
    padded = clips[3].frames
    assert padded.shape == (4, 224 + 16, 360, 3)  # scale 1: the whole frame, clip_len frames
    assert [int(f[0, 0, 0]) for f in padded] == [9, 10, 11, 11]  # the last real frame repeats
    assert clips[1].last_arrival == 5.0
    with pytest.raises(VADInputError, match="frame size changed"):
        feat.size_for(320, 240)


def test_the_queue_drops_frames_with_a_warning_when_scoring_is_behind(caplog):
    pixels = np.zeros((60, 24, 32, 3), np.uint8)
    config = ReaderConfig(queue=4, reconnect_on_end=False)
    got = []
    with caplog.at_level(logging.WARNING, logger="vad_core.live.source"):
        with FrameReader(
            "rtsp://camera.invalid/live", lambda w, h: (w, h), config, opener=lambda: _frames(pixels)
        ) as r:
            for frame in r:
                got.append(frame.index)
                time.sleep(0.02)  # the slow scorer
    assert r.stats.decoded == 60 and r.stats.dropped > 0
    assert len(got) + r.stats.dropped == 60  # each frame either reached the scorer or was counted as dropped
    assert got == sorted(got) and got[:4] == [0, 1, 2, 3]
    assert any("dropping frames" in m for m in caplog.messages)
    assert r.stats.drop_events >= 1


def test_a_slow_scorer_behind_a_live_source_drops_but_no_clip_spans_a_drop(tmp_path):
    path = video(tmp_path)
    live = live_model(path, "cam")
    pixels = scene(125)
    inner = load_backbone("pixelstats")

    class Slow:
        name, dim, weights_sha256, map_stride = inner.name, inner.dim, inner.weights_sha256, inner.map_stride

        def embed(self, clips, resize=True):
            time.sleep(0.3)
            return inner.embed(clips, resize)

    config = ReaderConfig(queue=8, reconnect_on_end=False)
    result = score_stream(
        "rtsp://camera.invalid/cam", live, reader=config, backbone=Slow(), opener=lambda: _frames(pixels, 0.005)
    )
    stats = result.stats
    assert stats["frames"] == 125 and stats["frames_dropped"] > 0 and stats["cuts"] >= 1
    clips = result.clips
    assert (clips["end_frame"] - clips["start_frame"] <= 16).all()
    # Every clip's frames are consecutive frames that reached the scorer: none of its frames was dropped.
    assert clips["clip"].tolist() == list(range(len(clips)))


class _Flaky:
    """An opener that fails `failures` times, then gives the frames."""

    def __init__(self, failures: int, pixels: np.ndarray) -> None:
        self.failures, self.pixels, self.calls = failures, pixels, 0

    def __call__(self) -> Iterator[av.VideoFrame]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError(f"connection refused (try {self.calls})")
        return _frames(self.pixels)


def test_reconnects_with_exponential_back_off_then_scores(caplog):
    pixels = np.zeros((20, 24, 32, 3), np.uint8)
    opener = _Flaky(3, pixels)
    config = ReaderConfig(reconnect_attempts=4, backoff_s=0.01, backoff_max_s=0.03, reconnect_on_end=False)
    with caplog.at_level(logging.WARNING, logger="vad_core.live.source"):
        with FrameReader("rtsp://camera.invalid/live", lambda w, h: (w, h), config, opener=opener) as r:
            got = [f.index for f in r]
    assert got == list(range(20)) and opener.calls == 4 and r.stats.reconnects == 3
    waits = [m for m in caplog.messages if "reconnecting in" in m]
    assert [w.split("reconnecting in ")[1].split(" s")[0] for w in waits] == ["0.0", "0.0", "0.0"]  # 10, 20, 30 ms
    assert [w.split("(attempt ")[1] for w in waits] == ["1 of 4)", "2 of 4)", "3 of 4)"]
    assert "connection refused (try 1)" in waits[0]


def test_back_off_doubles_and_gives_up_after_the_attempts():
    opener = _Flaky(10, np.zeros((2, 8, 8, 3), np.uint8))
    config = ReaderConfig(reconnect_attempts=2, backoff_s=0.05, backoff_max_s=0.08)
    t0 = time.monotonic()
    with pytest.raises(VADInputError, match=r"not back after 2 reconnect attempts \(last: ConnectionRefusedError"):
        with FrameReader("rtsp://camera.invalid/live", lambda w, h: (w, h), config, opener=opener) as r:
            list(r)
    assert opener.calls == 3 and r.stats.reconnects == 2
    assert time.monotonic() - t0 >= 0.05 + 0.08 - 0.01  # waited 0.05 then min(0.1, 0.08)


def test_a_stream_that_comes_back_is_a_new_segment():
    pixels = np.zeros((5, 8, 8, 3), np.uint8)
    calls = []

    def opener() -> Iterator[av.VideoFrame]:
        calls.append(1)
        if len(calls) > 2:
            raise ConnectionResetError("gone")
        return _frames(pixels)

    config = ReaderConfig(reconnect_attempts=1, backoff_s=0.0)  # a client URL: its end is a lost source
    with pytest.raises(VADInputError, match="not back after 1 reconnect"):
        with FrameReader("rtsp://camera.invalid/live", lambda w, h: (w, h), config, opener=opener) as r:
            seen = []
            for f in r:
                seen.append((f.index, f.segment))
    assert seen == [(i, 0) for i in range(5)] + [(i, 1) for i in range(5, 10)] and r.stats.segments == 2


def test_stop_event_ends_reading_cleanly():
    def forever() -> Iterator[av.VideoFrame]:
        while True:
            time.sleep(0.005)
            yield av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")

    stop = threading.Event()
    reader = FrameReader("udp://127.0.0.1:9/x", lambda w, h: (w, h), ReaderConfig(queue=2), opener=forever, stop=stop)
    with reader:
        n = 0
        for _ in reader:
            n += 1
            if n == 10:
                stop.set()
    assert n == 10 and not reader._thread.is_alive() and reader.stats.ended == "stopped"


def test_score_stream_of_a_file_equals_the_file_path_and_stops_cleanly(tmp_path):
    path = video(tmp_path)
    live = live_model(path, "cam")
    clips, alerts = file_answer(path, live, "cam")
    assert len(alerts) >= 2  # the two bright intervals
    seen: list[dict] = []
    result = score_stream(str(path), live, video_id="cam", on_alert=seen.append)
    np.testing.assert_allclose(result.clips["score"], clips["score"], rtol=0, atol=1e-9)
    assert result.clips[["clip", "start_frame", "end_frame", "tile", "anomalous"]].equals(
        clips[["clip", "start_frame", "end_frame", "tile", "anomalous"]]
    )
    assert result.alerts.equals(alerts) and len(seen) == len(alerts)
    assert (result.clips["latency_s"] >= 0).all() and result.stats["ended"] == "end"
    # A stop set after the second clip: two clips, and the reader is gone.
    stop = threading.Event()
    part = score_stream(str(path), live, video_id="cam", stop=stop, on_clip=lambda c: c["clip"] == 1 and stop.set())
    assert len(part.clips) == 2 and part.stats["ended"] == "stopped"
    assert len(score_stream(str(path), live, video_id="cam", max_clips=3).clips) == 3


def test_open_options_per_source():
    cfg = ReaderConfig(listen_timeout_s=12, open_timeout_s=5, read_timeout_s=7)
    assert open_options("rtsp://cam/live", cfg) == ({"rtsp_transport": "tcp"}, (5, 7))
    listen = ReaderConfig(listen=True, listen_timeout_s=12, open_timeout_s=5)
    assert open_options("rtsp://0.0.0.0:8554/live", listen) == (
        {"rtsp_flags": "listen", "listen_timeout": "12"},
        (17, 10.0),
    )
    with pytest.raises(VADInputError, match="listening needs an rtsp"):
        open_options("udp://0.0.0.0:1234", listen)
    with pytest.raises(VADInputError, match="no such video file"):
        FrameReader("/nonexistent/cam.mp4", lambda w, h: (w, h))


def test_a_few_rows_score_with_stacked_draws_as_one_draw_at_a_time(one_torch_thread):
    from tests.core._synthetic import mixture, trained
    from vad_core.diffusion.reconstruction import ScoreConfig, score_rows

    _, result = trained("tiny")
    x = mixture(seed=3, n_clips=4).features[:5]
    keys = np.arange(100, 105, dtype=np.int64)
    stacked = score_rows(result.denoiser, x, ScoreConfig(n_draws=16), row_keys=keys)  # 5 rows, 16 draws per pass
    one_by_one = score_rows(result.denoiser, x, ScoreConfig(n_draws=16, batch_rows=8), row_keys=keys)  # 5 >= 8 // 2
    np.testing.assert_allclose(stacked, one_by_one, rtol=1e-12, atol=0)
    # A pass of at most batch_rows rows: 5 rows x 3 draws = 15 <= 16, in passes of 3, 3, 3, 3, 3, 1 draws.
    capped = score_rows(result.denoiser, x, ScoreConfig(n_draws=16, batch_rows=16), row_keys=keys)
    np.testing.assert_allclose(capped, one_by_one, rtol=1e-12, atol=0)
