"""The parameter study: a grid of denoiser settings and scorings, each evaluated both ways.

One model is trained per noise setting (P_mean, P_std; the sampling range tied to it as
`sigma_range` says) and embedding variant, then reused for every scoring: the paper's
partial-diffusion reconstruction at each start step t of an `n_steps` schedule, and the one-step
denoising error at each sigma (units of sigma_data). Every scoring is evaluated with both AUC
protocols: frame ROC AUC of the continuous scores (raw and temporally smoothed) and the
paper-protocol AUC of the batch decisions at each threshold k. The baselines run on the same rows.

Selection (see `vad_core.selection`): per embedding variant, the label-free choice takes the
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

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from vad_core.scoring.scorers import make_scorer
from vad_core.errors import VADInputError, check_features
from vad_core.io.feature_tables import read_clip_features
from vad_core.metrics import average_precision, clips_to_frames, frame_labels, paper_protocol_auc, roc_auc, smooth_scores
from vad_core.diffusion.sampling import sigma_range
from vad_core.diffusion.reconstruction import SCORE_TYPES, ScoreConfig, score_rows
from vad_core.scoring.rows import clip_scores, row_keys_for
from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.selection import choose_model, choose_sigma, choose_variant, otsu_k, posterior_neighbours, reliability
from vad_core.io.tables import feature_matrix
from vad_core.scoring.thresholds import batch_decisions
from vad_core.diffusion.training import TrainConfig, TrainResult, fit, trained_denoiser

BASELINES = ("knn", "pca", "iforest", "gcl_ae", "gcl")
ROW_COLUMNS = ("video_id", "clip", "start_frame", "end_frame", "tile")
# A short budget with early stopping on the 10% held-back rows: the whole default grid fits in
# under 30 minutes on 2 CPU cores for Ped2-sized data (~700 rows).
STUDY_TRAIN = TrainConfig(epochs=30, min_steps_per_epoch=20, lr=1e-3, patience=5)
_RETEST_SEED = 7717  # offset of the second, independent scoring used for reliability


@dataclass
class StudyData:
    """One feature set: rows `(N,)` (video_id, clip, start_frame, end_frame, tile), features `(N, D)`.

    `n_frames` and `ground_truth` cover the `evaluated` videos; `train_mask` `(N,)` picks the
    rows models are fitted on (None: all, the unsupervised protocol).
    """

    name: str
    rows: pd.DataFrame
    features: np.ndarray
    n_frames: Mapping[str, int]
    ground_truth: pd.DataFrame
    evaluated: tuple[str, ...]
    train_mask: np.ndarray | None = None
    backbone: str = ""

    def __post_init__(self) -> None:
        self.features = check_features(self.features, name=f"{self.name}: features")
        missing = [c for c in ROW_COLUMNS if c not in self.rows.columns]
        if missing:
            raise VADInputError(f"{self.name}: row table misses column(s) {missing}")
        if len(self.rows) != self.features.shape[0]:
            raise VADInputError(f"{self.name}: {len(self.rows)} rows but {self.features.shape[0]} feature rows")
        self.rows = self.rows.reset_index(drop=True)
        if self.train_mask is None:
            self.train_mask = np.ones(len(self.rows), dtype=bool)
        self.train_mask = np.asarray(self.train_mask, dtype=bool)
        if self.train_mask.shape != (len(self.rows),) or not self.train_mask.any():
            raise VADInputError(f"{self.name}: train_mask must be a non-empty boolean mask over the rows")
        self.evaluated = tuple(sorted(set(self.evaluated)))
        present = set(self.rows["video_id"].astype(str))
        absent = [v for v in self.evaluated if v not in present or v not in self.n_frames]
        if not self.evaluated or absent:
            raise VADInputError(f"{self.name}: evaluated videos without rows or frame counts: {absent or 'none given'}")

    @property
    def tiles(self) -> np.ndarray:
        return self.rows["tile"].to_numpy(np.int64)


@dataclass(frozen=True)
class StudyConfig:
    """The grid. Phase 1: P_means x P_stds x embeddings at widths[0], scalers[0], seeds[0];
    phase 2: each further width, scaler and seed around each embedding's label-free model."""

    P_means: tuple[float, ...] = (-2.4, -1.2, 0.0)
    P_stds: tuple[float, ...] = (0.6, 1.2, 1.8)
    embeddings: tuple[str, ...] = ("film", "concat")
    widths: tuple[tuple[int, ...], ...] = ((64, 32, 16), (256, 128, 64), (1024, 512, 256))
    scalers: tuple[str, ...] = ("global", "per_dim")
    seeds: tuple[int, ...] = (0, 1, 2)
    tile_embedding: bool = True  # one pooled model with a learned tile-position embedding
    train: TrainConfig = STUDY_TRAIN  # base; P_mean, P_std, embedding, hidden, scaler, seed, n_tiles set per setting
    score_types: tuple[str, ...] = ("reconstruction", "denoising")
    n_steps: int = 10
    start_steps: tuple[int, ...] = tuple(range(10))
    sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # denoising score, units of sigma_data
    n_draws: int = 8
    sampler: str = "lms"
    score_seed: int = 0
    ks: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 1.0)
    smoothing_sigma: float | None = 8.0  # frames; None = no smoothed column
    threshold_batch_size: int = 8192
    reference_sigma: float = 2.0  # held-out denoising error at this sigma (units of sigma_data)
    target_neighbours: float = 5.0  # label-free denoising sigma: posterior spread over about this many rows
    reliability_rows: int = 2048
    max_memorization_auc: float = 0.6
    baselines: tuple[str, ...] = BASELINES
    baseline_kwargs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # (name, ((arg, value), ...))

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(tuple(int(h) for h in w) for w in self.widths))
        for name in ("P_means", "P_stds", "embeddings", "widths", "scalers", "seeds", "score_types", "ks"):
            if len(getattr(self, name)) == 0:
                raise VADInputError(f"StudyConfig.{name}: must not be empty")
        bad = [s for s in self.score_types if s not in SCORE_TYPES]
        if bad:
            raise VADInputError(f"StudyConfig.score_types: unknown {bad} (known: {SCORE_TYPES})")
        if any(not 0 <= t < self.n_steps for t in self.start_steps):
            raise VADInputError(f"StudyConfig.start_steps: must lie in [0, {self.n_steps})")
        if "reconstruction" in self.score_types and not self.start_steps:
            raise VADInputError("StudyConfig.start_steps: needed for the reconstruction score")
        if "denoising" in self.score_types and not self.sigmas:
            raise VADInputError("StudyConfig.sigmas: needed for the denoising score")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d

    def baseline_args(self, name: str) -> dict[str, Any]:
        return dict(dict(self.baseline_kwargs).get(name, ()))


