"""Demo footage: deterministic, decodable, ground truth consistent, anomalies really there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vad_core.errors import VADInputError
from vad_core.footage import build_manifest, iter_frames
from vad_core.footage.ground_truth import read_ground_truth
from vad_core.synthetic import (
    ANOMALY_KINDS,
    DemoConfig,
    anomaly_mask,
    generate_demo_footage,
    plan_video,
    render_video,
    visible_fraction,
)
from vad_core.synthetic.drawing import WALK_BOTTOM, WALK_TOP, perspective, render_background

SMALL = dict(n_train=1, n_test=2, n_frames=40, width=160, height=120, person_height=24.0)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate_demo_footage(tmp_path_factory.mktemp("demo"), seed=3, **SMALL)


def test_same_seed_same_bytes_other_seed_other_bytes(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    again = generate_demo_footage(tmp_path / "a", seed=3, **SMALL)
    assert [p.read_bytes() for p in again.videos] == [p.read_bytes() for p in small_demo.videos]
    assert again.ground_truth_csv.read_text() == small_demo.ground_truth_csv.read_text()
    other = generate_demo_footage(tmp_path / "b", seed=4, **SMALL)
    assert other.videos[0].read_bytes() != small_demo.videos[0].read_bytes()


def test_videos_decode_with_the_planned_size_and_count(small_demo) -> None:  # type: ignore[no-untyped-def]
    assert [p.relative_to(small_demo.root).as_posix() for p in small_demo.videos] == [
        "train/01.mp4",
        "test/01.mp4",
        "test/02.mp4",
    ]
    for path in small_demo.videos:
        frames = list(iter_frames(path, "file"))
        assert len(frames) == 40 and {f.shape for f in frames} == {(120, 160, 3)}
    manifest = build_manifest(small_demo.root)
    assert manifest["video_id"].tolist() == ["test/01", "test/02", "train/01"]
    assert set(manifest["status"]) == {"ok"} and set(manifest["n_frames"]) == {40}
    assert set(manifest["fps"]) == {10.0}


def test_ground_truth_csv_matches_the_plan(small_demo) -> None:  # type: ignore[no-untyped-def]
    gt = read_ground_truth(small_demo.ground_truth_csv)
    cfg = small_demo.config
    assert set(gt["video_id"]) == {"test/01", "test/02"}  # training videos are normal
    for j, vid in enumerate(["test/01", "test/02"]):
        agents = plan_video(cfg, cfg.n_train + j, ANOMALY_KINDS[(cfg.seed + j) % len(ANOMALY_KINDS)])
        labels = np.zeros(cfg.n_frames, bool)
        for s, e in zip(
            gt.loc[gt.video_id == vid, "start_frame"], gt.loc[gt.video_id == vid, "end_frame"], strict=False
        ):
            assert 0 <= s < e <= cfg.n_frames
            labels[s:e] = True
        np.testing.assert_array_equal(labels, anomaly_mask(cfg, agents))
        assert labels.any()


def test_generation_is_skipped_when_up_to_date_and_redone_when_not(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "d"
    first = generate_demo_footage(root, seed=3, **SMALL)
    stamps = [p.stat().st_mtime_ns for p in first.videos]
    generate_demo_footage(root, seed=3, **SMALL)
    assert [p.stat().st_mtime_ns for p in first.videos] == stamps
    first.videos[1].write_bytes(b"damaged")
    generate_demo_footage(root, seed=3, **SMALL)
    assert first.videos[1].read_bytes() == small_demo.videos[1].read_bytes()
    generate_demo_footage(root, seed=5, **SMALL)
    assert json.loads((root / "demo_footage.json").read_text())["params"]["seed"] == 5


def test_bad_options_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(VADInputError, match="n_frames"):
        generate_demo_footage(tmp_path, n_frames=8)
    with pytest.raises(VADInputError, match="colour"):
        generate_demo_footage(tmp_path, colour="red")


def test_default_size_fits_the_feature_budget() -> None:
    cfg = DemoConfig()
    tile_clips = (cfg.n_train + cfg.n_test) * (cfg.n_frames // 16) * 2  # 320x240: two tiles per clip
    assert 150 <= tile_clips <= 300  # about a minute of I3D at 3-7 tile-clips/s


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_each_anomaly_is_drawn_exactly_where_labelled(kind: str) -> None:
    cfg = DemoConfig(seed=1, n_frames=96, width=192, height=144, person_height=28.0)
    agents = plan_video(cfg, 0, kind)
    odd, normal = agents[-1], agents[:-1]
    assert odd.anomalous is not None and odd.anomalous.any()
    background = render_background(cfg.width, cfg.height, cfg.seed)
    with_odd = np.stack(list(render_video(cfg, 0, agents, background))).astype(np.int16)
    without = np.stack(list(render_video(cfg, 0, normal, background))).astype(np.int16)
    changed = (np.abs(with_odd - without).max(axis=-1) > 40).sum(axis=(1, 2))  # (T,) pixels
    labelled = odd.anomalous
    assert changed[labelled].min() >= 5, changed[labelled]  # the object is really in the picture
    outside = visible_fraction(odd, cfg, pad=2.0) == 0
    assert np.array_equal(with_odd[outside], without[outside])  # and nowhere else


def test_anomalies_differ_from_walkers_in_the_way_their_kind_says() -> None:
    cfg = DemoConfig(seed=2, n_frames=160)
    walkers = plan_video(cfg, 0, None)
    walk_speed = np.median([abs(a.x[1] - a.x[0]) for a in walkers])
    assert 2.0 < walk_speed < 4.5  # ~1.25 m/s at 10 fps, 42 px people

    def speed(a) -> float:  # type: ignore[no-untyped-def]
        return float(np.median(np.hypot(np.diff(a.x), np.diff(a.y))))

    def drawn_area(a, t: int) -> float:  # type: ignore[no-untyped-def]
        """Pixels the agent changes in frame t, in units of (its person height)^2."""
        with_a = next(f for i, f in enumerate(render_video(cfg, 9, [a], background)) if i == t)
        changed = (np.abs(with_a.astype(np.int16) - empty).max(axis=-1) > 25).sum()
        return float(changed) / (cfg.person_height * perspective(a.y[t], cfg.height)) ** 2

    background = render_background(cfg.width, cfg.height, cfg.seed)
    empty = next(render_video(cfg, 9, [], background)).astype(np.int16)
    odd = {k: plan_video(cfg, 1, k)[-1] for k in ANOMALY_KINDS}
    assert speed(odd["cyclist"]) > 2.5 * walk_speed and speed(odd["runner"]) > 2 * walk_speed
    cart = odd["cart"]
    t_cart = int(np.argmax(visible_fraction(cart, cfg)))
    walker = next(a for a in walkers if (visible_fraction(a, cfg) == 1).any())
    t_walker = int(np.argmax(visible_fraction(walker, cfg)))
    assert drawn_area(cart, t_cart) > 3 * drawn_area(walker, t_walker)
    lawn_y = odd["lawn"].y[odd["lawn"].anomalous]
    off_path = (lawn_y < WALK_TOP * cfg.height) | (lawn_y > WALK_BOTTOM * cfg.height)
    assert off_path.mean() > 0.4  # much of the crossing is on the grass
    loiter = odd["loiter"]
    assert np.abs(np.diff(loiter.x))[loiter.anomalous[1:] & loiter.anomalous[:-1]].max() < 1.0
    assert loiter.anomalous.sum() >= 0.3 * cfg.n_frames


def test_pixel_masks_mark_the_anomalous_object_in_its_frames(small_demo) -> None:  # type: ignore[no-untyped-def]
    from vad_core.footage.ground_truth import pixel_mask_files, read_pixel_mask
    from vad_core.synthetic import anomaly_pixel_mask
    from vad_core.synthetic.drawing import agent_boxes

    cfg = small_demo.config
    files = pixel_mask_files(small_demo.root / "test_pixel_mask", video_ids="test/{}")
    assert sorted(files) == ["test/01", "test/02"]  # one per test video, none for training videos
    saved = json.loads((small_demo.root / "demo_footage.json").read_text())["files"]
    assert {"test_pixel_mask/01.npy", "test_pixel_mask/02.npy"} <= set(saved)  # hashed like the videos
    for j, vid in enumerate(["test/01", "test/02"]):
        agents = plan_video(cfg, cfg.n_train + j, ANOMALY_KINDS[(cfg.seed + j) % len(ANOMALY_KINDS)])
        mask = read_pixel_mask(files[vid], n_frames=cfg.n_frames, size=(cfg.width, cfg.height))
        np.testing.assert_array_equal(mask, anomaly_pixel_mask(cfg, agents))
        # anomalous pixels exactly in the frames the frame-level ground truth marks
        np.testing.assert_array_equal(mask.any(axis=(1, 2)), anomaly_mask(cfg, agents))
        (anomalous,) = [a for a in agents if a.anomalous is not None]
        t = int(np.flatnonzero(anomalous.anomalous)[0])
        x0, y0, x1, y1 = agent_boxes(anomalous, cfg.person_height, cfg.height)[t]
        cx, cy = int(np.clip((x0 + x1) / 2, 0, cfg.width - 1)), int(np.clip((y0 + y1) / 2, 0, cfg.height - 1))
        assert mask[t, cy, cx]  # the box's centre is marked
        assert mask[t].sum() <= (x1 - x0 + 2) * (y1 - y0 + 2)  # and no more than the box
