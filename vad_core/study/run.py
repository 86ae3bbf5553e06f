"""The parameter study: a grid of denoiser settings and scorings, each evaluated both ways.

One model is trained per noise setting (P_mean, P_std; the sampling range tied to it as
`sigma_range` says) and embedding variant, then reused for every scoring: the paper's
partial-diffusion reconstruction at each start step t of an `n_steps` schedule, and the one-step
denoising error at each sigma (units of sigma_data). Every scoring is evaluated with both AUC
protocols: frame ROC AUC of the continuous scores (raw and temporally smoothed) and the
paper-protocol AUC of the batch decisions at each threshold k. The baselines run on the same rows.

Selection (see `vad_core.study.selection`): per embedding variant, the label-free choice takes the
non-memorizing model with the lowest held-out denoising error; the denoising score's sigma where
the exact leave-one-out posterior of the unlabelled rows spreads over about `target_neighbours`
rows, the reconstruction's start step with the most reliable scores across noise draws; and k
from Otsu's threshold; the "oracle" rows are the
best by test labels. Phase 2 then trains the other widths, preprocessings and seeds around each
variant's label-free model (one axis at a time), so seed spread is measured where it matters.

No MLflow or Dagster here: `callback(TrainedSetting)` is called once per trained model (with the
model and its table rows) and the caller logs what it likes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.diffusion.sampling import sigma_range
from vad_core.diffusion.training import TrainResult, fit, trained_denoiser
from vad_core.errors import VADInputError
from vad_core.evaluation.metrics import (
    average_precision,
    clips_to_frames,
    frame_labels,
    paper_protocol_auc,
    roc_auc,
    smooth_scores,
)
from vad_core.scoring.rows import clip_scores, row_keys_for
from vad_core.scoring.scorers import make_scorer
from vad_core.scoring.thresholds import batch_decisions
from vad_core.study.data import StudyData
from vad_core.study.grid import StudyConfig, StudyResult, TrainedSetting, TrainSetting, score_variants, variant_name
from vad_core.study.selection import mark_selections, otsu_k, posterior_neighbours, reliability

_RETEST_SEED = 7717  # offset of the second, independent scoring used for reliability


class Evaluator:
    """Row scores -> clip scores (max over tiles) -> batch decisions per k -> frame figures."""

    def __init__(self, data: StudyData, ks: tuple[float, ...], smoothing_sigma: float | None, batch_size: int) -> None:
        self.data, self.ks, self.smoothing, self.batch_size = data, ks, smoothing_sigma, batch_size
        self._labels: np.ndarray | None = None

    def clips(self, scores: np.ndarray) -> pd.DataFrame:
        """Clip table sorted by video and clip (the order batches are cut in)."""
        return clip_scores(self.data.rows.assign(score=np.asarray(scores, dtype=np.float64)))

    def __call__(self, scores: np.ndarray) -> pd.DataFrame:
        """One row per k: frame_auc, frame_auc_smoothed, frame_ap, paper_auc, flagged_share, otsu_k."""
        clips = self.clips(scores)
        on = clips["video_id"].astype(str).isin(self.data.evaluated).to_numpy()
        frames = clips_to_frames(clips[on].assign(anomalous=False), self.data.n_frames)
        if self._labels is None:
            self._labels = frame_labels(frames, self.data.ground_truth)
        y = self._labels
        s = frames["score"].to_numpy()
        auc, ap = roc_auc(y, s), average_precision(y, s)
        smoothed = (
            roc_auc(y, smooth_scores(frames, self.smoothing)["score"].to_numpy()) if self.smoothing else float("nan")
        )
        k_free = otsu_k(clips["score"].to_numpy(), self.ks)
        out = []
        for k in self.ks:
            dec = batch_decisions(clips["score"].to_numpy(), k=k, batch_size=self.batch_size)
            flags = clips_to_frames(clips[on].assign(anomalous=dec.anomalous[on]), self.data.n_frames)["anomalous"]
            out.append(
                {
                    "k": float(k),
                    "frame_auc": auc,
                    "frame_auc_smoothed": smoothed,
                    "frame_ap": ap,
                    "paper_auc": paper_protocol_auc(y, flags.to_numpy()),
                    "flagged_share": float(dec.anomalous.mean()),
                    "otsu_k": k_free,
                }
            )
        return pd.DataFrame(out)


def data_neighbours(data: StudyData, config: StudyConfig) -> dict[str, float]:
    """`{"sigma=8": n_eff, ...}`: `posterior_neighbours` of the training rows in the global-scaled space.

    Global scaling gives sigma_data = 1, so sigma here is in units of sigma_data as in the scores.
    """
    if "denoising" not in config.score_types:
        return {}
    x = data.features[data.train_mask]
    scaled = FeatureScaler("global").fit(x).transform(x)
    counts = posterior_neighbours(
        np.asarray(scaled),
        config.sigmas,
        tiles=data.tiles[data.train_mask] if config.tile_embedding else None,
        seed=config.score_seed,
    )
    return {f"sigma={s:g}": float(c) for s, c in zip(config.sigmas, counts, strict=True)}


def _retest_rows(data: StudyData, n: int, seed: int) -> np.ndarray:
    idx = np.flatnonzero(np.asarray(data.train_mask, dtype=bool))
    if idx.size > n:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))
    return idx


def train_and_score(
    data: StudyData, setting: TrainSetting, config: StudyConfig, evaluator: Evaluator, keys: np.ndarray
) -> tuple[TrainResult, dict[str, Any], pd.DataFrame]:
    """Fit one model and apply every scoring variant; returns (result, model summary, table rows)."""
    x, tiles = data.features, data.tiles
    n_tiles = int(tiles.max()) + 1 if config.tile_embedding else 0
    tc = setting.train_config(config.train, n_tiles)
    train_idx = np.flatnonzero(np.asarray(data.train_mask, dtype=bool))
    start = time.perf_counter()
    result = fit(x[train_idx], tc, tiles=tiles[train_idx] if n_tiles else None)
    train_seconds = time.perf_counter() - start
    den = trained_denoiser(result)
    use_tiles = tiles if n_tiles else None

    def sub_score(rows: np.ndarray, sc: ScoreConfig) -> np.ndarray:
        return score_rows(den, x[rows], sc, tiles=None if use_tiles is None else use_tiles[rows], row_keys=keys[rows])

    ref = ScoreConfig(
        score_type="denoising", sigma=config.reference_sigma, n_draws=config.n_draws, seed=config.score_seed
    )
    # rows the optimiser saw: neither the random held-back rows nor whole videos held back for stopping
    val_rows = train_idx[result.val_indices]
    fit_rows = train_idx[result.fit_indices]
    held_out = float(sub_score(val_rows, ref).mean()) if val_rows.size else float("nan")
    n_cmp = max(1, min(fit_rows.size, max(val_rows.size, 256)))
    fit_err = float(sub_score(fit_rows[np.linspace(0, fit_rows.size - 1, n_cmp).astype(int)], ref).mean())
    val_losses = [h["val_loss"] for h in result.history if h.get("val_loss") is not None]
    lo, hi = sigma_range(setting.P_mean, setting.P_std)
    summary = {
        "features": data.name,
        **setting.to_dict(),
        "hidden": "-".join(map(str, setting.hidden)),
        "sigma_min": lo,
        "sigma_max": hi,
        "sigma_data": float(result.sigma_data),
        "epochs_run": len(result.history),
        "best_epoch": int(result.best_epoch),
        "best_val_loss": float(min(val_losses)) if val_losses else float("nan"),
        "memorization_auc": float("nan") if result.memorization_auc is None else float(result.memorization_auc),
        "held_out_error": held_out,
        "train_error": fit_err,
        "train_seconds": train_seconds,
    }
    retest = _retest_rows(data, config.reliability_rows, config.score_seed)
    parts = []
    for sc in score_variants(config):
        scores = score_rows(den, x, sc, tiles=use_tiles, row_keys=keys)
        again = sub_score(retest, replace(sc, seed=sc.seed + _RETEST_SEED))
        figures = evaluator(scores)
        parts.append(
            figures.assign(
                variant=variant_name(sc),
                score_type=sc.score_type,
                start_step=sc.start_step if sc.score_type == "reconstruction" else -1,
                sigma=sc.sigma if sc.score_type == "denoising" else float("nan"),
                n_draws=sc.n_draws,
                reliability=reliability(scores[retest], again),
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    model_cols = {
        k: summary[k]
        for k in (
            "features",
            "setting_id",
            "phase",
            "P_mean",
            "P_std",
            "sigma_min",
            "sigma_max",
            "embedding",
            "hidden",
            "scaler",
            "seed",
            "memorization_auc",
            "held_out_error",
            "best_epoch",
            "epochs_run",
        )
    }
    rows = rows.assign(method=f"diffusion-{setting.embedding}", **model_cols)
    return result, summary, rows


def baseline_rows(data: StudyData, config: StudyConfig, evaluator: Evaluator) -> pd.DataFrame:
    """Every baseline fitted per tile position on the training rows and scored on all rows."""
    x, tiles, train = data.features, data.tiles, data.train_mask
    parts = []
    for name in config.baselines:
        scorer = make_scorer(name, **config.baseline_args(name)).fit(x[train], tiles[train])
        parts.append(
            evaluator(scorer.score(x, tiles)).assign(method=name, features=data.name, score_type=name, variant=name)
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def run_study(
    datas: list[StudyData] | StudyData,
    config: StudyConfig = StudyConfig(),
    callback: Callable[[TrainedSetting], Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> StudyResult:
    """Run the study on one or more feature sets; see the module docstring."""
    datas = [datas] if isinstance(datas, StudyData) else list(datas)
    if not datas:
        raise VADInputError("run_study: no feature sets given")
    start = time.perf_counter()
    say = log or (lambda _msg: None)
    tables, models = [], []
    for data in datas:
        evaluator = Evaluator(data, config.ks, config.smoothing_sigma, config.threshold_batch_size)
        keys = row_keys_for(data.rows)
        neighbours = data_neighbours(data, config)
        tables_of_data: list[pd.DataFrame] = []

        def run(
            setting: TrainSetting,
            data: StudyData = data,
            evaluator: Evaluator = evaluator,
            keys: np.ndarray = keys,
            neighbours: dict[str, float] = neighbours,
            tables_of_data: list[pd.DataFrame] = tables_of_data,
        ) -> None:
            result, summary, rows = train_and_score(data, setting, config, evaluator, keys)
            models.append(summary)
            rows["posterior_neighbours"] = rows["variant"].map(neighbours)
            tables_of_data.append(rows)
            say(
                f"{data.name} {setting.setting_id}: {summary['train_seconds']:.1f}s, best epoch "
                f"{summary['best_epoch']}, memorization {summary['memorization_auc']:.3f}, "
                f"held-out {summary['held_out_error']:.4f}, best frame AUC {rows['frame_auc'].max():.4f}"
            )
            if callback is not None:
                callback(TrainedSetting(data.name, setting, result.config, result, summary, rows))

        for emb in config.embeddings:
            for pm in config.P_means:
                for ps in config.P_stds:
                    run(TrainSetting(pm, ps, emb, config.widths[0], config.scalers[0], config.seeds[0]))
        grid = mark_selections(pd.concat(tables_of_data, ignore_index=True), pd.DataFrame(models), config)
        for emb in config.embeddings:  # phase 2 around the label-free model of each embedding
            chosen = grid[grid["label_free"] & (grid["method"] == f"diffusion-{emb}")]
            if chosen.empty:
                continue
            c = chosen.iloc[0]
            around: dict[str, Any] = dict(P_mean=float(c["P_mean"]), P_std=float(c["P_std"]), embedding=emb)
            for w in config.widths[1:]:
                run(TrainSetting(**around, hidden=w, scaler=config.scalers[0], seed=config.seeds[0], phase="width"))
            for s in config.scalers[1:]:
                run(TrainSetting(**around, hidden=config.widths[0], scaler=s, seed=config.seeds[0], phase="scaler"))
            for seed in config.seeds[1:]:
                run(TrainSetting(**around, hidden=config.widths[0], scaler=config.scalers[0], seed=seed, phase="seed"))
        say(f"{data.name}: baselines {list(config.baselines)}")
        tables_of_data.append(baseline_rows(data, config, evaluator))
        tables.append(pd.concat(tables_of_data, ignore_index=True))
    table = pd.concat(tables, ignore_index=True)
    models_df = pd.DataFrame(models)
    table = mark_selections(table, models_df, config)
    first = [
        "features",
        "method",
        "score_type",
        "setting_id",
        "phase",
        "P_mean",
        "P_std",
        "sigma_min",
        "sigma_max",
        "embedding",
        "hidden",
        "scaler",
        "seed",
        "variant",
        "start_step",
        "sigma",
        "n_draws",
        "k",
        "frame_auc",
        "frame_auc_smoothed",
        "frame_ap",
        "paper_auc",
        "flagged_share",
        "otsu_k",
        "reliability",
        "posterior_neighbours",
        "held_out_error",
        "memorization_auc",
        "best_epoch",
        "epochs_run",
        "label_free",
        "oracle",
        "oracle_paper",
    ]
    table = table[[c for c in first if c in table.columns] + [c for c in table.columns if c not in first]]
    return StudyResult(
        table=table,
        models=models_df,
        seconds=time.perf_counter() - start,
        config=config,
        data_names=[d.name for d in datas],
    )


__all__ = ["Evaluator", "baseline_rows", "data_neighbours", "run_study", "train_and_score"]
