"""The denoiser asset: train the EDM denoiser on the unlabelled clip features of the train videos."""

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.detector import detector_bytes
from vad_core.diffusion.recipes import DetectorFit, DetectorRecipe, fit_detector, preset
from vad_core.errors import VADInputError
from vad_core.evaluation.embed import compact_png, png_data_uri
from vad_core.evaluation.formatting import finite_or_none
from vad_core.evaluation.plots import loss_curve_png
from vad_core.live.decision import DecisionRule
from vad_core.live.detector import LIVE_FILE, LiveDetector, feature_spec_from_metadata, live_model_files
from vad_core.scoring.rows import clip_scores, row_keys_for
from vad_pipeline.assets.common import dataset_spec, load_feature_rows, read_table, run_note, run_tags
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.assets.model_card import model_links, rounded, version_description
from vad_pipeline.assets.reruns import checkpoint_sha256, identical_previous_run, training_identity
from vad_pipeline.automation.fingerprints import combined_fingerprint
from vad_pipeline.cluster.profile import gpu_step_tags
from vad_pipeline.resources.backbone import BackboneResource
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker

# The figures of a training run that a skipped identical re-run repeats from denoiser.json.
_FIGURES = (
    "sigma_data",
    "final_train_loss",
    "best_val_loss",
    "memorization_auc",
    "epochs_run",
    "best_epoch",
    "n_models",
    "trim_share",
    "dropped_rows",
    "scoring_sigma",
)


# The registered version is the pyfunc model logged under this artifact path of the training run
# (vad_pipeline.serving); the new version gets this alias, and its live files the store's challenger slot.
MODEL_ARTIFACT_PATH = "denoiser_model"
CHALLENGER = "challenger"
LIVE_RULE_K = 1.0  # the live rule's k: the paper's threshold k (method.md), on the training batch's statistics


class TrainingConfig(Config):
    """The detector recipe (a vad_core preset) and the training fields a user may override.

    `recipe` names a `vad_core.diffusion.recipes` preset: "robust" (the default, issue 9 and
    docs/results.md: a 5-fold out-of-fold screen by video, the label-free share of the most
    anomalous rows dropped, a 5-seed ensemble refitted on the rest, the label-free scoring
    sigma, 64 noise draws), "single" (the default before: one model, 16 draws) or "paper"
    (the paper's network, noise distribution and partial-diffusion reconstruction score).
    Every training field left None takes the preset's value (for "robust" and "single" the
    Ped2 study's small pooled FiLM network 64-32-16, P_mean 0 / P_std 0.6, lr 1e-3, 30 epochs
    with early stopping); the recipe fields left None likewise (`trim_share` None = label-free;
    `sigma_rule` "rows" or "videos": the label-free sigma rule leaves out the row or its video;
    `width_scales`, e.g. [0.5, 1, 2]: the screen fits each multiple of `hidden` and keeps the width
    with the lowest median out-of-fold error: a label-free network size, at one screen per candidate;
    1.6-1.9x the default's fit time on Ped2 for [0.5, 1, 2], docs/results.md; `screen_rounds` 2 or
    more: the screen is refitted on the rows the previous round kept, and re-scores every row
    out-of-fold before the trim, at one screen per round).

    `tile_embedding` gives the denoisers a learned tile-position embedding (n_tiles from the
    data); `device` None uses the backbone resource's device (CUDA, then MPS, then CPU). `force`
    retrains even when the rows, the recipe and the resolved config equal those of the stored
    checkpoint (otherwise such a re-run keeps the checkpoint and registers nothing: `assets.reruns`).
    """

    recipe: str = "robust"
    screen_folds: int | None = None
    trim_share: float | None = None
    max_share: float | None = None
    refit_seeds: int | None = None
    n_draws: int | None = None
    sigma_rule: str | None = None
    width_scales: list[float] | None = None
    screen_rounds: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    min_steps_per_epoch: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    P_mean: float | None = None
    P_std: float | None = None
    val_fraction: float | None = None
    patience: int | None = None
    seed: int | None = None
    precision: str | None = None
    scaler: str | None = None
    hidden: list[int] | None = None
    embedding: str | None = None
    fourier_features: int | None = None
    tile_embedding: bool = True
    device: str | None = None
    force: bool = False

    def _set(self, cls: type) -> dict[str, Any]:
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "device", "n_tiles"}
        values = {k: v for k, v in self.model_dump().items() if k in known and v is not None}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    def to_core(self, n_tiles: int = 0, device: str | None = None) -> tuple[DetectorRecipe, TrainConfig]:
        """The frozen vad_core recipe and training config: the preset's, with the fields set here."""
        recipe, train = preset(self.recipe)
        recipe = dataclasses.replace(recipe, **self._set(DetectorRecipe))
        train = dataclasses.replace(
            train,
            **self._set(TrainConfig),
            n_tiles=n_tiles if self.tile_embedding else 0,
            device=self.device or device,
        )
        return recipe, train


