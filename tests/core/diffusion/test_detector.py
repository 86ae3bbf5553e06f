"""Video folds, out-of-fold scoring, the trimmed refit, label-free trimming, detector checkpoints."""

from __future__ import annotations

import io
from dataclasses import replace
from functools import cache

import numpy as np
import pytest
import torch

from tests.core._synthetic import TINY, mixture
from vad_core.diffusion.denoiser import checkpoint_bytes
from vad_core.diffusion.detector import DETECTOR_FORMAT, LEGACY_SCORE, Detector, detector_bytes, load_detector
from vad_core.diffusion.folds import assign_folds, fit_members
from vad_core.diffusion.label_free import choose_trim_share
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector, preset, trim_mask
from vad_core.diffusion.training import fit
from vad_core.errors import VADInputError

# Two screen folds, two deployed seeds, few draws: every path of the robust recipe, in seconds.
RECIPE = DetectorRecipe(name="test", screen_folds=2, refit_seeds=2, n_draws=2, max_share=0.3)
TRAIN = replace(TINY, n_tiles=3)


@cache
def _fitted():
    data = mixture(n_clips=200)
    videos = data.rows["video_id"].to_numpy()
    tiles = data.rows["tile"].to_numpy(np.int64)
    torch.set_num_threads(1)
    return data, videos, tiles, fit_detector(data.features, videos, TRAIN, RECIPE, tiles=tiles)


def test_folds_never_split_a_video_and_balance_rows():
    videos = np.repeat([f"v{i}" for i in range(7)], [30, 10, 10, 20, 20, 5, 5])
    for seed in range(5):
        folds = assign_folds(videos, 3, seed)
        for v in np.unique(videos):
            assert np.unique(folds[videos == v]).size == 1  # a video lies in one fold
        assert set(folds.tolist()) == {0, 1, 2}
        # greedy by rows: 100 rows in 3 folds, the largest video (30) bounds the imbalance
        sizes = np.bincount(folds)
        assert sizes.max() - sizes.min() <= 30
    assert any(not np.array_equal(assign_folds(videos, 3, 0), assign_folds(videos, 3, s)) for s in range(1, 5))
    with pytest.raises(VADInputError, match="cannot fill 8 folds"):
        assign_folds(videos, 8)


def test_otsu_trim_share_on_a_bimodal_sample():
    # 90 rows near e^0, 10 near e^3 (log scale): Otsu's cut separates the upper mode exactly.
    rng = np.random.default_rng(0)
    scores = np.exp(np.r_[rng.normal(0.0, 0.1, 90), rng.normal(3.0, 0.1, 10)])
    assert choose_trim_share(scores, max_share=0.5) == pytest.approx(0.10)
    assert choose_trim_share(scores, max_share=0.05) == pytest.approx(0.05)  # capped
    with pytest.raises(VADInputError):
        choose_trim_share(np.array([1.0, -1.0]))


def test_mixture_trim_share_finds_a_planted_upper_mode_and_none_in_a_unimodal_sample():
    rng = np.random.default_rng(1)
    # 900 rows near e^0, 100 near e^3 (log scale, sd 0.3): the upper component holds exactly the planted 10%
    bimodal = np.exp(np.r_[rng.normal(0.0, 0.3, 900), rng.normal(3.0, 0.3, 100)])
    assert choose_trim_share(bimodal, max_share=0.5, rule="mixture") == pytest.approx(0.10)
    assert choose_trim_share(bimodal, max_share=0.5, rule="otsu") == pytest.approx(0.10)
    # one log-normal: BIC keeps one Gaussian, so nothing is dropped, where Otsu still cuts off a large share
    unimodal = np.exp(rng.normal(0.0, 1.0, 1000))
    assert choose_trim_share(unimodal, max_share=0.9, rule="mixture") == 0.0
    assert choose_trim_share(unimodal, max_share=0.9, rule="otsu") > 0.2
    with pytest.raises(VADInputError, match="rule must be one of"):
        choose_trim_share(bimodal, rule="gmm")
    with pytest.raises(VADInputError, match="trim_rule must be one of"):
        DetectorRecipe(trim_rule="gmm")


def test_trim_mask_drops_the_top_share_within_each_tile():
    scores = np.array([1.0, 9.0, 2.0, 3.0, 8.0, 0.5])
    tiles = np.array([0, 0, 0, 1, 1, 1])
    keep = trim_mask(scores, 1 / 3, tiles)
    assert keep.tolist() == [True, False, True, True, False, True]  # 9 in tile 0, 8 in tile 1
    assert trim_mask(scores, 0.0, tiles).all()


