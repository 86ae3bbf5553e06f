"""The live detector: training-batch decision rule, scores equal to the batch path, save/load, alerts."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch

from tests.core._synthetic import TINY, mixture
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector
from vad_core.errors import VADInputError
from vad_core.live import DecisionRule, LiveDetector, alert_intervals, boxes_from_rows, load_live_detector
from vad_core.live.detector import DETECTOR_FILE, LIVE_FILE, save_live_detector
from vad_core.scoring.rows import clip_scores, row_keys_for

RECIPE = DetectorRecipe(name="test", screen_folds=2, refit_seeds=1, n_draws=2, max_share=0.3)


@cache
def _live() -> tuple[LiveDetector, pd.DataFrame, np.ndarray]:
    torch.set_num_threads(1)
    data = mixture(n_clips=150)
    rows = data.rows
    detector = fit_detector(
        data.features,
        rows["video_id"].to_numpy(),
        replace(TINY, n_tiles=3),
        RECIPE,
        tiles=rows["tile"].to_numpy(np.int64),
    ).detector
    fitted, _ = detector.score_fitted(
        data.features, rows["video_id"].to_numpy(), rows["tile"].to_numpy(np.int64), row_keys_for(rows)
    )
    train_clips = clip_scores(rows.assign(score=fitted))["score"]
    live = LiveDetector(detector, DecisionRule.from_clip_scores(train_clips, k=1.0), {"backbone": "test"})
    return live, rows, data.features


def test_rule_is_mean_plus_k_std_of_the_training_clips():
    rule = DecisionRule.from_clip_scores([1.0, 2.0, 3.0, 6.0], k=2.0)
    # mean 3, population std sqrt(((4 + 1 + 0 + 9) / 4)) = sqrt(3.5)
    assert rule.threshold == pytest.approx(3.0 + 2.0 * np.sqrt(3.5))
    assert rule.decide([3.0, 6.0, 7.0]).tolist() == [False, False, True]
    assert DecisionRule.from_clip_scores([2.0, 2.0]).decide([5.0]).tolist() == [False]  # no spread, no flag
    assert DecisionRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(VADInputError, match="not finite"):
        DecisionRule.from_clip_scores([1.0, np.nan])
    with pytest.raises(VADInputError, match="no training clip"):
        DecisionRule.from_clip_scores([])


def test_new_footage_scores_equal_the_batch_paths_and_clips_are_decided_alone(one_torch_thread):
    live, rows, x = _live()
    # Rows of a video the detector never saw: rename one video.
    new_rows = rows[rows["video_id"] == "video_00"].assign(video_id="camera_7")
    new_x = x[new_rows.index.to_numpy()]
    scored = live.score(new_rows, new_x)
    batch, unseen = live.detector.score_fitted(
        new_x, new_rows["video_id"].to_numpy(), new_rows["tile"].to_numpy(np.int64), row_keys_for(new_rows)
    )
    assert (unseen == live.detector.n_models).all()
    np.testing.assert_allclose(scored.rows["score"].to_numpy(), batch, rtol=0, atol=1e-9)
    clips = scored.clips
    assert len(clips) == new_rows["clip"].nunique()
    expected = clip_scores(new_rows.reset_index(drop=True).assign(score=batch))
    np.testing.assert_allclose(clips["score"].to_numpy(), expected["score"].to_numpy(), atol=1e-9)
    assert (clips["anomalous"] == (clips["score"] > live.rule.threshold)).all()
    # One clip alone gets the decision it got among the others (no batch needed).
    one = new_rows[new_rows["clip"] == int(clips["clip"].iloc[3])]
    alone = live.score(one, x[one.index.to_numpy()]).clips
    assert bool(alone["anomalous"].iloc[0]) == bool(clips["anomalous"].iloc[3])
    assert alone["score"].iloc[0] == pytest.approx(clips["score"].iloc[3], abs=1e-9)


def test_bad_rows_get_a_clear_error(one_torch_thread):
    live, rows, x = _live()
    with pytest.raises(VADInputError, match="tile index out of range"):
        live.score(rows.head(3).assign(tile=9), x[:3])
    with pytest.raises(VADInputError, match="miss column"):
        live.score(rows.head(3).drop(columns=["clip"]), x[:3])
    with pytest.raises(VADInputError, match="3 key rows but 2"):
        live.score(rows.head(3), x[:2])


def test_save_and_load_round_trip_and_checksum(tmp_path, one_torch_thread):
    live, rows, x = _live()
    live.info["model_version"] = "4"
    paths = save_live_detector(live, tmp_path / "m")
    back = load_live_detector(tmp_path / "m")
    assert back.rule == live.rule and back.info["model_version"] == "4" and back.feature_spec == {"backbone": "test"}
    head = rows.head(30)
    np.testing.assert_array_equal(back.score(head, x[:30]).rows["score"], live.score(head, x[:30]).rows["score"])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [DETECTOR_FILE, LIVE_FILE]
    blob = bytearray(open(paths["detector"], "rb").read())
    blob[-1] ^= 1
    open(paths["detector"], "wb").write(bytes(blob))
    with pytest.raises(VADInputError, match="detector.pt sha256 differs"):
        load_live_detector(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / LIVE_FILE).read_text())
    (tmp_path / "m" / LIVE_FILE).write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(VADInputError, match="format 'other/9'"):
        load_live_detector(tmp_path / "m")


def test_alert_intervals_join_consecutive_clips_and_keep_the_peak():
    clips = pd.DataFrame(
        {
            "video_id": ["a"] * 6 + ["b"] * 2,
            "clip": [0, 1, 2, 3, 4, 5, 0, 1],
            "start_frame": [0, 16, 32, 48, 64, 80, 0, 16],
            "end_frame": [16, 32, 48, 64, 80, 96, 16, 32],
            "score": [0.1, 0.9, 0.7, 0.2, 0.8, 0.3, 0.6, 0.1],
            "tile": [0, 2, 1, 0, 1, 0, 1, 0],
            "threshold": 0.5,
            "anomalous": [False, True, True, False, True, False, True, False],
        }
    )
    boxes = [(0, 0, 224, 224), (68, 0, 224, 224), (136, 0, 224, 224)]
    alerts = alert_intervals(clips, boxes, model_version="7")
    assert alerts[["video_id", "first_frame", "last_frame", "peak_score", "peak_tile"]].values.tolist() == [
        ["a", 16, 47, 0.9, 2],
        ["a", 64, 79, 0.8, 1],
        ["b", 0, 15, 0.6, 1],
    ]
    assert alerts[["box_x", "box_w"]].values.tolist()[0] == [136, 224]
    assert set(alerts["model_version"]) == {"7"}
    none = alert_intervals(clips.assign(anomalous=False))
    assert none.empty and list(none.columns) == list(alerts.columns)
    assert boxes_from_rows(pd.DataFrame({"tile": [0, 1, 0], "x": [5, 6, 7], "y": 0, "w": 10, "h": 11})) == {
        0: (5, 0, 10, 11),
        1: (6, 0, 10, 11),
    }


def test_live_model_files_round_trip_in_memory(one_torch_thread):
    from vad_core.live import live_model_files, live_model_from_files

    live, rows, x = _live()
    files = live_model_files(live)
    back = live_model_from_files(files, where="memory://m")
    assert back.rule == live.rule
    with pytest.raises(VADInputError, match="memory://m: live.json missing"):
        live_model_from_files({DETECTOR_FILE: files[DETECTOR_FILE]}, where="memory://m")
