"""The parameter study on generated features: table, selections, heatmaps, agreement with direct scoring."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.diffusion.training import TrainConfig, trained_denoiser
from vad_core.errors import VADInputError
from vad_core.scoring.rows import row_keys_for
from vad_core.scoring.scorers import make_scorer
from vad_core.study import StudyConfig, StudyData, run_study
from vad_core.study.report import comparison_markdown, selections, study_heatmaps
from vad_core.study.selection import (
    choose_model,
    choose_sigma,
    choose_variant,
    otsu_k,
    otsu_threshold,
    posterior_neighbours,
    reliability,
)

DIM, TILES, CLIPS, CLIP_LEN = 16, 3, 20, 8
VIDEOS = ("train/01", "train/02", "test/01", "test/02")
ANOMALOUS = {"test/01": (6, 12), "test/02": (2, 7)}  # clip ranges [a, b) holding a planted tile


def generated(seed: int = 0) -> StudyData:
    """Two Gaussian clusters per tile position; anomalous clips get one tile far off the support."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (TILES, 2, DIM))
    rows, feats, gt = [], [], []
    for vid in VIDEOS:
        a, b = ANOMALOUS.get(vid, (0, 0))
        if b > a:
            gt.append((vid, a * CLIP_LEN, b * CLIP_LEN))
        for clip in range(CLIPS):
            planted = rng.integers(TILES) if a <= clip < b else -1
            for tile in range(TILES):
                x = centres[tile, rng.integers(2)] + rng.normal(0, 1, DIM)
                if tile == planted:
                    d = rng.normal(size=DIM)
                    x = centres[tile, 0] + 10 * d / np.linalg.norm(d)
                rows.append((vid, clip, clip * CLIP_LEN, (clip + 1) * CLIP_LEN, tile))
                feats.append(x)
    table = pd.DataFrame(rows, columns=["video_id", "clip", "start_frame", "end_frame", "tile"])
    truth = pd.DataFrame(gt, columns=["video_id", "start_frame", "end_frame"]).assign(source="generated")
    return StudyData(
        name="gen/tiles",
        rows=table,
        features=np.asarray(feats, np.float32),
        n_frames={v: CLIPS * CLIP_LEN for v in VIDEOS},
        ground_truth=truth,
        evaluated=("test/01", "test/02"),
        backbone="generated",
    )


