"""Identical re-runs are no-ops: the detector is not refitted, nor registered again, when the rows
it would train on, its recipe and its resolved config are what the stored checkpoint was fitted with.

A retrain on unchanged data gives a new MLflow run and model version for nothing (and a
different model where the seed does not pin every kernel). `training_identity` is what must
match, recorded in denoiser.json; the stored checkpoint must also still be the bytes that
training wrote (its sha256), so a damaged or replaced checkpoint is retrained. The `denoiser`
asset's `force` flag retrains anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vad_core.diffusion.config import TrainConfig
from vad_core.io.hashing import fingerprint_array, sha256_bytes
from vad_core.io.store import TableStore, jsonable
from vad_pipeline.resources.storage import DatasetKeys

# `rows_fingerprint` is over every row offered to the fit; the detector's own `data_fingerprint`
# covers the rows its members kept (after the label-free trim), known only after fitting.
IDENTITY_KEYS = ("rows_fingerprint", "tiles_fingerprint", "train_config", "detector_recipe", "train_videos")


def training_identity(
    x: np.ndarray,
    tiles: np.ndarray,
    config: TrainConfig,
    train_videos: Sequence[str],
    recipe: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a training run is a function of: the rows `(N, D)`, their tiles `(N,)`, the training
    config, the detector recipe (`DetectorRecipe.to_dict()`) and the videos."""
    return {
        "rows_fingerprint": fingerprint_array(np.ascontiguousarray(x, dtype=np.float32)),
        "tiles_fingerprint": fingerprint_array(np.ascontiguousarray(tiles, dtype=np.int64)),
        "train_config": config.to_dict(),
        "detector_recipe": dict(recipe or {}),
        "train_videos": list(train_videos),
    }


def checkpoint_sha256(data: bytes) -> str:
    """The hex sha256 recorded in denoiser.json (the one helper in vad_core.io.hashing)."""
    return sha256_bytes(data)


def identical_previous_run(store: TableStore, keys: DatasetKeys, identity: dict[str, Any]) -> dict[str, Any] | None:
    """denoiser.json of the stored checkpoint when it was trained on exactly `identity`, else None."""
    info = store.read_json(keys.denoiser_info)
    if not isinstance(info, dict) or not store.exists(keys.denoiser):
        return None
    if any(jsonable(identity[k]) != info.get(k) for k in IDENTITY_KEYS):
        return None
    if info.get("checkpoint_sha256") != store.sha256(keys.denoiser):
        return None  # damaged or replaced since: train again
    return info


__all__ = ["IDENTITY_KEYS", "checkpoint_sha256", "identical_previous_run", "training_identity"]