@dataclass(frozen=True)
class TrainSetting:
    """One trained model of the study."""

    P_mean: float
    P_std: float
    embedding: str
    hidden: tuple[int, ...]
    scaler: str
    seed: int
    phase: str = "grid"  # grid | width | scaler | seed

    @property
    def setting_id(self) -> str:
        h = "-".join(str(w) for w in self.hidden)
        return f"{self.embedding}_pm{self.P_mean:g}_ps{self.P_std:g}_h{h}_{self.scaler}_s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["setting_id"] = self.setting_id
        return d

    def train_config(self, base: TrainConfig, n_tiles: int) -> TrainConfig:
        return replace(base, P_mean=self.P_mean, P_std=self.P_std, embedding=self.embedding, hidden=self.hidden,
                       scaler=self.scaler, seed=self.seed, n_tiles=n_tiles)


@dataclass
class TrainedSetting:
    """What the callback gets per trained model: the setting, the fit result and its table rows."""

    data_name: str
    setting: TrainSetting
    train_config: TrainConfig
    result: TrainResult
    summary: dict[str, Any]  # one row of StudyResult.models
    rows: pd.DataFrame  # this model's rows of the results table (k-expanded)


@dataclass
class StudyResult:
    table: pd.DataFrame  # one row per (model or baseline, scoring variant, k); `oracle`/`label_free` flags
    models: pd.DataFrame  # one row per trained model
    seconds: float
    config: StudyConfig
    data_names: list[str] = field(default_factory=list)


