"""Scoring assets: diffusion segment scores, their frame expansion, and the baselines' scores.

Every scorer (the denoiser and each baseline) scores the same (clip, tile) rows; a clip's score
is the maximum over its tiles (the arg-max tile localizes), and each batch of clips, in video
and time order, is thresholded at mean + k * std of its scores.
"""

import dataclasses
import json
import time

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.diffusion.detector import load_detector
from vad_core.diffusion.label_free import label_free_sigma
from vad_core.diffusion.reconstruction import ScoreConfig
from vad_core.errors import VADInputError
from vad_core.evaluation.metrics import frame_table
from vad_core.scoring.rows import clip_scores, decide_clips, row_keys_for, score_summary
from vad_core.scoring.scorers import BASELINES, make_scorer
from vad_pipeline.assets.common import (
    KEY_COLUMNS,
    counts_metadata,
    dataset_spec,
    load_feature_rows,
    read_table,
    run_note,
    run_tags,
)
from vad_pipeline.assets.consistency import invalidate_report
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.resources.backbone import BackboneResource
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker

_SCORE = ScoreConfig()
BASELINE_DTYPES = {
    "scorer": "object",
    "video_id": "object",
    "clip": "int64",
    "start_frame": "int64",
    "end_frame": "int64",
    "score": "float64",
    "tile": "int64",
    "batch": "int64",
    "threshold": "float64",
    "anomalous": "bool",
}


class ThresholdConfig(Config):
    """Batch threshold mu_b + k * std_b over batches of `threshold_batch_size` clips (method.md)."""

    threshold_k: float = 1.0
    threshold_batch_size: int = 8192


class ScoringConfig(ThresholdConfig):
    """How the detector's rows are scored, and the batch threshold.

    Fields left None keep what the detector was fitted with (`Detector.score_config`: the
    denoising score at the sigma its recipe chose from the unlabelled rows, and its draws).
    `sigma` set = that noise level (units of sigma_data) instead; for a single-denoiser
    checkpoint from before detectors, None chooses sigma label-free here as the pipeline did
    (vad_core.diffusion.label_free.label_free_sigma, target `target_neighbours`).
    """

    score_type: str | None = None
    n_steps: int = _SCORE.n_steps
    start_step: int | None = None
    sampler: str = _SCORE.sampler
    sigma: float | None = None
    target_neighbours: float = 5.0
    n_draws: int | None = None
    seed: int | None = None
    batch_rows: int = _SCORE.batch_rows
    precision: str = _SCORE.precision

    def to_core(self, base: ScoreConfig, sigma: float | None = None) -> ScoreConfig:
        """`base` (the detector's) with every field set here; `sigma` (label-free) unless `self.sigma` is set."""
        values = {k: v for k, v in self.model_dump().items() if k in _SCORE_FIELDS and v is not None}
        if self.sigma is None and sigma is not None:
            values["sigma"] = sigma
        return dataclasses.replace(base, **values)


_SCORE_FIELDS = {f.name for f in dataclasses.fields(ScoreConfig)}


