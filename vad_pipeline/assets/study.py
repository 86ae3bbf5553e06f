"""The parameter study asset: the paper's parameter analysis on the dataset's features, in MLflow.

One MLflow parent run for the study and one nested child run per trained setting (the MLflow
UI's compare view shows the grid). Writes under `<VAD_HOME>/<dataset>/study/`: the results table
(`study_results.parquet`, both AUC protocols for every setting, `oracle` / `label_free` flags),
the trained-model table, `comparison.md` (the paper's Table 2 shape), `label_free.json` (the
label-free choice per method, what a default configuration should take) and heatmaps (PNG).
"""

import time
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)

from vad_core.evaluation.formatting import finite_or_none
from vad_core.io.store import TableStore
from vad_core.scoring.scorers import BASELINES
from vad_core.study import StudyConfig, StudyData, TrainedSetting, run_study
from vad_core.study.report import comparison_markdown, label_free_summary, seed_spread, study_heatmaps
from vad_pipeline.assets.common import dataset_spec, load_feature_rows, read_table, run_tags
from vad_pipeline.assets.failures import user_errors
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
from vad_pipeline.resources.tracking import ExperimentTracker

_STUDY = StudyConfig()
_TRAIN = _STUDY.train
STUDY_JOB = "parameter_study_job"


class ParameterStudyConfig(Config):
    """The grid (vad_core.study.StudyConfig) and the training budget of each setting.

    Phase 1 trains P_means x P_stds x embeddings at the first width, scaler and seed; phase 2
    the other widths, scalers and seeds around each embedding's label-free setting.
    """

    P_means: list[float] = list(_STUDY.P_means)
    P_stds: list[float] = list(_STUDY.P_stds)
    embeddings: list[str] = list(_STUDY.embeddings)
    widths: list[list[int]] = [list(w) for w in _STUDY.widths]
    scalers: list[str] = list(_STUDY.scalers)
    seeds: list[int] = list(_STUDY.seeds)
    tile_embedding: bool = _STUDY.tile_embedding
    score_types: list[str] = list(_STUDY.score_types)
    n_steps: int = _STUDY.n_steps
    start_steps: list[int] = list(_STUDY.start_steps)
    sigmas: list[float] = list(_STUDY.sigmas)
    n_draws: int = _STUDY.n_draws
    ks: list[float] = list(_STUDY.ks)
    smoothing_sigma: float | None = _STUDY.smoothing_sigma
    threshold_batch_size: int = _STUDY.threshold_batch_size
    reference_sigma: float = _STUDY.reference_sigma
    max_memorization_auc: float = _STUDY.max_memorization_auc
    baselines: list[str] = list(BASELINES)
    epochs: int = _TRAIN.epochs
    min_steps_per_epoch: int = _TRAIN.min_steps_per_epoch
    batch_size: int = _TRAIN.batch_size
    lr: float = _TRAIN.lr
    patience: int = _TRAIN.patience
    val_fraction: float = _TRAIN.val_fraction
    device: str | None = None

    def to_core(self) -> StudyConfig:
        train = replace(
            _TRAIN,
            epochs=self.epochs,
            min_steps_per_epoch=self.min_steps_per_epoch,
            batch_size=self.batch_size,
            lr=self.lr,
            patience=self.patience,
            val_fraction=self.val_fraction,
            device=self.device,
        )
        return StudyConfig(
            P_means=tuple(self.P_means),
            P_stds=tuple(self.P_stds),
            embeddings=tuple(self.embeddings),
            widths=tuple(tuple(w) for w in self.widths),
            scalers=tuple(self.scalers),
            seeds=tuple(self.seeds),
            tile_embedding=self.tile_embedding,
            train=train,
            score_types=tuple(self.score_types),
            n_steps=self.n_steps,
            start_steps=tuple(self.start_steps),
            sigmas=tuple(self.sigmas),
            n_draws=self.n_draws,
            ks=tuple(self.ks),
            smoothing_sigma=self.smoothing_sigma,
            threshold_batch_size=self.threshold_batch_size,
            reference_sigma=self.reference_sigma,
            max_memorization_auc=self.max_memorization_auc,
            baselines=tuple(self.baselines),
        )


def study_data(store: TableStore, keys: DatasetKeys, index: Any, manifest: Any, truth: Any) -> StudyData:
    """The dataset's features as one study feature set (train/evaluate flags from the feature index)."""
    dataset = keys.dataset
    rows, x = load_feature_rows(store, keys, index["video_id"].tolist())
    ok = manifest[manifest["status"] == "ok"]
    n_frames = {str(v): int(n) for v, n in zip(ok["video_id"], ok["n_frames"], strict=True)}
    evaluated = [v for v in index.loc[index["evaluate"], "video_id"] if v in set(truth["video_id"])]
    train = set(index.loc[index["train"], "video_id"])
    backbone = str(index["backbone"].iloc[0]) if len(index) else ""
    return StudyData(
        name=f"{backbone or 'features'}/{dataset}",
        rows=rows,
        features=x,
        n_frames=n_frames,
        ground_truth=truth,
        evaluated=tuple(evaluated),
        train_mask=rows["video_id"].isin(train).to_numpy(),
        backbone=backbone,
    )