def variant_name(sc: ScoreConfig) -> str:
    """Short label of a scoring variant: `t=9` (reconstruction) or `sigma=2` (denoising)."""
    return f"t={sc.start_step}" if sc.score_type == "reconstruction" else f"sigma={sc.sigma:g}"


def load_study_data(
    feature_dir: str | os.PathLike, ground_truth: pd.DataFrame, name: str,
    evaluated: Sequence[str] | None = None, train: Sequence[str] | None = None,
) -> StudyData:
    """A `StudyData` from a folder of clip-features tables (`**/*.parquet`, one per video).

    Frame counts come from each table's metadata; `evaluated` defaults to the videos with a
    ground-truth interval; `train` (video ids) defaults to every video (unsupervised protocol).
    """
    paths = sorted(Path(feature_dir).rglob("*.parquet"))
    if not paths:
        raise VADInputError(f"{feature_dir}: no clip-features tables (*.parquet) found")
    keys, mats, n_frames, backbones = [], [], {}, set()
    for path in paths:
        df, meta = read_clip_features(path)
        vid = str(df["video_id"].iloc[0]) if len(df) else meta.get("video_id", path.stem)
        n_frames[vid] = int(meta.get("n_frames") or df["end_frame"].max())
        backbones.add(meta.get("backbone", ""))
        keys.append(df[list(ROW_COLUMNS)])
        mats.append(feature_matrix(df))
    rows = pd.concat(keys, ignore_index=True)
    x = np.concatenate(mats, axis=0)
    present = set(rows["video_id"].astype(str))
    wanted = sorted(set(ground_truth["video_id"].astype(str)) & present) if evaluated is None else list(evaluated)
    mask = None if train is None else rows["video_id"].astype(str).isin(set(train)).to_numpy()
    return StudyData(name=name, rows=rows, features=x, n_frames=n_frames, ground_truth=ground_truth,
                     evaluated=tuple(wanted), train_mask=mask, backbone=",".join(sorted(backbones)))


def score_variants(config: StudyConfig) -> list[ScoreConfig]:
    """Every scoring the study applies to each trained model."""
    out = []
    for st in config.score_types:
        if st == "reconstruction":
            out += [ScoreConfig(score_type=st, n_steps=config.n_steps, start_step=t, sampler=config.sampler,
                                n_draws=config.n_draws, seed=config.score_seed) for t in config.start_steps]
        else:
            out += [ScoreConfig(score_type=st, n_steps=config.n_steps, sigma=s, n_draws=config.n_draws,
                                seed=config.score_seed) for s in config.sigmas]
    return out


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
        smoothed = (roc_auc(y, smooth_scores(frames, self.smoothing)["score"].to_numpy())
                    if self.smoothing else float("nan"))
        k_free = otsu_k(clips["score"].to_numpy(), self.ks)
        out = []
        for k in self.ks:
            dec = batch_decisions(clips["score"].to_numpy(), k=k, batch_size=self.batch_size)
            flags = clips_to_frames(clips[on].assign(anomalous=dec.anomalous[on]), self.data.n_frames)["anomalous"]
            out.append({"k": float(k), "frame_auc": auc, "frame_auc_smoothed": smoothed, "frame_ap": ap,
                        "paper_auc": paper_protocol_auc(y, flags.to_numpy()),
                        "flagged_share": float(dec.anomalous.mean()), "otsu_k": k_free})
        return pd.DataFrame(out)


def data_neighbours(data: StudyData, config: StudyConfig) -> dict[str, float]:
    """`{"sigma=8": n_eff, ...}`: `posterior_neighbours` of the training rows in the global-scaled space.

    Global scaling gives sigma_data = 1, so sigma here is in units of sigma_data as in the scores.
    """
    if "denoising" not in config.score_types:
        return {}
    x = data.features[data.train_mask]
    scaled = FeatureScaler("global").fit(x).transform(x)
    counts = posterior_neighbours(scaled, config.sigmas, tiles=data.tiles[data.train_mask] if config.tile_embedding
                                  else None, seed=config.score_seed)
    return {f"sigma={s:g}": float(c) for s, c in zip(config.sigmas, counts)}


