"""The denoiser asset: train the EDM denoiser on the unlabelled clip features of the train videos."""

import time

import numpy as np
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from vad_core.diffusion.denoiser import checkpoint_bytes
from vad_core.diffusion.training import TrainConfig, fit
from vad_core.evaluation.formatting import finite_or_none
from vad_core.evaluation.plots import loss_curve_png
from vad_pipeline.assets.common import core_config, dataset_spec, load_feature_rows, read_table, run_tags
from vad_pipeline.automation.fingerprints import combined_fingerprint
from vad_pipeline.resources.backbone import BackboneResource
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker

_TRAIN = TrainConfig()


class TrainingConfig(Config):
    """vad_core.diffusion.training.TrainConfig's user-facing fields (the rest keep vad_core's defaults).

    The pipeline's defaults are the Ped2 study's (docs/results.md), not the paper's: a small
    pooled network with a tile-position embedding, training noise P_mean 0 / P_std 0.6, lr 1e-3,
    30 epochs with early stopping. A few hundred to a few thousand feature rows are the normal
    case here and the paper-size MLP memorizes them (findings.md); vad_core.TrainConfig keeps
    the paper's values for reproducing it.

    `tile_embedding` gives the denoiser a learned tile-position embedding (n_tiles from the data);
    `device` None uses the backbone resource's device (CUDA, then MPS, then CPU).
    """

    epochs: int = 30
    batch_size: int = _TRAIN.batch_size
    min_steps_per_epoch: int = 20
    lr: float = 1e-3
    weight_decay: float = _TRAIN.weight_decay
    P_mean: float = 0.0
    P_std: float = 0.6
    val_fraction: float = _TRAIN.val_fraction
    patience: int = 5
    seed: int = _TRAIN.seed
    precision: str = _TRAIN.precision
    scaler: str = _TRAIN.scaler
    hidden: list[int] = [64, 32, 16]
    embedding: str = _TRAIN.embedding
    fourier_features: int = _TRAIN.fourier_features
    tile_embedding: bool = True
    device: str | None = None

    def to_core(self, n_tiles: int = 0, device: str | None = None) -> TrainConfig:
        return core_config(
            self, TrainConfig, n_tiles=n_tiles if self.tile_embedding else 0, device=self.device or device
        )


def model_name(dataset: str) -> str:
    """The MLflow registered-model name of a dataset's denoiser."""
    return f"vad-denoiser-{dataset}"


@asset(
    group_name="training",
    deps=["feature_index"],
    description="The EDM denoiser trained on every train video's clip features (no labels): "
    "checkpoint with EMA weights, feature scaler, sigma_data, config and data fingerprint.",
)
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
    train_config = config.to_core(n_tiles=int(tiles.max()) + 1, device=backbone.resolved_device())
    features_fp = combined_fingerprint(dict(zip(index["video_id"], index["table_sha256"], strict=True)))
    context.log.info(f"training on {x.shape[0]} rows x {x.shape[1]} dims from {len(train_ids)} videos")

    def progress(event: dict) -> None:
        if event.get("event") == "epoch" and (event["epoch"] % 5 == 0 or event["epoch"] == 1):
            context.log.info(
                f"epoch {event['epoch']}/{event['epochs']}: train {event['train_loss']:.4f} "
                f"val {event.get('val_loss')} ({event['elapsed_s']:.1f}s)"
            )

    with tracker.start_run(run_name=f"{spec.name}/denoiser", tags=run_tags(context, spec)) as run:
        run.log_params(
            {
                "dataset": spec.name,
                "backbone": str(index["backbone"].iloc[0]),
                "train": train_config.to_dict(),
                "train_videos": len(train_ids),
                "rows": int(x.shape[0]),
                "feature_dim": int(x.shape[1]),
            }
        )
        start = time.perf_counter()
        result = fit(x, train_config, callback=progress, tiles=tiles if train_config.n_tiles else None)
        seconds = time.perf_counter() - start
        checkpoint = checkpoint_bytes(result)
        store.write_bytes(keys.denoiser, checkpoint)
        history = result.history
        train_losses = [h["train_loss"] for h in history]
        val_losses = [h["val_loss"] for h in history if h.get("val_loss") is not None]
        loss_png = loss_curve_png(history, best_epoch=result.best_epoch)
        store.write_bytes(keys.loss_curve, loss_png)
        figures = {
            "sigma_data": float(result.sigma_data),
            "final_train_loss": float(train_losses[-1]),
            "best_val_loss": float(min(val_losses)) if val_losses else None,
            "memorization_auc": finite_or_none(result.memorization_auc),
            "epochs_run": len(history),
            "best_epoch": int(result.best_epoch),
            "train_seconds": seconds,
        }
        run.log_series("train_loss", train_losses)
        run.log_series("val_loss", val_losses)
        run.log_metrics({k: v for k, v in figures.items() if isinstance(v, (int, float))})
        run.set_tags({"data_fingerprint": result.fingerprint, "features_fingerprint": features_fp})
        run.log_artifact(checkpoint, "denoiser.pt", "denoiser")
        run.log_artifact(loss_png, "loss_curve.png", "plots")
        version = run.register_model(
            model_name(spec.name),
            "denoiser",
            tags={
                "dataset": spec.name,
                "data_fingerprint": result.fingerprint,
                "sigma_data": f"{result.sigma_data:.6g}",
                "dagster_run_id": context.run.run_id,
            },
        )
        info = {
            "dataset": spec.name,
            "checkpoint": store.location(keys.denoiser),
            "features_fingerprint": features_fp,
            "data_fingerprint": result.fingerprint,
            "train_config": train_config.to_dict(),
            "n_train": result.n_train,
            "n_val": result.n_val,
            "train_videos": train_ids,
            "history": history,
            **figures,
            "mlflow_run_id": run.run_id,
            "model_name": model_name(spec.name),
            "model_version": version,
            "dagster_run_id": context.run.run_id,
        }
        store.write_json(keys.denoiser_info, info)
        run.log_artifact(store.read_bytes(keys.denoiser_info), "denoiser.json", "denoiser")
    return MaterializeResult(
        metadata={
            "checkpoint": MetadataValue.path(store.location(keys.denoiser)),
            "loss_curve": MetadataValue.path(store.location(keys.loss_curve)),
            "rows": int(x.shape[0]),
            "feature_dim": int(x.shape[1]),
            **{k: v for k, v in figures.items() if v is not None},
            "data_fingerprint": result.fingerprint,
            "features_fingerprint": features_fp or "",
            "mlflow_run_id": run.run_id or "",
            "model_version": version or "",
        }
    )


__all__ = ["TrainingConfig", "denoiser", "model_name"]