@asset(
    group_name="scoring",
    deps=["denoiser", "feature_index"],
    description="Per-clip diffusion scores (max over tiles of each row's score; a fitted row is scored by "
    "the detector's members that never saw its video, when it has such members), the arg-max tile, "
    "the batch threshold and the decision; per-tile scores in a companion table.",
)
@user_errors
def segment_scores(
    context: AssetExecutionContext,
    config: ScoringConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    backbone: BackboneResource,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    index = read_table(store, keys.feature_index, "feature_index")
    feature_rows, x = load_feature_rows(store, keys, index["video_id"].tolist())
    if not store.exists(keys.denoiser):
        raise VADInputError(
            f"denoiser checkpoint {store.location(keys.denoiser)} is missing: materialize denoiser first"
        )
    detector = load_detector(
        store.read_bytes(keys.denoiser), device=backbone.resolved_device(), name=store.location(keys.denoiser)
    )
    all_tiles = feature_rows["tile"].to_numpy(np.int64)
    sigma_choice: dict[str, float] = dict(detector.sigma_choice)
    chosen = None
    legacy = detector.recipe.get("name") == "legacy"
    if legacy and config.sigma is None and config.score_type in (None, "denoising"):
        model = detector.members[0].denoiser
        chosen, sigma_choice = label_free_sigma(
            model.scaler, model.sigma_data, x, tiles=all_tiles, target=config.target_neighbours
        )
    detector.score_config = config.to_core(detector.score_config, sigma=chosen)
    score_config = detector.score_config
    choice = "configured" if config.sigma is not None else "label-free"
    context.log.info(
        f"{detector.recipe.get('name')!r} detector, {detector.n_models} model(s): sigma {score_config.sigma:g} "
        f"sigma_data ({choice}; neighbour counts {sigma_choice}), {score_config.n_draws} draws"
    )
    start = time.perf_counter()
    tiles = all_tiles if detector.n_tiles else None
    scores, unseen = detector.score_fitted(
        x, feature_rows["video_id"].astype(str).to_numpy(), tiles=tiles, row_keys=row_keys_for(feature_rows)
    )
    rows = feature_rows.assign(score=scores)
    seconds = time.perf_counter() - start
    clips = decide_clips(clip_scores(rows), config.threshold_k, config.threshold_batch_size)
    meta = {
        "dataset": spec.name,
        "scorer": "diffusion",
        "recipe": str(detector.recipe.get("name")),
        "n_models": str(detector.n_models),
        "score_config": str(score_config.to_dict()),
        "threshold_k": str(config.threshold_k),
        "threshold_batch_size": str(config.threshold_batch_size),
        "denoiser_fingerprint": detector.fingerprint,
        "sigma": str(score_config.sigma),
        "sigma_choice": choice,
        "out_of_fold_rows": str(int((unseen > 0).sum())),
    }
    invalidate_report(store, keys)  # a report of the old scores must not outlive them
    store.write_table(keys.tile_scores, rows[KEY_COLUMNS + ["score"]], meta)
    store.write_table(keys.segment_scores, clips, meta)
    return MaterializeResult(
        metadata={
            **counts_metadata(clips),
            **score_summary(clips),
            "recipe": meta["recipe"],
            "n_models": detector.n_models,
            "sigma": float(score_config.sigma),
            "sigma_choice": choice,
            "out_of_fold_rows": int((unseen > 0).sum()),
            **{f"neighbours_{k}": v for k, v in sigma_choice.items()},
            "tile_rows": len(rows),
            "rows_per_second": len(rows) / max(seconds, 1e-9),
            "score_seconds": seconds,
            "path": MetadataValue.path(store.location(keys.segment_scores)),
            "tile_scores_path": MetadataValue.path(store.location(keys.tile_scores)),
        }
    )


@asset(
    group_name="scoring",
    deps=["segment_scores", "video_manifest", "ground_truth"],
    description="Diffusion clip scores expanded to frames (a frame takes the maximum of the clips "
    "covering it), with 0/1 labels on the evaluated videos.",
)
@user_errors
def frame_scores(context: AssetExecutionContext, storage: VadStorage, dataset: DatasetResource) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    clips = read_table(store, keys.segment_scores, "segment_scores")
    manifest = read_table(store, keys.manifest, "video_manifest")
    truth = read_table(store, keys.ground_truth, "ground_truth")
    # Without an annotation file nothing is labelled: "0 anomalous frames" would claim ground truth.
    evaluated = {v for v in clips["video_id"].unique() if spec.is_evaluated(v)} if spec.annotations else set()
    frames = frame_table(clips, manifest, truth, evaluated)
    invalidate_report(store, keys)
    store.write_table(keys.frame_scores, frames, {"dataset": spec.name})
    labelled = frames["label"].notna()
    return MaterializeResult(
        metadata={
            **counts_metadata(frames),
            "path": MetadataValue.path(store.location(keys.frame_scores)),
            "videos": int(frames["video_id"].nunique()),
            "labelled_frames": int(labelled.sum()),
            "anomalous_label_frames": int(frames.loc[labelled, "label"].sum()),
            "flagged_frames": int(frames["anomalous"].sum()),
        }
    )


class BaselinesConfig(ThresholdConfig):
    """Which baselines to fit on the train videos' features, and their main settings.

    Each fits one model per tile position when `per_tile` (method.md: every tile scored against
    the same tile position of the other clips). `gcl_epochs` = generator pre-training and
    cooperative epochs, `gcl_d_epochs` = discriminator pre-training; widths keep vad_core's defaults.
    """

    scorers: list[str] = list(BASELINES)
    per_tile: bool = True
    knn_k: int = 5
    pca_components: int = 16
    iforest_estimators: int = 200
    gcl_epochs: int = 30
    gcl_d_epochs: int = 40
    seed: int = 0


def _scorer_kwargs(name: str, config: BaselinesConfig) -> dict:
    return {
        "knn": {"k": config.knn_k},
        "pca": {"n_components": config.pca_components},
        "iforest": {"n_estimators": config.iforest_estimators, "seed": config.seed},
        "gcl_ae": {"ae_epochs": config.gcl_epochs, "seed": config.seed},
        "gcl": {
            "ae_epochs": config.gcl_epochs,
            "d_epochs": config.gcl_d_epochs,
            "epochs": config.gcl_epochs,
            "seed": config.seed,
        },
    }.get(name, {})


@asset(
    group_name="scoring",
    deps=["feature_index"],
    description="Clip scores of the baselines (kNN, PCA, IsolationForest, GCL autoencoder, GCL) on the "
    "same features, thresholded like the diffusion scores; long format with a `scorer` column.",
)
@user_errors
def baseline_scores(
    context: AssetExecutionContext,
    config: BaselinesConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    tracker: ExperimentTracker,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    index = read_table(store, keys.feature_index, "feature_index")
    feature_rows, x = load_feature_rows(store, keys, index["video_id"].tolist())
    train_mask = feature_rows["video_id"].isin(set(index.loc[index["train"], "video_id"])).to_numpy()
    tiles = feature_rows["tile"].to_numpy(np.int64) if config.per_tile else None
    parts, summary, run_ids, skipped = [], {}, {}, {}
    tags = run_tags(context, spec)
    note = run_note(context, f"Baselines ({', '.join(config.scorers)}) fitted on the train videos' features.")
    with tracker.start_run(run_name=f"{spec.name}/baselines", tags=tags, description=note) as run:
        for name in config.scorers:
            kwargs = _scorer_kwargs(name, config)
            # One child run per baseline, around its own fit and scoring; the evaluation adds its figures.
            with tracker.start_run(
                run_name=f"{spec.name}/baselines/{name}", tags={**tags, "scorer": name}, parent_run_id=run.run_id
            ) as child:
                start = time.perf_counter()
                try:
                    fit_tiles = None if tiles is None else tiles[train_mask]
                    scorer = make_scorer(name, **kwargs).fit(x[train_mask], fit_tiles)
                    scores = scorer.score(x, tiles)
                except (VADInputError, ValueError) as exc:
                    # A baseline too big for this data (PCA-16 on 10 rows per tile) is a comparison lost,
                    # not a reason to stop the run: it is skipped, and the report says why.
                    skipped[name] = str(exc).splitlines()[0]
                    context.log.warning(f"{name}: skipped, it cannot run on this data ({skipped[name]})")
                    child.log_params({"scorer": name, "skipped": skipped[name]})
                    run.log_params({f"{name}.skipped": skipped[name]})
                    continue
                seconds = time.perf_counter() - start
                clips = decide_clips(
                    clip_scores(feature_rows.assign(score=scores)), config.threshold_k, config.threshold_batch_size
                )
                child.log_params({"scorer": name, "per_tile": config.per_tile, **kwargs})
                share = float(clips["anomalous"].mean())
                child.log_metrics({"fit_score_seconds": seconds, "flagged_clip_share": share})
            run_ids[name] = child.run_id
            parts.append(clips.assign(scorer=name))
            summary[name] = {"seconds": seconds, **score_summary(clips)}
            run.log_params({name: kwargs} if kwargs else {name: {"defaults": True}})
            run.log_metrics({f"{name}.fit_score_seconds": seconds})
            context.log.info(f"{name}: fitted and scored {len(x)} rows in {seconds:.1f}s")
        run.log_params(
            {
                "dataset": spec.name,
                "per_tile": config.per_tile,
                "threshold_k": config.threshold_k,
                "threshold_batch_size": config.threshold_batch_size,
            }
        )
    if parts:
        table = pd.concat(parts, ignore_index=True)
        table = table[["scorer"] + [c for c in table.columns if c != "scorer"]]
    else:  # every baseline skipped: an empty table with the usual columns
        table = pd.DataFrame({c: pd.Series(dtype=t) for c, t in BASELINE_DTYPES.items()})
    invalidate_report(store, keys)
    ran = [n for n in config.scorers if n not in skipped]
    store.write_table(
        keys.baseline_scores,
        table,
        {
            "dataset": spec.name,
            "scorers": ",".join(ran),
            "skipped": json.dumps(skipped, sort_keys=True),
            "mlflow_run_ids": json.dumps(run_ids),
        },
    )
    return MaterializeResult(
        metadata={
            **counts_metadata(table),
            "path": MetadataValue.path(store.location(keys.baseline_scores)),
            "scorers": ", ".join(ran) or "none",
            "skipped": MetadataValue.json(skipped),
            **{f"{name}_seconds": round(s["seconds"], 2) for name, s in summary.items()},
            **({"mlflow_run": MetadataValue.url(run.url)} if run.url else {"mlflow_run_id": run.run_id or ""}),
        }
    )


__all__ = ["BaselinesConfig", "ScoringConfig", "ThresholdConfig", "baseline_scores", "frame_scores", "segment_scores"]