def _retest_rows(data: StudyData, n: int, seed: int) -> np.ndarray:
    idx = np.flatnonzero(data.train_mask)
    if idx.size > n:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))
    return idx


def train_and_score(data: StudyData, setting: TrainSetting, config: StudyConfig, evaluator: Evaluator,
                    keys: np.ndarray) -> tuple[TrainResult, dict[str, Any], pd.DataFrame]:
    """Fit one model and apply every scoring variant; returns (result, model summary, table rows)."""
    x, tiles = data.features, data.tiles
    n_tiles = int(tiles.max()) + 1 if config.tile_embedding else 0
    tc = setting.train_config(config.train, n_tiles)
    train_idx = np.flatnonzero(data.train_mask)
    start = time.perf_counter()
    result = fit(x[train_idx], tc, tiles=tiles[train_idx] if n_tiles else None)
    train_seconds = time.perf_counter() - start
    den = trained_denoiser(result)
    use_tiles = tiles if n_tiles else None

    def sub_score(rows: np.ndarray, sc: ScoreConfig) -> np.ndarray:
        return score_rows(den, x[rows], sc, tiles=None if use_tiles is None else use_tiles[rows], row_keys=keys[rows])

    ref = ScoreConfig(score_type="denoising", sigma=config.reference_sigma, n_draws=config.n_draws,
                      seed=config.score_seed)
    val_rows, fit_rows = train_idx[result.val_indices], np.delete(train_idx, result.val_indices)
    held_out = float(sub_score(val_rows, ref).mean()) if val_rows.size else float("nan")
    n_cmp = max(1, min(fit_rows.size, max(val_rows.size, 256)))
    fit_err = float(sub_score(fit_rows[np.linspace(0, fit_rows.size - 1, n_cmp).astype(int)], ref).mean())
    val_losses = [h["val_loss"] for h in result.history if h.get("val_loss") is not None]
    lo, hi = sigma_range(setting.P_mean, setting.P_std)
    summary = {"features": data.name, **setting.to_dict(), "hidden": "-".join(map(str, setting.hidden)),
               "sigma_min": lo, "sigma_max": hi, "sigma_data": float(result.sigma_data),
               "epochs_run": len(result.history), "best_epoch": int(result.best_epoch),
               "best_val_loss": float(min(val_losses)) if val_losses else float("nan"),
               "memorization_auc": float("nan") if result.memorization_auc is None else float(result.memorization_auc),
               "held_out_error": held_out, "train_error": fit_err, "train_seconds": train_seconds}
    retest = _retest_rows(data, config.reliability_rows, config.score_seed)
    parts = []
    for sc in score_variants(config):
        scores = score_rows(den, x, sc, tiles=use_tiles, row_keys=keys)
        again = sub_score(retest, replace(sc, seed=sc.seed + _RETEST_SEED))
        figures = evaluator(scores)
        parts.append(figures.assign(
            variant=variant_name(sc), score_type=sc.score_type, start_step=sc.start_step if sc.score_type == "reconstruction" else -1,
            sigma=sc.sigma if sc.score_type == "denoising" else float("nan"), n_draws=sc.n_draws,
            reliability=reliability(scores[retest], again)))
    rows = pd.concat(parts, ignore_index=True)
    model_cols = {k: summary[k] for k in ("features", "setting_id", "phase", "P_mean", "P_std", "sigma_min",
                                          "sigma_max", "embedding", "hidden", "scaler", "seed", "memorization_auc",
                                          "held_out_error", "best_epoch", "epochs_run")}
    rows = rows.assign(method=f"diffusion-{setting.embedding}", **model_cols)
    return result, summary, rows


