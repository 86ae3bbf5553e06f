"""Training: schedules against k-diffusion's formulas, learning on synthetic clips, reproducibility,
early stopping and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tests.core._synthetic import SMALL, TINY, mixture, trained
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.diffusion.training import (
    TrainConfig,
    _val_loss,
    ema_decay,
    ema_update,
    fit,
    lr_factor,
    split_videos,
)
from vad_core.errors import VADInputError
from vad_core.io.hashing import fingerprint_array
from vad_core.scoring.rows import clip_scores, row_keys_for


def test_schedules_follow_k_diffusion_inverse_lr_and_ema_warmup() -> None:
    c = TrainConfig()
    # InverseLR: (1 - warmup^(step+1)) * (1 + step / inv_gamma)^-power
    assert lr_factor(0, c) == pytest.approx(0.01)
    assert lr_factor(99, c) == pytest.approx((1 - 0.99**100) / (1 + 99 / 20000))
    # EMAWarmup: 1 - (1 + step / inv_gamma)^-power, clipped to max_value
    assert ema_decay(0, c) == 0.0
    assert ema_decay(10, c) == pytest.approx(1 - 11**-0.6667)
    assert ema_decay(10**9, c) == 0.9999


def test_ema_update_is_a_lerp_towards_the_weights() -> None:
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in a.parameters():
            p.fill_(1.0)
        for p in b.parameters():
            p.fill_(0.0)
    ema_update(a, b, decay=0.75)
    for p in b.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.25))


def test_fit_lowers_the_loss_and_scores_planted_points_as_anomalies() -> None:
    data, res = trained("small")
    first, last = res.history[0], res.history[-1]
    assert last["train_loss"] < 0.92 * first["train_loss"]
    assert last["val_loss"] < 0.92 * first["val_loss"]
    keys = row_keys_for(data.rows)
    aucs = {}
    for name, cfg in {
        "denoising@1": ScoreConfig(sigma=1.0),
        "denoising@2": ScoreConfig(sigma=2.0),
        "reconstruction t=5": ScoreConfig(score_type="reconstruction", start_step=5),
    }.items():
        scores = score_rows(res.denoiser, data.features, cfg, row_keys=keys)
        clips = clip_scores(data.rows.assign(score=scores))
        aucs[name] = roc_auc_score(data.clip_labels, clips["score"])
    # measured 1.000 / 1.000 / 0.97-0.995 over data seeds 0-2; reconstruction from t = 9 inverts (~0.4)
    assert min(aucs.values()) >= 0.95, aucs


def test_fit_records_history_split_scaler_fingerprint_and_memorization() -> None:
    data, res = trained("small")
    x = data.features
    assert res.n_val == 90 and res.n_train == 810 and res.val_indices.shape == (90,)
    train_idx = np.setdiff1d(np.arange(len(x)), res.val_indices)
    np.testing.assert_allclose(res.scaler.mean, x[train_idx].mean(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-5)
    assert res.fingerprint == fingerprint_array(x)
    assert res.config == SMALL and res.model_config.hidden == (128, 64, 32) and res.model_config.dim == 32
    # "global" scaling makes the scaled training rows' overall std, i.e. sigma_data, 1
    assert res.sigma_data == pytest.approx(1.0, abs=1e-5)
    assert [h["epoch"] for h in res.history] == list(range(1, len(res.history) + 1))
    assert [h["step"] for h in res.history][:2] == [20, 40]  # 810 rows / 256 = 4 < min_steps_per_epoch
    assert set(res.history[0]) == {"epoch", "step", "train_loss", "val_loss", "stop_loss", "lr", "ema_decay"}
    assert 0.0 <= res.memorization_auc <= 1.0
    assert abs(res.memorization_auc - 0.5) < 0.12  # a small, briefly trained model does not memorize
    assert res.denoiser.model is res.ema_model and not res.ema_model.training


def test_callback_gets_one_event_per_epoch_and_a_final_one() -> None:
    events: list[dict] = []
    res = fit(mixture(n_clips=40).features, TINY, callback=events.append)
    assert [e["event"] for e in events] == ["epoch"] * len(res.history) + ["done"]
    assert events[-1]["memorization_auc"] == res.memorization_auc
    assert events[0]["train_loss"] == res.history[0]["train_loss"]


def test_same_seed_gives_identical_weights_other_seed_differs() -> None:
    x = mixture(n_clips=40).features
    rng_state = torch.get_rng_state()
    a, b = fit(x, TINY), fit(x, TINY)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's global RNG is left alone
    c = fit(x, dataclasses.replace(TINY, seed=1))
    for k, v in a.ema_model.state_dict().items():
        assert torch.equal(v, b.ema_model.state_dict()[k]), k
    assert a.history == b.history
    assert not all(torch.equal(v, c.ema_model.state_dict()[k]) for k, v in a.ema_model.state_dict().items())


def test_batch_budget_on_larger_data_is_one_pass_per_epoch() -> None:
    cfg = dataclasses.replace(TINY, batch_size=8, min_steps_per_epoch=3, epochs=1)
    res = fit(mixture(n_clips=40).features, cfg)  # 120 rows, 108 for training -> ceil(108 / 8) = 14 steps
    assert res.history[0]["step"] == 14


def test_early_stopping_stops_after_patience_and_restores_the_best_ema() -> None:
    x = mixture(n_clips=40).features
    # A vanishing learning rate: the weights, hence the (fixed-noise) validation loss, never improve
    # after epoch 1, so training must stop at epoch 1 + patience and restore epoch 1's EMA.
    cfg = dataclasses.replace(TINY, lr=1e-30, epochs=20, patience=3)
    res = fit(x, cfg)
    assert len(res.history) == 4 and res.best_epoch == 1
    # the restored EMA reproduces the best epoch's validation loss exactly
    x_val = torch.from_numpy(res.scaler.transform(x[res.val_indices]))
    assert _val_loss(res.ema_model, x_val, None, cfg) == res.history[0]["val_loss"]
    # and with real learning the best epoch is the arg-min of the recorded validation losses
    _, small = trained("small")
    vals = [h["val_loss"] for h in small.history]
    assert small.best_epoch == int(np.argmin(vals)) + 1


def test_split_videos_holds_back_whole_videos_up_to_the_share() -> None:
    groups = np.repeat(["a", "b", "c", "d"], 10)  # 4 videos of 10 rows
    for seed in range(5):
        # 0.5 of 40 rows = 20: exactly two whole videos; 0.51 -> 20.4: a third one; 0.01: one (at least one)
        for fraction, n_videos in ((0.5, 2), (0.51, 3), (0.01, 1), (0.99, 3)):  # 0.99: one video always trains
            held = split_videos(groups, fraction, seed)
            assert held.size == 10 * n_videos and np.unique(groups[held]).size == n_videos
            assert set(np.flatnonzero(np.isin(groups, groups[held]))) == set(held.tolist())
    with pytest.raises(VADInputError, match="at least 2"):
        split_videos(np.repeat(["a"], 5), 0.1, 0)


def test_early_stopping_on_held_back_videos() -> None:
    data = mixture(n_clips=40)
    x = data.features  # 120 rows
    groups = np.repeat(np.arange(8), 15).astype(str)  # 8 "videos" of 15 rows
    cfg = dataclasses.replace(TINY, epochs=6, patience=2, stop_on="videos")
    res = fit(x, cfg, groups=groups)
    # 0.1 of 120 = 12 rows -> one whole video (15 rows) held back for stopping, then 0.1 of the other 105
    # rows (round(10.5) = 10) at random for the memorization diagnostic; neither is trained on
    assert res.stop_indices.size == 15 and np.unique(groups[res.stop_indices]).size == 1
    assert res.n_val == 10 and res.n_train == 95
    assert np.intersect1d(res.stop_indices, res.val_indices).size == 0
    assert not np.isin(groups[res.val_indices], groups[res.stop_indices]).any()
    # the rows the optimiser saw: the 95 left once the held-back video and the random rows are out
    expected = sorted(set(range(120)) - set(res.stop_indices.tolist()) - set(res.val_indices.tolist()))
    assert res.fit_indices.tolist() == expected and res.fit_indices.size == res.n_train
    # the stopping loss is the held-back video's, and the best epoch is its arg-min
    stops = [h["stop_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(stops)) + 1
    assert all(h["stop_loss"] != h["val_loss"] for h in res.history)
    # the default ("rows") stops on the random rows, as before: the same numbers as without groups
    plain, with_groups = fit(x, TINY), fit(x, TINY, groups=groups)
    assert plain.stop_indices.size == 0 and [h["val_loss"] for h in plain.history] == [
        h["stop_loss"] for h in plain.history
    ]
    assert [h["val_loss"] for h in plain.history] == [h["val_loss"] for h in with_groups.history]
    with pytest.raises(VADInputError, match="groups: stop_on='videos'"):
        fit(x, cfg)
    with pytest.raises(VADInputError, match="stop_on must be one of"):
        TrainConfig(stop_on="clips")
    with pytest.raises(VADInputError, match="needs val_fraction > 0"):
        TrainConfig(stop_on="videos", val_fraction=0.0)


def test_tile_embedding_needs_tiles_in_range() -> None:
    data = mixture(n_clips=40)
    cfg = dataclasses.replace(TINY, n_tiles=3)
    tiles = data.rows["tile"].to_numpy()
    res = fit(data.features, cfg, tiles=tiles)
    assert res.model_config.n_tiles == 3
    s = score_rows(res.denoiser, data.features, ScoreConfig(n_draws=1), tiles=tiles)
    assert s.shape == (120,) and np.all(np.isfinite(s))
    with pytest.raises(VADInputError, match="tiles: required"):
        fit(data.features, cfg)
    with pytest.raises(VADInputError, match=r"tiles: indices must lie in \[0, 3\)"):
        fit(data.features, cfg, tiles=tiles + 1)
    with pytest.raises(VADInputError, match="tiles: required"):
        score_rows(res.denoiser, data.features, ScoreConfig(n_draws=1))


def test_bad_training_input_is_named() -> None:
    x = mixture(n_clips=40).features
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(VADInputError, match=r"features: 1 non-finite values in 1 rows \(first bad row: 7\)"):
        fit(bad, TINY)
    with pytest.raises(VADInputError, match="empty"):
        fit(np.zeros((0, 32), np.float32), TINY)
    with pytest.raises(VADInputError, match="2-D"):
        fit(x[0], TINY)
    with pytest.raises(VADInputError, match="need at least 2"):
        fit(x[:1], TINY)
    with pytest.raises(VADInputError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(VADInputError, match="scaler"):
        TrainConfig(scaler="robust")
    with pytest.raises(VADInputError, match="device"):
        fit(x, dataclasses.replace(TINY, device="no-such-device"))