@asset(
    group_name="studies",
    deps=["feature_index", "ground_truth", "video_manifest"],
    description="The paper's parameter analysis on this dataset: (P_mean, P_std) x start step x threshold k x "
    "embedding (+ score type, width, preprocessing, seeds), both AUC protocols, oracle vs label-free "
    "selection, heatmaps and a Table-2 style comparison with the baselines; one MLflow child run per setting.",
)
@user_errors
def parameter_study(
    context: AssetExecutionContext,
    config: ParameterStudyConfig,
    storage: VadStorage,
    dataset: DatasetResource,
    tracker: ExperimentTracker,
) -> MaterializeResult:
    spec = dataset_spec(storage, dataset)
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    index = read_table(store, keys.feature_index, "feature_index")
    manifest = read_table(store, keys.manifest, "video_manifest")
    truth = read_table(store, keys.ground_truth, "ground_truth")
    data = study_data(store, keys, index, manifest, truth)
    study_config = config.to_core()
    tags = run_tags(context, spec)

    with tracker.start_run(
        run_name=f"{spec.name}/parameter_study", tags={**tags, "study": "parameter_study"}
    ) as parent:
        parent.log_params(
            {
                "dataset": spec.name,
                "features": data.name,
                "rows": int(data.features.shape[0]),
                "study": study_config.to_dict(),
            }
        )

        def log_child(trained: TrainedSetting) -> None:
            s, rows = trained.summary, trained.rows
            child_tags = {
                **tags,
                "mlflow.parentRunId": parent.run_id,
                "study.setting_id": s["setting_id"],
                "study.phase": s["phase"],
            }
            with tracker.start_run(run_name=f"{spec.name}/study/{s['setting_id']}", tags=child_tags) as child:
                child.log_params({"setting": trained.setting.to_dict(), "train": trained.train_config.to_dict()})
                metrics = {
                    k: finite_or_none(s[k])
                    for k in (
                        "sigma_data",
                        "memorization_auc",
                        "held_out_error",
                        "train_error",
                        "best_val_loss",
                        "best_epoch",
                        "epochs_run",
                        "train_seconds",
                    )
                }
                for st, part in rows.groupby("score_type"):
                    metrics[f"{st}.best_frame_auc"] = float(part["frame_auc"].max())
                    metrics[f"{st}.best_paper_auc"] = float(part["paper_auc"].max())
                    for variant, v in part.groupby("variant"):
                        variant = str(variant).replace("=", "_")  # MLflow metric names: no '='
                        metrics[f"{st}.frame_auc.{variant}"] = float(v["frame_auc"].iloc[0])
                        metrics[f"{st}.reliability.{variant}"] = finite_or_none(v["reliability"].iloc[0])
                child.log_metrics(metrics)
                child.log_series("train_loss", [h["train_loss"] for h in trained.result.history])
                child.log_series(
                    "val_loss", [h["val_loss"] for h in trained.result.history if h.get("val_loss") is not None]
                )
            context.log.info(
                f"study: {s['setting_id']} trained in {s['train_seconds']:.1f}s, "
                f"memorization AUC {s['memorization_auc']:.3f}"
            )

        start = time.perf_counter()
        result = run_study(data, study_config, callback=log_child, log=context.log.info)
        seconds = time.perf_counter() - start
        meta = {"dataset": spec.name, "features": data.name, "seconds": f"{seconds:.1f}"}
        table_key = store.write_table(keys.study("study_results.parquet"), result.table, meta)
        models_key = store.write_table(keys.study("study_models.parquet"), result.models, meta)
        comparison = comparison_markdown(result.table)
        md_key = keys.study("comparison.md")
        store.write_bytes(md_key, f"# Parameter study: {spec.name}\n\n{comparison}\n".encode())
        summary = label_free_summary(result.table)
        json_key = store.write_json(
            keys.study("label_free.json"),
            {
                "dataset": spec.name,
                "seconds": seconds,
                "selections": summary,
                "seed_spread": seed_spread(result.table).to_dict("records"),
            },
        )
        figures = {}
        for name, png in study_heatmaps(result.table).items():
            figures[name] = keys.study(f"figures/{name}")
            store.write_bytes(figures[name], png)
        flat = {}
        for key, entry in summary.items():
            name = key.split("|", 1)[1].replace("|", ".")
            for sel in ("label_free", "oracle"):
                flat[f"{name}.{sel}.frame_auc"] = (entry.get(sel) or {}).get("frame_auc")
                flat[f"{name}.{sel}.paper_auc"] = (entry.get(sel) or {}).get("paper_auc")
        parent.log_metrics({**flat, "study_seconds": seconds, "trained_settings": float(len(result.models))})
        for key in (table_key, models_key, md_key, json_key):
            parent.log_artifact(store.read_bytes(key), PurePosixPath(key).name, "study")
        for name, key in figures.items():
            parent.log_artifact(store.read_bytes(key), name, "study/figures")

    metadata: dict[str, Any] = {
        "results_table": MetadataValue.path(store.location(table_key)),
        "comparison": MetadataValue.md(comparison),
        "label_free": MetadataValue.path(store.location(json_key)),
        "trained_settings": len(result.models),
        "table_rows": len(result.table),
        "study_seconds": seconds,
        "mlflow_run_id": parent.run_id or "",
    }
    for name, key in figures.items():
        stem = PurePosixPath(name).stem
        metadata[f"heatmap_{stem}"] = MetadataValue.md(f"![{stem}]({_link(store.location(key))})")
    for key, v in flat.items():
        if v is not None:
            metadata[key] = float(v)
    return MaterializeResult(metadata=metadata)


def _link(location: str) -> str:
    """A Markdown image link: local paths as file:// URLs, other locations as they are."""
    return location if "://" in location else f"file://{location}"


parameter_study_job = define_asset_job(
    STUDY_JOB,
    selection=AssetSelection.assets("parameter_study"),
    description="Run the parameter study on the dataset's features (reads the feature index, ground truth, manifest).",
)

study_assets = [parameter_study]
study_jobs = [parameter_study_job]

__all__ = [
    "ParameterStudyConfig",
    "STUDY_JOB",
    "parameter_study",
    "parameter_study_job",
    "study_assets",
    "study_data",
    "study_jobs",
]