def fit_event_lines(event: dict[str, Any]) -> list[str]:
    """The training log's lines for one `fit_detector` callback event (none for events it does not report)."""
    if event.get("event") == "member_done":
        return [
            f"{event['stage']} model {event['done']}/{event['total']} (fold {event['fold']}, seed "
            f"{event['seed']}): {event['rows']} rows, best epoch {event['best_epoch']}, {event['seconds']:.1f}s"
        ]
    if event.get("event") != "stage":
        return []
    screen = f"screen round {event['round']}" if "round" in event else "screen"
    lines = [f"{screen}: dropping {event['dropped']} rows (share {event['trim_share']:.3f}, label-free)"]
    if "hidden" in event and event.get("round", 1) == 1:  # the width is chosen once, before any later round
        errors = ", ".join(f"x{k} {v:.4f}" for k, v in event["width_errors"].items())
        lines.append(f"screen: network {event['hidden']} chosen by median out-of-fold error ({errors})")
    return lines


def model_name(dataset: str) -> str:
    """The MLflow registered-model name of a dataset's denoiser."""
    return f"vad-denoiser-{dataset}"


def _live_detector(fitted: DetectorFit, rows: pd.DataFrame, table_meta: dict[str, str], info: dict) -> LiveDetector:
    """The servable model of a fit: the detector, the live decision rule (mean + 1 std of the training clips'
    out-of-fold scores, `vad_core.live.decision`), the feature spec of the tables it was fitted on, provenance."""
    if fitted.fitted_scores is None:
        raise VADInputError("denoiser: the fit kept no scores of its rows, so no live decision rule can be made")
    train_clips = clip_scores(rows.assign(score=fitted.fitted_scores))["score"]
    keep = ("dataset", "model_name", "mlflow_run_id", "dagster_run_id", "data_fingerprint", "checkpoint_sha256")
    return LiveDetector(
        fitted.detector,
        DecisionRule.from_clip_scores(train_clips, k=LIVE_RULE_K),
        feature_spec=feature_spec_from_metadata(table_meta),
        info={k: str(info[k]) for k in keep if info.get(k) is not None},
    )


