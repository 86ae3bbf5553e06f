"""fit_detector's two stages (`screen_rows`, `refit_detector`) and the screen's label-free network width."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.core._synthetic import TINY, mixture
from vad_core.diffusion.detector import Detector, DetectorMember, detector_bytes, load_detector
from vad_core.diffusion.folds import fit_members
from vad_core.diffusion.label_free import choose_trim_share
from vad_core.diffusion.recipes import (
    DetectorRecipe,
    fit_detector,
    refit_detector,
    scaled_hidden,
    screen_rows,
    trim_mask,
)
from vad_core.errors import VADInputError

RECIPE = DetectorRecipe(name="test", screen_folds=2, refit_seeds=2, n_draws=2, max_share=0.3)
TRAIN = replace(TINY, n_tiles=3)


def _data():
    data = mixture(n_clips=120)
    return data, data.rows["video_id"].to_numpy(), data.rows["tile"].to_numpy(np.int64)


def test_a_screen_of_one_seed_refits_with_another(one_torch_thread):
    data, videos, tiles = _data()
    screen = screen_rows(data.features, videos, TRAIN, RECIPE, tiles)
    other = replace(TRAIN, seed=TRAIN.seed + 7)
    fit = refit_detector(data.features, videos, other, replace(RECIPE, score_seed=7), screen, tiles)
    # the refit trains only on the rows this screen kept, with the other seed's members
    assert fit.keep is screen.keep and 0 < (~screen.keep).mean() <= 0.3
    for m in fit.members:
        assert screen.keep[m.train_rows].all()
    assert {m.seed for m in fit.members} == {7, 7 + 1000}  # SEED_STRIDE per seed replicate
    assert {m.seed for m in screen.members} == {0, 1}  # one model per fold, the screen's own seed
    det = fit.detector
    assert det.trim_share == screen.share and len(det.screen) == 2
    assert set(det.fit_seconds) == {"screen_fit", "screen_score", "refit", "sigma_and_diagnostics"}
    # fit_detector with the screen's seed reproduces the screen exactly
    whole = fit_detector(data.features, videos, TRAIN, RECIPE, tiles)
    np.testing.assert_array_equal(whole.screen_scores, screen.scores)
    np.testing.assert_array_equal(whole.keep, screen.keep)


def test_without_a_screen_every_row_is_kept():
    data, videos, tiles = _data()
    screen = screen_rows(data.features, videos, TRAIN, replace(RECIPE, screen_folds=0), tiles)
    assert screen.scores is None and screen.keep.all() and screen.share == 0.0 and screen.folds == 0
    assert screen.hidden == TRAIN.hidden and screen.members == [] and screen.width_errors == {}


def test_the_screen_keeps_the_width_with_the_lowest_median_out_of_fold_error(one_torch_thread):
    data, videos, tiles = _data()
    scales = (0.25, 1.0, 4.0)
    chosen = fit_detector(data.features, videos, TRAIN, replace(RECIPE, width_scales=scales), tiles)
    # independently: a plain screen (no width_scales) of each width, its median out-of-fold score
    plain = {s: screen_rows(data.features, videos, replace(TRAIN, hidden=scaled_hidden(TRAIN.hidden, s)), RECIPE,
                            tiles) for s in scales}  # fmt: skip
    medians = {s: float(np.median(p.scores)) for s, p in plain.items()}
    best = min(scales, key=lambda s: medians[s])
    det = chosen.detector
    assert det.recipe["width_errors"] == pytest.approx({f"{s:g}": m for s, m in medians.items()}, rel=1e-12)
    assert tuple(det.recipe["hidden_used"]) == scaled_hidden(TRAIN.hidden, best)
    # the winner's screen drives the trim, bit for bit, and the deployed members have its width
    np.testing.assert_array_equal(chosen.screen_scores, plain[best].scores)
    np.testing.assert_array_equal(chosen.keep, plain[best].keep)
    for m in chosen.members + chosen.screen_members:
        assert m.denoiser.train_config.hidden == scaled_hidden(TRAIN.hidden, best)
    again = load_detector(detector_bytes(det))
    assert again.recipe["hidden_used"] == det.recipe["hidden_used"]
    assert again.members[0].denoiser.train_config.hidden == scaled_hidden(TRAIN.hidden, best)


def test_width_scales_are_checked_when_the_recipe_is_built():
    assert scaled_hidden((64, 32, 16), 0.5) == (32, 16, 8) and scaled_hidden((3,), 0.1) == (1,)
    assert DetectorRecipe(width_scales=[1, 2]).width_scales == (1.0, 2.0)
    with pytest.raises(VADInputError, match="width_scales must be distinct and > 0"):
        DetectorRecipe(width_scales=(1.0, 0.0))
    with pytest.raises(VADInputError, match="width_scales must be distinct and > 0"):
        DetectorRecipe(width_scales=(2.0, 2.0))
    with pytest.raises(VADInputError, match="needs a screen"):
        DetectorRecipe(screen_folds=0, width_scales=(1.0, 2.0))


def test_a_second_screen_round_refits_the_screen_on_the_rows_the_first_kept(one_torch_thread):
    data, videos, tiles = _data()
    first = screen_rows(data.features, videos, TRAIN, RECIPE, tiles)
    events: list[dict] = []
    second = screen_rows(data.features, videos, TRAIN, replace(RECIPE, screen_rounds=2), tiles, callback=events.append)
    # independently: the same folds and seeds fitted on round 1's kept rows, every row scored by the model that
    # never saw its video, then the same label-free trim of those scores
    members, _ = fit_members(data.features, videos, TRAIN, 2, 1, tiles, keep=first.keep, fold_seed=RECIPE.fold_seed)
    for m in members:
        assert first.keep[m.train_rows].all()
    screen = Detector(
        [DetectorMember(m.denoiser, m.fold, m.seed, m.trained_videos) for m in members],
        replace(RECIPE.score_config(RECIPE.screen_sigma), sigma_scales=(1.0,)),
    )
    scores, n_unseen = screen.score_fitted(data.features, videos, tiles)
    assert np.all(n_unseen == 1)
    np.testing.assert_allclose(second.scores, scores, rtol=1e-12)
    share = choose_trim_share(scores, RECIPE.max_share, RECIPE.trim_rule)
    assert second.share == pytest.approx(share)
    np.testing.assert_array_equal(second.keep, trim_mask(scores, share, tiles))
    assert not np.array_equal(second.scores, first.scores)
    assert [m.trained_videos for m in second.members] == [m.trained_videos for m in first.members]
    stages = [e for e in events if e["event"] == "stage"]
    assert [e["round"] for e in stages] == [1, 2]
    assert stages[0]["dropped"] == int((~first.keep).sum()) and stages[1]["dropped"] == int((~second.keep).sum())
    assert set(second.seconds) == {"screen_fit", "screen_score"}
    # the refit trains on round 2's kept rows
    fit = refit_detector(data.features, videos, TRAIN, replace(RECIPE, screen_rounds=2), second, tiles)
    for m in fit.members:
        assert second.keep[m.train_rows].all()
    with pytest.raises(VADInputError, match="screen_rounds must be >= 1, got 0"):
        DetectorRecipe(screen_rounds=0)
