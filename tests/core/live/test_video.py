"""`score_video`: one video's rows, scores and alerts equal the pipeline's path, for files, folders and URLs."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading

import numpy as np
import pandas as pd
import pytest

from tests.core.live._footage import (
    N_FRAMES,
    N_TILES,
    live_model,
    make_frames,
    median_rule,
    pipeline_rows,
    write_folder,
    write_mp4,
)
from vad_core.errors import VADInputError
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.footage import VideoSource
from vad_core.footage.clips import ClipConfig
from vad_core.live import ALERT_COLUMNS, LiveDetector
from vad_core.live.detector import CLIP_COLUMNS
from vad_core.live.video import (
    TIMING_KEYS,
    build_backbone,
    clip_config_from_spec,
    is_url,
    local_video,
    redact,
    region_config_from_spec,
    score_video,
)


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    return tmp_path_factory.mktemp("live_model")


@pytest.fixture(scope="module")
def event_mp4(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("video") / "cam.mp4", make_frames(seed=9, event=True))


def test_rows_and_scores_equal_the_pipeline_path(model_root, event_mp4, one_torch_thread):
    live = live_model(model_root)
    result = score_video(event_mp4, live, video_id="test/cam")
    # The pipeline: extract_all into a store, read the table back, score the rows with the live detector.
    rows, x, _ = pipeline_rows(VideoSource("test/cam", event_mp4, "file"), PixelStatsBackbone())
    expected = live.score(rows, x)
    pd.testing.assert_frame_equal(result.rows.drop(columns="score"), rows)
    np.testing.assert_array_equal(result.rows["score"].to_numpy(), expected.rows["score"].to_numpy())
    pd.testing.assert_frame_equal(result.clips, expected.clips)
    assert list(result.clips.columns) == CLIP_COLUMNS and len(result.clips) == 11  # 10 clips + the one moved back
    # Frames: every frame once, the max of the clips covering it (frames 38..39 lie in clips 9 and 10).
    frames = result.frames
    assert frames["frame"].tolist() == list(range(N_FRAMES)) and (frames["video_id"] == "test/cam").all()
    by_clip = expected.clips.set_index("clip")["score"]
    assert frames["score"].iloc[5] == by_clip[1]
    assert frames["score"].iloc[38] == max(by_clip[9], by_clip[10])
    assert frames["score"].iloc[41] == by_clip[10]
    assert set(TIMING_KEYS) <= set(result.timings) and all(v >= 0 for v in result.timings.values())
    assert result.timings["backbone"] > 0 and result.timings["total"] >= result.timings["extract"]


def test_the_video_id_is_what_the_row_keys_hash(model_root, event_mp4, one_torch_thread):
    live = live_model(model_root)
    default = score_video(event_mp4, live)
    assert (default.rows["video_id"] == "cam").all()  # the file's stem
    renamed = score_video(event_mp4, live, video_id="other")
    np.testing.assert_array_equal(
        default.rows.drop(columns=["video_id", "score"]), renamed.rows.drop(columns=["video_id", "score"])
    )
    assert not np.array_equal(default.rows["score"], renamed.rows["score"])  # other noise draws


def test_alerts_are_the_runs_of_anomalous_clips_with_the_peak_tile_box(model_root, event_mp4, one_torch_thread):
    live = live_model(model_root)
    first = score_video(event_mp4, live)
    live.rule = median_rule(first.clips)
    result = score_video(event_mp4, live)
    clips = result.clips
    flagged = clips.loc[clips["anomalous"], "clip"].tolist()
    assert 0 < len(flagged) < len(clips)
    # Independent runs of consecutive flagged clip indices.
    runs: list[list[int]] = []
    for c in flagged:
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    alerts = result.alerts
    assert list(alerts.columns) == ALERT_COLUMNS and len(alerts) == len(runs)
    by_clip = clips.set_index("clip")
    for (_, alert), run in zip(alerts.iterrows(), runs, strict=True):
        assert (alert["first_clip"], alert["last_clip"]) == (run[0], run[-1])
        assert alert["first_frame"] == by_clip.loc[run[0], "start_frame"]
        assert alert["last_frame"] == by_clip.loc[run[-1], "end_frame"] - 1
        peak = max(run, key=lambda c: by_clip.loc[c, "score"])
        assert alert["peak_clip"] == peak and alert["peak_tile"] == by_clip.loc[peak, "tile"]
        tile_row = result.rows[(result.rows["clip"] == peak) & (result.rows["tile"] == alert["peak_tile"])].iloc[0]
        box = (alert["box_x"], alert["box_y"], alert["box_w"], alert["box_h"])
        assert box == (tile_row["x"], tile_row["y"], tile_row["w"], tile_row["h"])
        assert alert["model_version"] == "3" and alert["threshold"] == live.rule.threshold
    # The frames inside alerts are exactly the anomalous frames.
    inside = np.zeros(N_FRAMES, bool)
    for _, alert in alerts.iterrows():
        inside[alert["first_frame"] : alert["last_frame"] + 1] = True
    np.testing.assert_array_equal(result.frames["anomalous"].to_numpy(), inside)


def test_a_frame_folder_scores_as_the_pipeline_scores_it(model_root, tmp_path, one_torch_thread):
    live = live_model(model_root)
    folder = write_folder(tmp_path / "frames" / "07", make_frames(seed=5, event=True))
    result = score_video(folder, live)
    assert (result.rows["video_id"] == "07").all()
    rows, x, _ = pipeline_rows(VideoSource("07", folder, "frames"), PixelStatsBackbone())
    np.testing.assert_array_equal(result.rows["score"], live.score(rows, x).rows["score"])
    progress: list[tuple[int, int]] = []
    score_video(folder, live, progress=lambda done, total: progress.append((done, total)))
    assert progress and progress[-1] == (11, 11) and all(t == 11 for _, t in progress)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (a free port), for URL sources."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_is_copied_packet_for_packet_and_scored_like_the_file(model_root, event_mp4, http_root, one_torch_thread):
    live = live_model(model_root)
    folder, base = http_root
    shutil.copy(event_mp4, folder / "cam.mp4")
    url = f"{base}/cam.mp4"
    assert is_url(url) and is_url("rtsp://127.0.0.1:8554/cam") and not is_url(event_mp4)
    assert not is_url(f"file://{event_mp4}")
    with local_video(f"file://{event_mp4}") as video:
        assert (video.path, video.kind, video.video_id) == (event_mp4, "file", "cam")
    assert redact("rtsp://op:s3cret@10.0.0.7:554/cam") == "rtsp://op:***@10.0.0.7:554/cam"
    with pytest.raises(VADInputError) as err:
        score_video("rtsp://op:s3cret@127.0.0.1:9/cam", live)
    assert "s3cret" not in str(err.value) and "op:***@127.0.0.1:9" in str(err.value)
    with local_video(url) as video:
        assert video.video_id == "cam" and video.kind == "file" and video.path.suffix == ".mkv"
        copied = video.path
        assert copied.is_file()
    assert not copied.exists()  # the temporary copy is removed
    from_url = score_video(url, live)
    from_file = score_video(event_mp4, live)
    pd.testing.assert_frame_equal(from_url.rows, from_file.rows)
    pd.testing.assert_frame_equal(from_url.alerts, from_file.alerts)
    with pytest.raises(VADInputError, match="cannot be opened"):
        score_video(f"{base}/missing.mp4", live)


def test_spec_configs_round_trip_and_bad_specs_are_named(model_root):
    live = live_model(model_root)
    spec = live.feature_spec
    assert clip_config_from_spec(spec) == ClipConfig(clip_len=4, stride=4, short_side=48, tile_size=32)
    assert region_config_from_spec(spec).key() == spec["region_config"]
    assert region_config_from_spec({k: v for k, v in spec.items() if k != "region_config"}).backbone_pass == "crop"
    assert build_backbone(spec).name == "pixelstats-2x4"
    with pytest.raises(VADInputError, match="no 'clip_config'"):
        clip_config_from_spec({"backbone": "pixelstats"})
    with pytest.raises(VADInputError, match="not a ClipConfig"):
        clip_config_from_spec({"clip_config": json.dumps({"clip_len": 4, "colour": 1})})
    with pytest.raises(VADInputError, match="weights_sha256 .* differs"):
        build_backbone({**spec, "weights_sha256": "0" * 64})
    with pytest.raises(VADInputError, match="names no backbone"):
        build_backbone({})


def test_bad_inputs_get_one_clear_error(model_root, tmp_path, one_torch_thread):
    live = live_model(model_root)
    with pytest.raises(VADInputError, match="no such video file or frame folder"):
        score_video(tmp_path / "missing.mp4", live)
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 50)
    with pytest.raises(VADInputError, match="junk.mp4"):
        score_video(tmp_path / "junk.mp4", live)
    # A frame size that gives other tiles than the detector knows.
    wide = write_mp4(tmp_path / "wide.mp4", np.zeros((8, 48, 160, 3), np.uint8))
    with pytest.raises(VADInputError, match=f"the detector knows {N_TILES}"):
        score_video(wide, live)
    other = LiveDetector(live.detector, live.rule, {**live.feature_spec, "dim": "99"}, live.info)
    with pytest.raises(VADInputError, match="dim 24 differs"):
        score_video(tmp_path / "wide.mp4", other)