@asset(
    group_name="training",
    deps=["feature_index"],
    description="The diffusion detector fitted on every train video's clip features (no labels): "
    "a detector checkpoint with every member denoiser (EMA weights, scaler, sigma_data, config), "
    "the label-free scoring sigma, the recipe and the data fingerprint.",
    op_tags=gpu_step_tags(),  # the cluster profile's GPU queue, when a GPU worker pool exists
)
@user_errors
def denoiser(
    context: AssetExecutionContext,
    config: TrainingConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    backbone: BackboneResource,
    tracker: ExperimentTracker,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    index = read_table(store, keys.feature_index, "feature_index")
    train_ids = index.loc[index["train"], "video_id"].tolist()
    rows, x = load_feature_rows(store, keys, train_ids)
    tiles = rows["tile"].to_numpy(np.int64)
    recipe, train_config = config.to_core(n_tiles=int(tiles.max()) + 1, device=backbone.resolved_device())
    features_fp = combined_fingerprint(dict(zip(index["video_id"], index["table_sha256"], strict=True)))
    identity = training_identity(x, tiles, train_config, train_ids, recipe.to_dict())
    previous = None if config.force else identical_previous_run(store, keys, identity)
    if previous is not None and not store.exists(keys.live_model("challenger", LIVE_FILE)):
        context.log.info("the stored detector has no servable live model beside it (older run): retraining")
        previous = None
    if previous is not None:
        context.log.info(
            f"the stored detector was fitted on these {x.shape[0]} rows with this recipe and config: kept "
            f"(MLflow run {previous.get('mlflow_run_id')}, model version {previous.get('model_version')}); "
            "set force: true to retrain"
        )
        kept = {k: previous[k] for k in _FIGURES if isinstance(previous.get(k), (int, float))}
        return MaterializeResult(
            metadata={
                "skipped_identical": True,
                "checkpoint": MetadataValue.path(store.location(keys.denoiser)),
                "rows": int(x.shape[0]),
                "feature_dim": int(x.shape[1]),
                **kept,
                "data_fingerprint": str(previous.get("data_fingerprint") or ""),
                "recipe": recipe.name,
                "features_fingerprint": features_fp or "",
                "mlflow_run_id": str(previous.get("mlflow_run_id") or ""),
                "model_version": str(previous.get("model_version") or ""),
            }
        )
    context.log.info(
        f"fitting the {recipe.name!r} detector on {x.shape[0]} rows x {x.shape[1]} dims from {len(train_ids)} videos"
    )

    def progress(event: dict) -> None:
        for line in fit_event_lines(event):
            context.log.info(line)

    note = run_note(context, f"Denoiser training on {x.shape[0]} feature rows of {len(train_ids)} videos.")
    with tracker.start_run(run_name=f"{spec.name}/denoiser", tags=run_tags(context, spec), description=note) as run:
        run.log_params(
            {
                "dataset": spec.name,
                "backbone": str(index["backbone"].iloc[0]),
                "recipe": recipe.to_dict(),
                "train": train_config.to_dict(),
                "train_videos": len(train_ids),
                "rows": int(x.shape[0]),
                "feature_dim": int(x.shape[1]),
            }
        )
        start = time.perf_counter()
        fitted = fit_detector(
            x,
            rows["video_id"].astype(str).to_numpy(),
            train_config,
            recipe,
            tiles=tiles if train_config.n_tiles else None,
            row_keys=row_keys_for(rows),
            callback=progress,
        )
        seconds = time.perf_counter() - start
        detector = fitted.detector
        checkpoint = detector_bytes(detector)
        store.write_bytes(keys.denoiser, checkpoint)
        first = fitted.members[0].result  # the loss curve shown is the first deployed member's
        history = first.history
        train_losses = [h["train_loss"] for h in history]
        val_losses = [h["val_loss"] for h in history if h.get("val_loss") is not None]
        loss_png = loss_curve_png(history, best_epoch=first.best_epoch)
        store.write_bytes(keys.loss_curve, loss_png)
        figures = {
            "sigma_data": float(first.sigma_data),
            "final_train_loss": float(train_losses[-1]),
            "best_val_loss": float(min(val_losses)) if val_losses else None,
            "memorization_auc": finite_or_none(detector.memorization_auc),
            "memorization_auc_2sd": finite_or_none(first.memorization_auc),
            "epochs_run": len(history),
            "best_epoch": int(first.best_epoch),
            "train_seconds": seconds,
            "n_models": detector.n_models,
            "trim_share": float(detector.trim_share),
            "dropped_rows": int((~fitted.keep).sum()),
            "scoring_sigma": float(detector.score_config.sigma),
        }
        run.log_series("train_loss", train_losses)
        run.log_series("val_loss", val_losses)
        run.log_metrics({k: v for k, v in figures.items() if isinstance(v, (int, float))})
        run.set_tags({"data_fingerprint": detector.fingerprint, "features_fingerprint": features_fp})
        run.log_artifact(checkpoint, "denoiser.pt", "denoiser")
        run.log_artifact(loss_png, "loss_curve.png", "plots")
        info = {
            "dataset": spec.name,
            "checkpoint": store.location(keys.denoiser),
            "features_fingerprint": features_fp,
            "data_fingerprint": detector.fingerprint,
            "n_train": first.n_train,
            "n_val": first.n_val,
            "history": history,
            **figures,
            **detector.describe(),
            "mlflow_run_id": run.run_id,
            "model_name": model_name(spec.name),
            "dagster_run_id": context.run.run_id,
            **identity,
            "checkpoint_sha256": checkpoint_sha256(checkpoint),
        }
        live = _live_detector(fitted, rows, store.read_metadata(keys.features(train_ids[0])), info)
        info["decision_rule"] = live.rule.to_dict()
        run.log_pyfunc_model(live, MODEL_ARTIFACT_PATH)
        # Short tags (the version page lists them by name); the Dagster run is a link in the description,
        # the full fingerprints stay on the run and in denoiser.json.
        version = run.register_model(
            model_name(spec.name),
            MODEL_ARTIFACT_PATH,
            tags={
                "dataset": spec.name,
                "sigma_data": f"{first.sigma_data:.4g}",
                "rows": int(x.shape[0]),
                "recipe": recipe.name,
                "data_fingerprint": detector.fingerprint[:12],
            },
            description=version_description(info),
        )
        info["model_version"] = version
        live.info["model_version"] = str(version or "")
        for name, data in live_model_files(live).items():  # detector.pt first, live.json last
            store.write_bytes(keys.live_model("challenger", name), data)
        if version:
            tracker.set_model_alias(model_name(spec.name), CHALLENGER, version)
        store.write_json(keys.denoiser_info, info)
        run.log_artifact(store.read_bytes(keys.denoiser_info), "denoiser.json", "denoiser")
    links = model_links(tracker, model_name(spec.name), version)
    return MaterializeResult(
        metadata={
            "checkpoint": MetadataValue.path(store.location(keys.denoiser)),
            "loss_curve": MetadataValue.md(f"![loss curve]({png_data_uri(compact_png(loss_png))})"),
            "rows": int(x.shape[0]),
            "feature_dim": int(x.shape[1]),
            **{k: rounded(v) if isinstance(v, float) else v for k, v in figures.items() if v is not None},
            "data_fingerprint": detector.fingerprint,
            "recipe": recipe.name,
            "features_fingerprint": features_fp or "",
            "live_threshold": rounded(live.rule.threshold),
            "challenger": MetadataValue.path(store.location(keys.live_model("challenger", LIVE_FILE))),
            **({"mlflow_run": MetadataValue.url(run.url)} if run.url else {"mlflow_run_id": run.run_id or ""}),
            **links,
        }
    )


__all__ = [
    "CHALLENGER",
    "LIVE_RULE_K",
    "MODEL_ARTIFACT_PATH",
    "TrainingConfig",
    "denoiser",
    "fit_event_lines",
    "model_name",
]
