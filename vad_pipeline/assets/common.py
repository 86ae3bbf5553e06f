"""What every asset module shares: the dataset in use, feature loading, tags, Markdown tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config

from vad_core.errors import VADInputError
from vad_core.io.feature_tables import COLUMNS as FEATURE_COLUMNS
from vad_core.io.feature_tables import read_feature_matrix
from vad_core.io.store import TableStore
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
from vad_pipeline.resources.tracking import code_version
from vad_pipeline.specs import DatasetSpec
from vad_pipeline.ui_links import dagster_asset_url, dagster_run_url

KEY_COLUMNS = [c for c in FEATURE_COLUMNS if c != "feature"]


def dataset_spec(storage: VadStorage, dataset: DatasetResource) -> DatasetSpec:
    return dataset.load(home=storage.root())


def core_config(config: Config, core_cls: type, **overrides: Any) -> Any:
    """The frozen vad_core config holding the Dagster config's fields that `core_cls` knows.

    Fields the Dagster config does not expose keep vad_core's defaults; list values become
    tuples (frozen configs hold tuples); `overrides` win over both.
    """
    known = {f.name for f in dataclasses.fields(core_cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model_dump().items() if k in known}
    values.update(overrides)
    return core_cls(**values)


def run_tags(context: AssetExecutionContext, spec: DatasetSpec) -> dict[str, str]:
    """The tags every MLflow run carries: Dagster run (id and address), asset, partition, dataset, code version."""
    return {
        "dagster.run_id": context.run.run_id,
        "dagster.run_url": dagster_run_url(context.run.run_id),
        "dagster.asset_key": context.asset_key.to_user_string(),
        "dagster.partition": context.partition_key if context.has_partition_key else "",
        "dataset": spec.name,
        "code_version": code_version(),
    }


def run_note(context: AssetExecutionContext, what: str) -> str:
    """An MLflow run's description (Markdown): what the run holds and the Dagster run and asset that made it."""
    asset = context.asset_key.to_user_string()
    return (
        f"{what}\n\nMade by Dagster run [{context.run.run_id[:8]}]({dagster_run_url(context.run.run_id)}) "
        f"materializing [{asset}]({dagster_asset_url(asset)})"
        + (f", partition `{context.partition_key}`" if context.has_partition_key else "")
        + "."
    )


def load_feature_rows(
    store: TableStore, keys: DatasetKeys, video_ids: Iterable[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The key columns `(N, 9)` and the feature matrix `(N, D)` of the given videos' tables.

    Rows come in the order of `video_ids`, then as stored. Videos must agree on D.
    """
    frames: list[pd.DataFrame] = []
    mats: list[np.ndarray] = []
    for vid in video_ids:
        key = keys.features(vid)
        frames.append(store.read_table(key, columns=KEY_COLUMNS).to_pandas())
        mats.append(read_feature_matrix(store, key))
    if not mats:
        raise VADInputError(f"dataset {keys.dataset!r}: no feature tables to load")
    dims = {m.shape[1] for m in mats}
    if len(dims) > 1:
        raise VADInputError(f"dataset {keys.dataset!r}: feature tables disagree on the dimension ({sorted(dims)})")
    return pd.concat(frames, ignore_index=True), np.concatenate(mats, axis=0)


def read_table(store: TableStore, key: str, what: str) -> pd.DataFrame:
    """A Parquet table an upstream asset wrote; a clear error when it was never materialized."""
    try:
        return store.read_frame(key)[0]
    except VADInputError:
        raise VADInputError(
            f"{what} table {store.location(key)} is missing or unreadable: materialize {what} first"
        ) from None


def counts_metadata(df: pd.DataFrame) -> Mapping[str, Any]:
    from dagster import TableColumn, TableSchema

    return {
        "rows": len(df),
        "dagster/row_count": len(df),
        "dagster/column_schema": TableSchema(columns=[TableColumn(str(c), str(t)) for c, t in df.dtypes.items()]),
    }


__all__ = [
    "KEY_COLUMNS",
    "core_config",
    "counts_metadata",
    "dataset_spec",
    "load_feature_rows",
    "read_table",
    "run_note",
    "run_tags",
]