def test_members_never_train_on_the_videos_of_their_fold(one_torch_thread):
    data = mixture(n_clips=150)
    videos = data.rows["video_id"].to_numpy()
    members, folds = fit_members(data.features, videos, TINY, n_folds=3)
    assert len(members) == 3
    for m in members:
        own = set(videos[folds == m.fold])
        assert own.isdisjoint(m.trained_videos)
        assert np.all(folds[m.train_rows] != m.fold)


def test_a_fitted_row_is_scored_only_by_models_that_never_saw_its_video(one_torch_thread):
    data, videos, tiles, result = _fitted()
    screen = Detector([_as_member(s) for s in result.screen_members], result.detector.score_config)
    scores, n_unseen = screen.score_fitted(data.features, videos, tiles)
    assert np.all(n_unseen == 1)  # K = 2: exactly one model never saw each video
    # by construction: the OOF score of a row equals the score of the one model that excludes its video
    for member in screen.members:
        rows = ~np.isin(videos, sorted(member.trained_videos))
        alone = Detector([member], screen.score_config).score_new(
            data.features[rows], tiles[rows], np.flatnonzero(rows)
        )
        np.testing.assert_allclose(scores[rows], alone, rtol=1e-6)


def test_repeated_screens_average_the_models_that_never_saw_each_row(one_torch_thread):
    data, videos, tiles, single = _fitted()
    twice = fit_detector(data.features, videos, TRAIN, replace(RECIPE, screen_repeats=2), tiles=tiles)
    # repeat 0 is the single screen, bit for bit; repeat 1 has its own seeds (and fold assignment)
    assert len(twice.screen_members) == 4
    for a, b in zip(single.screen_members, twice.screen_members[:2], strict=True):
        assert a.trained_videos == b.trained_videos and a.seed == b.seed
    assert {m.seed for m in twice.screen_members[2:]}.isdisjoint({m.seed for m in single.screen_members})
    screen = Detector([_as_member(s) for s in twice.screen_members], twice.detector.score_config)
    scores, n_unseen = screen.score_fitted(data.features, videos, tiles)
    assert np.all(n_unseen == 2)  # one model per repeat never saw each video
    # the fit's screen scores are the mean of the two repeats' out-of-fold scores
    config = replace(twice.detector.score_config, sigma=RECIPE.screen_sigma)
    halves = [
        Detector([_as_member(s) for s in part], config).score_fitted(data.features, videos, tiles)[0]
        for part in (twice.screen_members[:2], twice.screen_members[2:])
    ]
    np.testing.assert_allclose(twice.screen_scores, np.mean(halves, axis=0), rtol=1e-6)
    np.testing.assert_allclose(halves[0], single.screen_scores, rtol=1e-12)
    with pytest.raises(VADInputError, match="screen_repeats must be >= 1"):
        DetectorRecipe(screen_repeats=0)


def _as_member(fitted):
    from vad_core.diffusion.detector import DetectorMember

    return DetectorMember(fitted.denoiser, fitted.fold, fitted.seed, fitted.trained_videos)


def test_robust_fit_drops_rows_scores_new_footage_and_reports_diagnostics(one_torch_thread):
    data, videos, tiles, result = _fitted()
    det = result.detector
    assert det.n_models == 2 and det.trim_share == pytest.approx(1 - result.keep.mean(), abs=0.01)
    assert 0 < det.trim_share <= 0.3
    assert all(m.memorization_auc is not None and 0 <= m.memorization_auc <= 1 for m in det.members)
    # K = 1 refit: every member trained on every video, so fitted rows are scored in-sample by all
    _, n_unseen = det.score_fitted(data.features, videos, tiles)
    assert np.all(n_unseen == 0)
    # new footage: the mean of the members' own scores
    new = det.score_new(data.features[:30], tiles[:30])
    each = [Detector([m], det.score_config).score_new(data.features[:30], tiles[:30]) for m in det.members]
    np.testing.assert_allclose(new, np.mean(each, axis=0), rtol=1e-6)
    assert set(det.score_stats) == {"n", "mean", "std", "q50", "q90", "q95", "q99"}
    assert det.describe()["recipe"]["name"] == "test"
    with pytest.raises(VADInputError, match="tiles: required"):
        det.score_new(data.features[:3])


