"""`run_recipe`'s re-scored variants: the same fitted detector, scored again, recorded by name."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from tests.core._synthetic import TINY, mixture
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector
from vad_core.diffusion.reconstruction import ScoreConfig
from vad_core.scoring.rows import row_keys_for
from vad_core.study.data import StudyData
from vad_core.study.protocol import group_auc, run_recipe, seeded

RECIPE = DetectorRecipe(name="test", screen_folds=2, refit_seeds=1, n_draws=2, sigma=4.0)


def _study() -> StudyData:
    mix = mixture(n_clips=150)  # three videos of 50 clips; the planted clips are the anomalies
    clips = mix.rows.drop_duplicates(["video_id", "clip"]).reset_index(drop=True)
    bad = clips[mix.clip_labels == 1]
    truth = pd.DataFrame(
        {"video_id": bad["video_id"], "start_frame": bad["start_frame"], "end_frame": bad["end_frame"]}
    )
    videos = sorted(mix.rows["video_id"].unique())
    return StudyData("synthetic", mix.rows, mix.features, {v: 50 * 16 for v in videos}, truth, tuple(videos))


def test_a_blend_variant_is_the_same_fit_scored_with_sigma_scales(one_torch_thread) -> None:
    data = _study()
    groups = {"all": list(data.evaluated)}
    records = run_recipe(data, RECIPE, TINY, 0, groups, extra_sigma_scales=[(0.5, 1.0)])
    assert [r["recipe"] for r in records] == ["test", "test [sigma x0.5+1]"]
    assert records[0]["fit_s"] == records[1]["fit_s"]  # no refit
    # Independently: the same fit (same seeds) scored with the blended config directly.
    videos = data.rows["video_id"].astype(str).to_numpy()
    keys = row_keys_for(data.rows)
    train = replace(TINY, n_tiles=int(data.tiles.max()) + 1)
    det = fit_detector(data.features, videos, train, RECIPE, tiles=data.tiles, row_keys=keys).detector
    det.score_config = ScoreConfig(**{**det.score_config.to_dict(), "sigma_scales": (0.5, 1.0)})
    blended, _ = det.score_fitted(data.features, videos, data.tiles, keys)
    assert records[1]["auc"] == pytest.approx(group_auc(data, blended, groups["all"]))
    assert records[1]["sigma"] == 4.0 and 0 <= records[1]["memorization_auc"] <= 1


def test_seeded_offsets_the_training_fold_and_scoring_seeds_by_the_study_seed() -> None:
    recipe, train = DetectorRecipe(fold_seed=3, score_seed=5), replace(TINY, seed=7)
    rc, tc = seeded(recipe, train, 2, n_tiles=4)
    assert (rc.fold_seed, rc.score_seed, tc.seed, tc.n_tiles) == (5, 7, 9, 4)
    assert rc == replace(recipe, fold_seed=5, score_seed=7) and tc == replace(train, seed=9, n_tiles=4)
