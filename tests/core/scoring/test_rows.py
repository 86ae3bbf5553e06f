"""Row tables to clips: stable row keys, max over tiles with the arg-max tile, batch decisions."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from vad_core.errors import VADInputError
from vad_core.scoring.rows import clip_scores, decide_clips, row_keys_for, score_summary


def test_row_keys_are_a_stable_hash_of_video_clip_tile() -> None:
    df = pd.DataFrame({"video_id": ["a", "a", "b", "a"], "clip": [0, 0, 0, 1], "tile": [0, 1, 0, 0]})
    keys = row_keys_for(df)
    assert keys.dtype == np.int64 and len(set(keys.tolist())) == 4
    # independent of row order and of other rows
    np.testing.assert_array_equal(row_keys_for(df.iloc[::-1]), keys[::-1])
    np.testing.assert_array_equal(row_keys_for(df.iloc[[2]]), keys[[2]])
    # the documented construction, computed here with Python integers
    m64, g = (1 << 64) - 1, 0x9E3779B97F4A7C15

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m64
        return z ^ (z >> 31)

    h = int.from_bytes(hashlib.blake2b(b"b", digest_size=8).digest(), "little")
    k = mix((mix((h + 1 * g) & m64) + 1 * g) & m64)
    assert int(keys[2]) == (k - (1 << 64) if k >= 1 << 63 else k)  # uint64 bits read as int64
    with pytest.raises(VADInputError, match="clip"):
        row_keys_for(df.drop(columns=["clip"]))


def test_clip_scores_take_max_over_tiles_and_keep_the_argmax_tile() -> None:
    rows = pd.DataFrame(
        {
            "video_id": ["v2", "v1", "v1", "v1", "v1", "v1", "v2"],
            "clip": [0, 1, 1, 0, 0, 0, 0],
            "start_frame": [0, 16, 16, 0, 0, 0, 0],
            "end_frame": [16, 32, 32, 16, 16, 16, 16],
            "tile": [1, 0, 1, 0, 1, 2, 0],
            "score": [0.5, 2.0, 2.0, 0.1, 0.9, 0.3, 0.7],
        }
    )
    out = clip_scores(rows)
    expect = pd.DataFrame(
        {
            "video_id": ["v1", "v1", "v2"],
            "clip": [0, 1, 0],
            "start_frame": [0, 16, 0],
            "end_frame": [16, 32, 16],
            "score": [0.9, 2.0, 0.7],
            "tile": [1, 0, 0],  # v1 clip 1: a tie goes to the lower tile
        }
    )
    pd.testing.assert_frame_equal(out, expect)
    with pytest.raises(VADInputError, match="not finite"):
        clip_scores(rows.assign(score=[np.nan] + [1.0] * 6))
    with pytest.raises(VADInputError, match="empty"):
        clip_scores(rows.iloc[:0])
    with pytest.raises(VADInputError, match="tile"):
        clip_scores(rows.drop(columns=["tile"]))


def test_decide_clips_orders_by_video_and_clip_then_thresholds_each_batch() -> None:
    clips = pd.DataFrame(
        {
            "video_id": ["b", "a", "a", "a"],
            "clip": [0, 1, 0, 2],
            "start_frame": [0, 16, 0, 32],
            "end_frame": [16, 32, 16, 48],
            "score": [5.0, 1.0, 3.0, 1.0],
            "tile": [0, 0, 0, 0],
        }
    )
    out = decide_clips(clips, k=0.5, batch_size=2)
    assert list(zip(out["video_id"], out["clip"], strict=False)) == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    # batches of 2 in that order: [3, 1] -> 2 + 0.5 * 1 = 2.5; [1, 5] -> 3 + 0.5 * 2 = 4
    np.testing.assert_array_equal(out["batch"], [0, 0, 1, 1])
    np.testing.assert_allclose(out["threshold"], [2.5, 2.5, 4.0, 4.0])
    assert out["anomalous"].tolist() == [True, False, False, True]
    summary = score_summary(out)
    assert summary["clips"] == 4 and summary["anomalous_clips"] == 2 and summary["score_max"] == 5.0