TRAIN = TrainConfig(
    epochs=4,
    batch_size=64,
    min_steps_per_epoch=6,
    lr=2e-3,
    fourier_features=16,
    emb_dim=16,
    patience=0,
    device="cpu",
    memorization_rows=256,
)
CONFIG = StudyConfig(
    P_means=(-1.2, 0.0),
    P_stds=(1.0,),
    embeddings=("film", "concat"),
    widths=((32, 16), (48, 24)),
    scalers=("global",),
    seeds=(0, 1),
    train=TRAIN,
    start_steps=(4, 9),
    sigmas=(1.0, 2.0),
    n_draws=2,
    baselines=("knn", "pca"),
    smoothing_sigma=4.0,
    reliability_rows=120,
    baseline_kwargs=(("pca", (("n_components", 4),)),),
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@lru_cache(maxsize=1)
def study():
    data = generated()
    trained = []
    result = run_study(data, CONFIG, callback=trained.append)
    return data, result, trained


def test_table_has_every_setting_and_both_protocols():
    _, result, trained = study()
    t = result.table
    # phase 1: 2 noise x 2 embeddings; phase 2 per embedding: 1 more width + 1 more seed
    assert len(trained) == len(result.models) == 4 + 2 * 2
    assert sorted(result.models["phase"].value_counts().items()) == [("grid", 4), ("seed", 2), ("width", 2)]
    diff = t[t["method"].str.startswith("diffusion")]
    assert len(diff) == 8 * (2 + 2) * 5  # models x (t variants + sigma variants) x k
    assert set(t["method"]) == {"diffusion-film", "diffusion-concat", "knn", "pca"}
    assert len(t[t["method"] == "knn"]) == 5
    for col in ("frame_auc", "frame_auc_smoothed", "paper_auc"):
        assert t[col].between(0, 1).all(), col
    recon = diff[diff["score_type"] == "reconstruction"]
    assert set(recon["start_step"]) == {4, 9} and recon["sigma"].isna().all()
    # the sampling range is tied to the noise setting: exp(P_mean +- 5 P_std)
    np.testing.assert_allclose(diff["sigma_max"], np.exp(diff["P_mean"] + 5 * diff["P_std"]), rtol=1e-6)
    # the planted anomalies are off the support: kNN separates them almost perfectly
    assert t.loc[t["method"] == "knn", "frame_auc"].iloc[0] > 0.95


def test_oracle_and_label_free_flags():
    _, result, _ = study()
    t, models = result.table, result.models
    for (_, method, st), grp in t.groupby(["features", "method", "score_type"]):
        assert grp["oracle"].sum() == grp["label_free"].sum() == grp["oracle_paper"].sum() == 1
        chosen = grp[~(grp["phase"] == "seed")] if method.startswith("diffusion") else grp
        assert grp.loc[grp["oracle"], "frame_auc"].iloc[0] == chosen["frame_auc"].max()
        assert grp.loc[grp["oracle_paper"], "paper_auc"].iloc[0] == chosen["paper_auc"].max()
        lf = grp[grp["label_free"]].iloc[0]
        # k: nearest to the Otsu k of that variant's clip scores
        assert lf["k"] == min(CONFIG.ks, key=lambda k: abs(k - lf["otsu_k"]))
        if not method.startswith("diffusion"):
            continue
        # model: lowest held-out error among the non-memorizing, non-seed models of this embedding
        cand = models[(models["embedding"] == lf["embedding"]) & (models["phase"] != "seed")]
        ok = cand[cand["memorization_auc"] <= CONFIG.max_memorization_auc]
        if len(ok):
            assert lf["held_out_error"] == ok["held_out_error"].min()
        else:
            assert lf["memorization_auc"] == cand["memorization_auc"].min()
        same = grp[grp["setting_id"] == lf["setting_id"]].drop_duplicates("variant")
        if st == "reconstruction":  # start step: the most reliable scoring of that model
            assert lf["reliability"] == same["reliability"].max()
        else:  # sigma: posterior spread nearest the target number of rows (log scale)
            gap = np.abs(np.log(same["posterior_neighbours"]) - np.log(CONFIG.target_neighbours))
            assert lf["sigma"] == same["sigma"].to_numpy()[np.argmin(gap.to_numpy())]


def test_table_agrees_with_scoring_each_setting_directly():
    data, result, trained = study()
    t = result.table
    truth = np.zeros((len(data.evaluated), CLIPS * CLIP_LEN), dtype=int)
    for i, vid in enumerate(data.evaluated):
        a, b = ANOMALOUS[vid]
        truth[i, a * CLIP_LEN : b * CLIP_LEN] = 1
    labels = truth.ravel()
    keys = row_keys_for(data.rows)
    by_id = {ts.setting.setting_id: ts for ts in trained}
    for _, row in t[t["label_free"] & t["method"].str.startswith("diffusion")].iterrows():
        ts = by_id[row["setting_id"]]
        sc = ScoreConfig(
            score_type=row["score_type"],
            n_steps=CONFIG.n_steps,
            start_step=int(row["start_step"]) if row["start_step"] >= 0 else 9,
            sigma=float(row["sigma"]) if row["sigma"] == row["sigma"] else 2.0,
            n_draws=CONFIG.n_draws,
            seed=CONFIG.score_seed,
        )
        scores = score_rows(trained_denoiser(ts.result), data.features, sc, tiles=data.tiles, row_keys=keys)
        clip = data.rows.assign(score=scores).groupby(["video_id", "clip"], sort=True)["score"].max()
        frames = np.concatenate([np.repeat(clip.loc[vid].to_numpy(), CLIP_LEN) for vid in data.evaluated])
        assert row["frame_auc"] == pytest.approx(roc_auc_score(labels, frames), abs=1e-12)
        # paper protocol: one batch of every clip (sorted by video, clip), threshold mean + k * std
        all_clips = clip.to_numpy()
        flag = all_clips > all_clips.mean() + row["k"] * all_clips.std()
        flag_frames = np.concatenate([np.repeat(flag[clip.index.get_loc(vid)], CLIP_LEN) for vid in data.evaluated])
        tpr, tnr = flag_frames[labels == 1].mean(), (~flag_frames[labels == 0]).mean()
        assert row["paper_auc"] == pytest.approx((tpr + tnr) / 2, abs=1e-12)
    # a baseline row: kNN per tile position, fitted on every row
    knn = make_scorer("knn").fit(data.features, data.tiles).score(data.features, data.tiles)
    clip = data.rows.assign(score=knn).groupby(["video_id", "clip"], sort=True)["score"].max()
    frames = np.concatenate([np.repeat(clip.loc[vid].to_numpy(), CLIP_LEN) for vid in data.evaluated])
    assert t.loc[t["method"] == "knn", "frame_auc"].iloc[0] == pytest.approx(roc_auc_score(labels, frames))


def test_report_heatmaps_and_comparison(tmp_path):
    _, result, _ = study()
    figures = study_heatmaps(result.table)
    # per embedding: reconstruction (noise, t) + denoising (sigma)
    assert sorted(figures) == sorted(
        f"gen_tiles_{e}_{k}.png" for e in ("film", "concat") for k in ("recon_noise", "recon_t", "denoise_sigma")
    )
    for png in figures.values():
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    md = comparison_markdown(result.table)
    lines = md.splitlines()
    assert len(lines) == 2 + 4 + 2  # header, rule, 4 diffusion rows, knn, pca
    knn_auc = result.table.loc[result.table["method"] == "knn", "frame_auc"].iloc[0]
    assert any(line.startswith("| knn |") and f"{100 * knn_auc:.1f}" in line for line in lines)
    sel = selections(result.table)
    assert set(sel["selection"]) == {"label-free", "oracle (test labels)", "oracle paper protocol (test labels)"}


def test_selection_criteria_by_hand():
    # Otsu on two clusters {0, 1, 2} and {10, 11}: the cut lies between 2 and 10
    s = np.array([0.0, 1.0, 2.0, 10.0, 11.0])
    assert otsu_threshold(s) == pytest.approx(6.0)
    # mu = 4.8, std = sqrt(mean((s - 4.8)^2)) = sqrt(23.76): target k = 1.2 / 4.874... = 0.246 -> 0.3
    assert otsu_k(s, (0.1, 0.3, 0.5, 0.7, 1.0)) == 0.3
    a = np.arange(10.0)
    assert reliability(a, a**3) == pytest.approx(1.0)
    assert reliability(a, -a) == pytest.approx(-1.0)
    models = pd.DataFrame({"held_out_error": [0.5, 0.2, 0.3], "memorization_auc": [0.5, 0.9, 0.55]})
    assert choose_model(models) == 2  # the lowest error belongs to a memorizing model
    assert choose_model(models, max_memorization_auc=1.0) == 1
    assert choose_model(models, max_memorization_auc=0.4) == 0  # all memorize: the least memorizing
    assert choose_variant(pd.DataFrame({"reliability": [0.2, np.nan, 0.7]}, index=[5, 6, 7])) == 7
    with pytest.raises(VADInputError):
        reliability(a, a[:5])


def test_posterior_neighbours_by_hand():
    # rows at 0, 1, 3 on a line; leave-one-out weights exp(-d^2 / 2 sigma^2) over the two others
    x = np.array([[0.0], [1.0], [3.0]])

    def n_eff(d2a: float, d2b: float, sigma: float) -> float:
        wa, wb = np.exp(-d2a / (2 * sigma**2)), np.exp(-d2b / (2 * sigma**2))
        return (wa + wb) ** 2 / (wa**2 + wb**2)

    expected = [np.median([n_eff(1, 9, s), n_eff(1, 4, s), n_eff(4, 9, s)]) for s in (1.0, 1e6)]
    np.testing.assert_allclose(posterior_neighbours(x, (1.0, 1e6)), expected, rtol=1e-9)
    assert expected[1] == pytest.approx(2.0)  # huge sigma: both other rows weigh alike
    # with tiles, only the same tile position counts: row 2 alone in its tile would have no neighbour
    pair = posterior_neighbours(np.array([[0.0], [1.0], [5.0], [5.5]]), (1.0,), tiles=np.array([0, 0, 1, 1]))
    assert pair[0] == pytest.approx(1.0)  # exactly one candidate row each
    assert choose_sigma([1.0, 1.1, 8.7, 345.0], (2.0, 4.0, 8.0, 16.0)) == 8.0
    assert choose_sigma([1.0, 3.0, 9.0], (1.0, 2.0, 3.0), target=4.0) == 2.0


def test_bad_study_input_is_named():
    data = generated()
    with pytest.raises(VADInputError, match="evaluated"):
        StudyData(
            name="x",
            rows=data.rows,
            features=data.features,
            n_frames=data.n_frames,
            ground_truth=data.ground_truth,
            evaluated=("nope",),
        )
    with pytest.raises(VADInputError, match="score_types"):
        replace(CONFIG, score_types=("bogus",))
