"""Row scores of a trained denoiser: formulas against direct computation, batch independence,
streaming, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.core._synthetic import trained
from vad_core.diffusion.noise import row_noise
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows, score_stream
from vad_core.diffusion.sampling import get_sigmas_karras, sigma_range
from vad_core.errors import VADInputError
from vad_core.scoring.rows import row_keys_for


@pytest.fixture(scope="module")
def model():
    data, res = trained("tiny")
    return data, res.denoiser


def _direct_denoise(den, xs: torch.Tensor, sigma: float) -> torch.Tensor:
    """D(x; sigma) through the per-row-sigma (training) code path: an independent route through F."""
    with torch.no_grad():
        return den.model(xs, torch.full((xs.shape[0],), sigma))


def test_denoising_score_is_the_draw_averaged_one_step_error(model) -> None:
    data, den = model
    x, keys = data.features[:40], np.arange(100, 140, dtype=np.int64)
    got = score_rows(den, x, ScoreConfig(sigma=1.5, n_draws=3, seed=11), row_keys=keys)
    xs = torch.from_numpy((x - den.scaler.mean) / den.scaler.scale)
    sigma = 1.5 * den.sigma_data
    per_draw = []
    for draw in range(3):
        eps = torch.from_numpy(row_noise(11, keys, draw, x.shape[1]))
        per_draw.append(((_direct_denoise(den, xs + sigma * eps, sigma) - xs) ** 2).mean(dim=1).double().numpy())
    np.testing.assert_allclose(got, np.mean(per_draw, axis=0), rtol=1e-4)
    # averaging draws reduces the spread of the score around its expectation
    one = score_rows(den, x, ScoreConfig(sigma=1.5, n_draws=1, seed=11), row_keys=keys)
    np.testing.assert_allclose(one, per_draw[0], rtol=1e-4)
    many = np.mean(
        [score_rows(den, x, ScoreConfig(sigma=1.5, n_draws=1, seed=s), row_keys=keys) for s in range(8)], axis=0
    )
    eight = score_rows(den, x, ScoreConfig(sigma=1.5, n_draws=8, seed=0), row_keys=keys)
    assert np.abs(eight - many).mean() < np.abs(one - many).mean()


def test_reconstruction_from_the_last_step_is_one_denoising_step(model) -> None:
    data, den = model
    x = data.features[:30]
    cfg = ScoreConfig(score_type="reconstruction", n_steps=10, start_step=9, sampler="euler", n_draws=1, seed=3)
    got = score_rows(den, x, cfg)
    # sigma_9 is the schedule's sigma_min; the Euler step from it to 0 lands on D(x_t; sigma_min)
    sigmas = get_sigmas_karras(10, *sigma_range(den.train_config.P_mean, den.train_config.P_std))
    s9 = float(sigmas[9])
    assert s9 == pytest.approx(np.exp(-1.2 - 5 * 1.2), rel=1e-6)
    xs = torch.from_numpy((x - den.scaler.mean) / den.scaler.scale)
    eps = torch.from_numpy(row_noise(3, np.arange(30), 0, x.shape[1]))
    expect = ((_direct_denoise(den, xs + s9 * eps, s9) - xs) ** 2).mean(dim=1).double().numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4)
    # with one step every sampler is that Euler step
    for sampler in ("lms", "heun"):
        np.testing.assert_allclose(
            score_rows(den, x, ScoreConfig(**{**cfg.to_dict(), "sampler": sampler})), got, rtol=1e-6
        )


@pytest.mark.parametrize("score_type", ["denoising", "reconstruction"])
def test_a_rows_score_does_not_depend_on_its_batch(model, score_type: str, tmp_path) -> None:
    data, den = model
    x = data.features[:300]
    keys = row_keys_for(data.rows.iloc[:300])
    base = ScoreConfig(score_type=score_type, start_step=6, n_draws=2)
    ref = score_rows(den, x, base, row_keys=keys)
    for batch_rows in (1, 7, 128):
        got = score_rows(den, x, ScoreConfig(**{**base.to_dict(), "batch_rows": batch_rows}), row_keys=keys)
        np.testing.assert_array_equal(got, ref)
    perm = np.random.default_rng(1).permutation(300)
    np.testing.assert_array_equal(score_rows(den, x[perm], base, row_keys=keys[perm]), ref[perm])
    np.testing.assert_array_equal(score_rows(den, x[42:43], base, row_keys=keys[42:43]), ref[42:43])
    # a memmap is read in slices and gives the same scores
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(
        score_rows(den, mm, ScoreConfig(**{**base.to_dict(), "batch_rows": 50}), row_keys=keys), ref
    )


def test_score_stream_matches_score_rows_and_continues_default_keys(model) -> None:
    data, den = model
    x = data.features[:100]
    cfg = ScoreConfig(n_draws=2)
    ref = score_rows(den, x, cfg)  # default keys = row index
    chunks = (x[s : s + 33] for s in range(0, 100, 33))
    np.testing.assert_array_equal(np.concatenate(list(score_stream(den, chunks, cfg))), ref)
    keys = row_keys_for(data.rows.iloc[:100])
    keyed = score_rows(den, x, cfg, row_keys=keys)
    parts = score_stream(den, [(x[:60], None, keys[:60]), (x[60:], None, keys[60:])], cfg)
    np.testing.assert_array_equal(np.concatenate(list(parts)), keyed)


def test_bad_scoring_input_is_named(model) -> None:
    data, den = model
    x = data.features[:20].copy()
    with pytest.raises(VADInputError, match=r"features: have 31 dimensions, but .*expects 32"):
        score_rows(den, x[:, :31])
    with pytest.raises(VADInputError, match="empty"):
        score_rows(den, x[:0])
    with pytest.raises(VADInputError, match="2-D"):
        score_rows(den, x[0])
    x[13, 2] = np.inf
    with pytest.raises(
        VADInputError, match=r"features: non-finite values in 1 row\(s\) of rows 10:20 \(first bad row: 13\)"
    ):
        score_rows(den, x, ScoreConfig(batch_rows=10))
    with pytest.raises(VADInputError, match=r"row_keys: expected shape \(20,\)"):
        score_rows(den, data.features[:20], row_keys=np.arange(5))
    with pytest.raises(VADInputError, match="chunk 1"):
        list(score_stream(den, [data.features[:5], data.features[:5, :8]]))
    for bad in ({"score_type": "mse"}, {"sampler": "ddim"}, {"start_step": 10}, {"n_draws": 0}, {"sigma": 0.0}):
        with pytest.raises(VADInputError, match="ScoreConfig"):
            ScoreConfig(**bad)


def test_a_blended_denoising_score_is_the_geometric_mean_of_each_levels_error(model) -> None:
    data, den = model
    x, keys = data.features[:30], np.arange(500, 530, dtype=np.int64)
    got = score_rows(den, x, ScoreConfig(sigma=4.0, n_draws=2, seed=3, sigma_scales=(0.5, 1.0)), row_keys=keys)
    xs = torch.from_numpy((x - den.scaler.mean) / den.scaler.scale)
    levels = []
    for level in (2.0, 4.0):  # sigma * 0.5 and sigma * 1, in sigma_data units
        sigma = level * den.sigma_data
        draws = [
            ((_direct_denoise(den, xs + sigma * torch.from_numpy(row_noise(3, keys, d, x.shape[1])), sigma) - xs) ** 2)
            .mean(dim=1)
            .double()
            .numpy()
            for d in range(2)
        ]
        levels.append(np.mean(draws, axis=0))
    np.testing.assert_allclose(got, np.sqrt(levels[0] * levels[1]), rtol=1e-4)
    # the blend is invariant to a level's scale: ranking by it is not ranking by the larger level alone
    assert not np.allclose(np.argsort(got), np.argsort(levels[1]))


def test_sigma_scales_are_checked_and_survive_a_list_round_trip() -> None:
    assert ScoreConfig(sigma_scales=[0.5, 1]).sigma_scales == (0.5, 1.0)  # type: ignore[arg-type]
    assert ScoreConfig(sigma_scales=[0.5, 1]) == ScoreConfig(sigma_scales=(0.5, 1.0))  # type: ignore[arg-type]
    for bad in ((), (0.0, 1.0), (1.0, 1.0), (-1.0,)):
        with pytest.raises(VADInputError, match="sigma_scales"):
            ScoreConfig(sigma_scales=bad)
    with pytest.raises(VADInputError, match="denoising score only"):
        ScoreConfig(score_type="reconstruction", sigma_scales=(0.5, 1.0))
