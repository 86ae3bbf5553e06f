"""Label-free choices: what can be decided from unlabelled rows alone, and the study's selections.

In the unsupervised setting every row is an unlabelled training row, so a setting may only be
chosen by a criterion computed from those rows (findings.md):

- `reliability(a, b)`: test-retest reliability of a score across independent noise draws, the
  Spearman rank correlation of two scorings of the same rows with different noise seeds. A
  score that is mostly noise (a tiny sigma, a reconstruction started from pure noise) ranks rows
  differently on every draw and gets a low value; it picks the score's noise level or start step.
- held-out error: the mean one-step denoising error of rows held back from training (computed
  by the study). Lower = the model generalizes to rows it has not seen instead of returning the
  rows it was fitted on; comparable between models fitted on the same rows and scale. It picks
  the noise distribution and the network.
- memorization AUC (training.memorization_auc): models above a limit are excluded first (and
  the least memorizing one is taken when all are above it).
- `posterior_neighbours` / `choose_sigma`: how many rows the exact leave-one-out denoiser of the
  unlabelled rows averages over at each sigma. The denoising score's sigma is chosen where that
  is about the kNN baseline's k (5): at smaller sigma the ideal denoiser explains every row by
  its nearest twin (a trained model returns the anomalies it saw), at larger sigma the score
  degenerates to the distance to the mean. On Ped2 tiles (scaled, sigma_data = 1) the median
  count was 1.0 / 1.1 / 8.7 / 345 at sigma 2 / 4 / 8 / 16, and sigma 8 scored best for every
  model trained on noise levels that reach it (docs/results.md).
- `otsu_k(scores, ks)`: the threshold multiplier k whose mu + k * std lies closest to Otsu's
  threshold of the clip scores (the cut that best splits them in two groups by between-class
  variance): the decision threshold from the score distribution itself.

Test labels are never read here; choices made with them are the study's "oracle".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from vad_core.diffusion.label_free import (
    SIGMA_CANDIDATES,
    choose_sigma,
    label_free_sigma,
    otsu_threshold,
    posterior_neighbours,
)
from vad_core.errors import VADInputError
from vad_core.study.grid import StudyConfig


def reliability(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two scorings `(N,)` of the same rows; NaN when either is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 3:
        raise VADInputError(f"reliability: need two 1-D score arrays of equal length >= 3, got {a.shape}, {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def otsu_k(scores: np.ndarray, ks: Sequence[float]) -> float:
    """The k of `ks` whose mu + k * std (population std) is closest to Otsu's threshold of `scores`."""
    if len(ks) == 0:
        raise VADInputError("otsu_k: empty list of k values")
    s = np.asarray(scores, dtype=np.float64)
    sd = float(s.std())
    if sd == 0:
        return float(ks[0])
    target = (otsu_threshold(s) - float(s.mean())) / sd
    return float(min(ks, key=lambda k: (abs(k - target), k)))


def choose_model(models: pd.DataFrame, max_memorization_auc: float = 0.6) -> Any:  # an index label of the table
    """Index (label) of the chosen model: lowest `held_out_error` among the non-memorizing ones.

    `models` has columns `held_out_error` and `memorization_auc` (one row per trained model, all
    fitted on the same rows and scale). Memorization comes first: on Ped2 the models that
    memorized most had the *lowest* held-out error and the worst anomaly scores (a memorized
    anomaly scores as normal), so the held-out error only ranks models whose memorization AUC is
    at most the limit; when none is, the least memorizing model is taken. Ties go to the first row.
    """
    need = {"held_out_error", "memorization_auc"}
    if not need <= set(models.columns) or models.empty:
        raise VADInputError(f"choose_model: need a non-empty table with columns {sorted(need)}")
    mem = models["memorization_auc"].astype(float)
    ok = models[mem <= max_memorization_auc]
    if ok.empty:
        return mem.idxmin() if mem.notna().any() else models.index[0]
    err = ok["held_out_error"].astype(float)
    return err.idxmin() if err.notna().any() else ok.index[0]


def choose_variant(variants: pd.DataFrame) -> Any:  # an index label of the table
    """Index (label) of the scoring variant with the highest `reliability`; ties go to the first row."""
    if "reliability" not in variants.columns or variants.empty:
        raise VADInputError("choose_variant: need a non-empty table with a 'reliability' column")
    rel = variants["reliability"].astype(float)
    if rel.isna().all():
        return variants.index[0]
    return rel.idxmax()


def mark_selections(table: pd.DataFrame, models: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Set `label_free`, `oracle` (best frame AUC) and `oracle_paper` (best paper AUC) per method group.

    A method group is one (features, method, score type). Seed replicates are never chosen
    from (they measure spread); the oracle may pick any other axis, the label-free choice any
    model on the first scaler (held-out errors of different scalings are not comparable).
    """
    table = table.assign(label_free=False, oracle=False, oracle_paper=False)
    for _, grp in table.groupby(["features", "method", "score_type"], sort=False):
        if "phase" in grp.columns:
            grp = grp[grp["phase"].fillna("grid") != "seed"]
        best = grp.sort_values(["frame_auc", "paper_auc"], ascending=False, kind="stable").index[0]
        table.loc[best, "oracle"] = True
        table.loc[grp["paper_auc"].idxmax(), "oracle_paper"] = True
        table.loc[label_free_row(grp, models, config), "label_free"] = True
    return table


def label_free_row(grp: pd.DataFrame, models: pd.DataFrame, config: StudyConfig) -> int:
    """The label-free row of one method group (rows of one method and score type, k-expanded).

    Diffusion: the model by `choose_model`, then its variant by `choose_variant`; every scorer:
    the k nearest the variant's Otsu k.
    """
    if "setting_id" in grp.columns and grp["setting_id"].notna().any():
        cand = models[
            models["setting_id"].isin(grp["setting_id"].unique())
            & (models["features"] == grp["features"].iloc[0])
            & (models["scaler"] == config.scalers[0])
            & (models["phase"] != "seed")
        ]
        if not cand.empty:
            cand = cand.reset_index(drop=True)
            model_id = cand.loc[choose_model(cand, config.max_memorization_auc), "setting_id"]
            grp = grp[grp["setting_id"] == model_id]
        variants = grp.drop_duplicates("variant")
        if (variants["score_type"] == "denoising").all() and variants["posterior_neighbours"].notna().all():
            sigma = choose_sigma(
                variants["posterior_neighbours"].tolist(), variants["sigma"].tolist(), config.target_neighbours
            )
            grp = grp[grp["sigma"] == sigma]
        else:
            grp = grp[grp["variant"] == variants.loc[choose_variant(variants), "variant"]]
    k_free = float(grp["otsu_k"].iloc[0])
    return grp.index[int(np.argmin(np.abs(grp["k"].to_numpy() - k_free)))]


__all__ = [
    "SIGMA_CANDIDATES",
    "choose_model",
    "choose_sigma",
    "choose_variant",
    "label_free_row",
    "label_free_sigma",
    "mark_selections",
    "otsu_k",
    "otsu_threshold",
    "posterior_neighbours",
    "reliability",
]