def baseline_rows(data: StudyData, config: StudyConfig, evaluator: Evaluator) -> pd.DataFrame:
    """Every baseline fitted per tile position on the training rows and scored on all rows."""
    x, tiles, train = data.features, data.tiles, data.train_mask
    parts = []
    for name in config.baselines:
        scorer = make_scorer(name, **config.baseline_args(name)).fit(x[train], tiles[train])
        parts.append(evaluator(scorer.score(x, tiles)).assign(method=name, features=data.name, score_type=name,
                                                            variant=name))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _mark(table: pd.DataFrame, models: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
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
        cand = models[models["setting_id"].isin(grp["setting_id"].unique())
                      & (models["features"] == grp["features"].iloc[0])
                      & (models["scaler"] == config.scalers[0]) & (models["phase"] != "seed")]
        if not cand.empty:
            cand = cand.reset_index(drop=True)
            model_id = cand.loc[choose_model(cand, config.max_memorization_auc), "setting_id"]
            grp = grp[grp["setting_id"] == model_id]
        variants = grp.drop_duplicates("variant")
        if (variants["score_type"] == "denoising").all() and variants["posterior_neighbours"].notna().all():
            sigma = choose_sigma(variants["posterior_neighbours"].tolist(), variants["sigma"].tolist(),
                                 config.target_neighbours)
            grp = grp[grp["sigma"] == sigma]
        else:
            grp = grp[grp["variant"] == variants.loc[choose_variant(variants), "variant"]]
    k_free = float(grp["otsu_k"].iloc[0])
    return grp.index[int(np.argmin(np.abs(grp["k"].to_numpy() - k_free)))]


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

        def run(setting: TrainSetting) -> None:
            result, summary, rows = train_and_score(data, setting, config, evaluator, keys)
            models.append(summary)
            rows["posterior_neighbours"] = rows["variant"].map(neighbours)
            tables_of_data.append(rows)
            say(f"{data.name} {setting.setting_id}: {summary['train_seconds']:.1f}s, best epoch "
                f"{summary['best_epoch']}, memorization {summary['memorization_auc']:.3f}, "
                f"held-out {summary['held_out_error']:.4f}, best frame AUC {rows['frame_auc'].max():.4f}")
            if callback is not None:
                callback(TrainedSetting(data.name, setting, result.config, result, summary, rows))

        for emb in config.embeddings:
            for pm in config.P_means:
                for ps in config.P_stds:
                    run(TrainSetting(pm, ps, emb, config.widths[0], config.scalers[0], config.seeds[0]))
        grid = _mark(pd.concat(tables_of_data, ignore_index=True), pd.DataFrame(models), config)
        for emb in config.embeddings:  # phase 2 around the label-free model of each embedding
            chosen = grid[grid["label_free"] & (grid["method"] == f"diffusion-{emb}")]
            if chosen.empty:
                continue
            c = chosen.iloc[0]
            around = dict(P_mean=float(c["P_mean"]), P_std=float(c["P_std"]), embedding=emb)
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
    table = _mark(table, models_df, config)
    first = ["features", "method", "score_type", "setting_id", "phase", "P_mean", "P_std", "sigma_min", "sigma_max",
             "embedding", "hidden", "scaler", "seed", "variant", "start_step", "sigma", "n_draws", "k", "frame_auc",
             "frame_auc_smoothed", "frame_ap", "paper_auc", "flagged_share", "otsu_k", "reliability", "posterior_neighbours",
             "held_out_error", "memorization_auc", "best_epoch", "epochs_run", "label_free", "oracle", "oracle_paper"]
    table = table[[c for c in first if c in table.columns] + [c for c in table.columns if c not in first]]
    return StudyResult(table=table, models=models_df, seconds=time.perf_counter() - start, config=config,
                       data_names=[d.name for d in datas])


__all__ = ["BASELINES", "STUDY_TRAIN", "Evaluator", "StudyConfig", "StudyData", "StudyResult", "TrainSetting", "TrainedSetting",
           "baseline_rows", "label_free_row", "load_study_data", "run_study", "score_variants", "train_and_score", "variant_name"]
