"""The overlay MP4: H.264, one output frame per input frame, the box drawn where the arg-max tile is, the heat map."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest

from tests.core.live._footage import N_FRAMES, live_model, make_frames, median_rule, write_mp4
from vad_core.errors import VADInputError
from vad_core.footage.decode import iter_frames
from vad_core.live.overlay import ANOMALOUS_COLOR, NORMAL_COLOR, draw_picture, frame_clips, write_overlay
from vad_core.live.video import score_video


def decode(path) -> tuple[list[np.ndarray], str, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.codec_context.name, stream.codec_context.pix_fmt


def test_the_overlay_has_every_frame_in_h264_and_red_boxes_on_anomalous_clips(tmp_path, one_torch_thread):
    live = live_model(tmp_path / "model")
    source = write_mp4(tmp_path / "cam.mp4", make_frames(seed=9, event=True))
    first = score_video(source, live)
    live.rule = median_rule(first.clips)
    result = score_video(source, live)
    info = write_overlay(
        iter_frames(source, "file"), tmp_path / "out.mp4", result.rows, result.clips, threshold=live.rule.threshold
    )
    frames, codec, pix_fmt = decode(tmp_path / "out.mp4")
    assert len(frames) == N_FRAMES == info.n_frames and codec == "h264" and pix_fmt == "yuv420p"
    assert frames[0].shape == (info.height, info.width, 3) and info.width == 96 and info.height > 48
    original = list(iter_frames(source, "file"))
    owner = frame_clips(result.clips, N_FRAMES)
    seen = set()
    for t in (2, 13, 22, 30, 40):
        clip = result.clips.iloc[int(owner[t])]
        row = result.rows[(result.rows["clip"] == clip["clip"]) & (result.rows["tile"] == clip["tile"])].iloc[0]
        x, y, w = int(row["x"]), int(row["y"]), int(row["w"])
        edge = frames[t][y : y + 2, x + 2 : x + w - 2].reshape(-1, 3).mean(0)  # the box's top edge, 2 px
        want, other = (ANOMALOUS_COLOR, NORMAL_COLOR) if clip["anomalous"] else (NORMAL_COLOR, ANOMALOUS_COLOR)
        # H.264's limited-range yuv420p dulls pure colours a little, never into the other colour.
        assert np.abs(edge - want).max() < 60 and np.abs(edge - other).max() > 150, (t, edge, want)
        before = original[t][y : y + 2, x + 2 : x + w - 2].reshape(-1, 3).mean(0)
        assert np.abs(edge - before).max() > 60  # the pixels were changed by the drawing
        seen.add(bool(clip["anomalous"]))
    assert seen == {True, False}
    # The panel below the picture changes from frame to frame (the curve grows, the cursor moves).
    assert np.abs(frames[10][48:].astype(int) - frames[30][48:].astype(int)).max() > 100


def _flat_case(n_frames: int = 8) -> tuple[list[np.ndarray], pd.DataFrame, pd.DataFrame]:
    """Grey 64x32 frames, two 4-frame clips, three side-by-side regions; clip 1's region 2 scores high."""
    frames = [np.full((32, 64, 3), 128, np.uint8) for _ in range(n_frames)]
    xs = (0, 16, 32)
    scores = {0: (0.1, 0.2, 0.1), 1: (0.1, 0.1, 3.0)}
    rows = pd.DataFrame(
        [
            {"video_id": "v", "clip": c, "start_frame": 4 * c, "end_frame": 4 * c + 4, "tile": t, "x": x, "y": 0,
             "w": 16, "h": 32, "score": scores[c][t]}
            for c in (0, 1) for t, x in enumerate(xs)
        ]
    )  # fmt: skip
    clips = pd.DataFrame(
        {
            "video_id": "v",
            "clip": [0, 1],
            "start_frame": [0, 4],
            "end_frame": [4, 8],
            "score": [0.2, 3.0],
            "tile": [1, 2],
            "threshold": 1.0,
            "anomalous": [False, True],
        }
    )
    return frames, rows, clips


def test_the_heat_map_is_hot_where_the_region_scores_are_high(tmp_path):
    frames, rows, clips = _flat_case()
    write_overlay(frames, tmp_path / "heat.mp4", rows, clips, threshold=1.0)
    out, _, _ = decode(tmp_path / "heat.mp4")
    assert len(out) == 8
    change = np.abs(out[6][:32].astype(int) - 128).sum(axis=2)  # clip 1: region 2 (x 32..47) is hot
    inside = lambda x0, x1: float(change[4:28, x0 + 3 : x1 - 3].mean())  # noqa: E731  (away from the box edges)
    assert inside(32, 48) > inside(0, 16) + 40 and inside(32, 48) > inside(16, 32) + 40
    assert inside(48, 64) < 6  # no region there: the frame shows through (up to coding noise)
    plain_dir = tmp_path / "plain.mp4"
    write_overlay(frames, plain_dir, rows, clips, threshold=1.0, heatmap=False)
    plain, _, _ = decode(plain_dir)
    plain_change = np.abs(plain[6][4:28, 35:45].astype(int) - 128).sum(axis=2).mean()
    assert plain_change < 8 < inside(32, 48) - 30  # no heat map: only the box is drawn (and coding noise)


def test_draw_picture_outlines_the_box_exactly():
    frame = np.full((20, 30, 3), 50, np.uint8)
    out = draw_picture(frame, (5, 4, 10, 8), anomalous=True, thickness=2)
    red = np.all(out == ANOMALOUS_COLOR, axis=2)
    expected = np.zeros((20, 30), bool)
    expected[4:12, 5:15] = True
    expected[6:10, 7:13] = False  # the inside of a 2-px outline
    np.testing.assert_array_equal(red, expected)
    assert (out[~expected] == 50).all() and (frame == 50).all()  # the input is not drawn on
    green = draw_picture(frame, (25, 15, 10, 10), anomalous=False, thickness=1)  # clipped at the frame's edge
    assert np.all(green[15, 25:30] == NORMAL_COLOR) and np.all(green[15:20, 25] == NORMAL_COLOR)
    assert np.array_equal(draw_picture(frame, None, True), frame)


def test_frame_clips_takes_the_highest_covering_clip():
    clips = pd.DataFrame({"start_frame": [0, 4, 6], "end_frame": [4, 8, 10], "score": [1.0, 0.5, 0.9]})
    assert frame_clips(clips, 10).tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]


def test_a_frame_count_other_than_the_clips_is_refused_and_nothing_is_left(tmp_path):
    frames, rows, clips = _flat_case()
    with pytest.raises(VADInputError, match="gave 7 frames, its clips cover 8"):
        write_overlay(frames[:7], tmp_path / "short.mp4", rows, clips, threshold=1.0)
    with pytest.raises(VADInputError, match="more frames than its 8"):
        write_overlay(frames + frames[:1], tmp_path / "long.mp4", rows, clips, threshold=1.0)
    assert list(tmp_path.iterdir()) == []


def test_odd_frame_sizes_are_padded_to_even(tmp_path):
    frames, rows, clips = _flat_case()
    odd = [f[:31, :63] for f in frames]
    info = write_overlay(odd, tmp_path / "odd.mp4", rows.assign(w=15), clips, threshold=1.0)
    out, _, _ = decode(tmp_path / "odd.mp4")
    assert (info.width, info.height % 2, len(out)) == (64, 0, 8)