def test_detector_checkpoint_round_trip_with_weights_only(one_torch_thread):
    data, videos, tiles, result = _fitted()
    blob = detector_bytes(result.detector)
    payload = torch.load(io.BytesIO(blob), weights_only=True)  # plain data only: no code unpickled
    assert payload["format"] == DETECTOR_FORMAT and len(payload["members"]) == 2
    assert [m["fold"] for m in payload["screen_members"]] == [0, 1]  # every fold model of the screen is kept
    back = load_detector(blob, name="mem://det.pt")
    assert back.source == "mem://det.pt" and back.score_config == result.detector.score_config
    assert back.trim_share == result.detector.trim_share and back.recipe == result.detector.recipe
    assert [m.trained_videos for m in back.screen] == [m.trained_videos for m in result.detector.screen]
    np.testing.assert_array_equal(
        back.score_new(data.features[:40], tiles[:40]), result.detector.score_new(data.features[:40], tiles[:40])
    )
    with pytest.raises(VADInputError, match="mem://bad"):
        load_detector(b"not a checkpoint", name="mem://bad")


def test_a_single_denoiser_checkpoint_loads_as_a_one_member_detector(one_torch_thread):
    data = mixture(n_clips=40)
    det = load_detector(checkpoint_bytes(fit(data.features, TINY)))
    assert det.n_models == 1 and det.score_config == LEGACY_SCORE and det.recipe == {"name": "legacy"}
    assert det.score_new(data.features[:5]).shape == (5,)


def test_presets():
    robust, train = preset("robust")
    assert (robust.screen_folds, robust.refit_seeds, robust.sigma, robust.n_draws) == (5, 5, None, 64)
    assert train.hidden == (64, 32, 16)
    paper, paper_train = preset("paper")
    assert paper.score_type == "reconstruction" and paper_train.hidden == (1024, 512, 256)
    assert preset("single")[0].screen_folds == 0
    with pytest.raises(VADInputError, match="unknown detector preset"):
        preset("best")


def test_leave_video_out_neighbour_counts_exclude_the_rows_own_video():
    from vad_core.diffusion.label_free import posterior_neighbours

    # two near-twins per video; at a huge sigma every candidate row weighs the same, so n_eff counts them
    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    videos = np.array(["a", "a", "b", "b"])
    assert posterior_neighbours(x, [100.0])[0] == pytest.approx(3.0, rel=1e-3)  # leave the row out: 3 others
    assert posterior_neighbours(x, [100.0], groups=videos)[0] == pytest.approx(2.0, rel=1e-3)  # leave the video out
    # at a small sigma the row leave-one-out denoiser explains a row by its twin (n_eff 1), and so does the
    # leave-video-out one by the nearer of the other video's rows
    assert posterior_neighbours(x, [0.05], groups=videos)[0] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(VADInputError, match="another group"):
        posterior_neighbours(x, [1.0], groups=np.array(["a"] * 4))
    with pytest.raises(VADInputError, match="sigma_rule"):
        DetectorRecipe(sigma_rule="frames")


def test_a_blended_detector_keeps_its_sigma_scales_through_the_checkpoint(one_torch_thread):
    data, videos, tiles, result = _fitted()
    config = replace(result.detector.score_config, sigma_scales=(0.5, 1.0))
    blended = Detector(result.detector.members, config, recipe={"name": "blend"})
    back = load_detector(detector_bytes(blended), name="mem://blend.pt")
    assert back.score_config.sigma_scales == (0.5, 1.0)
    got = back.score_new(data.features[:25], tiles[:25])
    np.testing.assert_array_equal(got, blended.score_new(data.features[:25], tiles[:25]))
    # per member: the geometric mean of its single-level scores, then the members' mean
    single = [replace(config, sigma=config.sigma * s, sigma_scales=(1.0,)) for s in (0.5, 1.0)]
    each = [
        np.sqrt(np.prod([Detector([m], c).score_new(data.features[:25], tiles[:25]) for c in single], axis=0))
        for m in result.detector.members
    ]
    np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-9)


def test_a_recipes_sigma_scales_reach_its_score_config_and_are_checked_when_built():
    recipe = DetectorRecipe(sigma_scales=[0.5, 1])  # type: ignore[arg-type]
    assert recipe.sigma_scales == (0.5, 1.0) and recipe.score_config(8.0).sigma_scales == (0.5, 1.0)
    with pytest.raises(VADInputError, match="denoising score only"):
        DetectorRecipe(score_type="reconstruction", sigma_scales=(0.5, 1.0))
