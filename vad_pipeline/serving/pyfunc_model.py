"""The live detector as an MLflow pyfunc model: this file IS the model's code (MLflow's "models from code").

`vad_pipeline.serving.package.save_pyfunc_model` saves it with the live model's two files as
artifacts (`artifacts/detector.pt`, `artifacts/live.json`) and vad_core as code, and MLflow runs
this file when the model is loaded (`mlflow.pyfunc.load_model`, `mlflow models serve`): it imports
only mlflow, numpy, pandas and vad_core, never the pipeline, so a served model needs no Dagster.

Input: feature rows, one per (clip, tile): `tile` (int), `feature` (the row's D feature values;
float32 in the tables, doubles on the wire, cast to float32 here) and, optionally, the clip keys
`video_id`, `clip`, `start_frame`, `end_frame` (all four, or none). Output, one row per input row:
`score` (the row's score, `Detector.score_new`), and with clip keys `clip_score` (max over the
clip's tiles in the request), `clip_tile` (its arg-max tile), `threshold` (the stored training-batch
rule, `vad_core.live.decision`) and `anomalous`. Without clip keys each row is keyed by its position
in the request (`video_id` "", `clip` = position): the scores are reproducible, but only rows sent
with their keys score exactly as the pipeline scores them (the noise draws are seeded by the keys).

A request that breaks the contract (a missing or mistyped column: MLflow's schema check; a feature
of the wrong length, a tile out of range, clip keys given partly) raises `MlflowException` with
INVALID_PARAMETER_VALUE: the scoring server answers 400 with the message, never 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from vad_core.errors import VADInputError
from vad_core.live.detector import LiveDetector, load_live_detector

CLIP_KEYS = ("video_id", "clip", "start_frame", "end_frame")
OUTPUT_COLUMNS = ("score", "clip_score", "clip_tile", "threshold", "anomalous")


def _bad_input(message: str) -> MlflowException:
    return MlflowException(f"live detector input: {message}", error_code=INVALID_PARAMETER_VALUE)


def feature_matrix(column: pd.Series, dim: int) -> np.ndarray:
    """`(N, dim)` float32 from a column of per-row feature arrays; a clear error naming the first bad row."""
    out = np.empty((len(column), dim), dtype=np.float32)
    for i, value in enumerate(column):
        arr = np.asarray(value if value is not None else [], dtype=np.float64).reshape(-1)
        if arr.size != dim:
            raise _bad_input(f"feature of row {i} has {arr.size} values, the model takes {dim}")
        out[i] = arr
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise _bad_input(f"feature of row {bad} is not finite")
    return out


def score_request(live: LiveDetector, request: pd.DataFrame) -> pd.DataFrame:
    """The model's answer to `request` (see the module doc): `(N,)` rows of OUTPUT_COLUMNS, or `score` alone."""
    rows = request.reset_index(drop=True)
    if len(rows) == 0:
        raise _bad_input("no rows")
    for name in ("tile", "feature"):
        if name not in rows.columns:
            raise _bad_input(f"column {name!r} is missing")
    given = [c for c in CLIP_KEYS if c in rows.columns]
    if given and len(given) < len(CLIP_KEYS):
        missing = [c for c in CLIP_KEYS if c not in given]
        raise _bad_input(f"clip keys are given partly ({given}); also send {missing}, or none of them")
    keys = rows[[*CLIP_KEYS, "tile"]] if given else pd.DataFrame({"video_id": "", "clip": np.arange(len(rows))})
    if given and keys.isna().to_numpy().any():
        raise _bad_input("clip keys must not be null")
    keys = keys.assign(tile=rows["tile"].to_numpy(np.int64))
    x = feature_matrix(rows["feature"], live.dim)
    try:
        if not given:
            return pd.DataFrame({"score": live.score_rows(x, keys)})
        result = live.score(keys.astype({"clip": np.int64, "start_frame": np.int64, "end_frame": np.int64}), x)
    except VADInputError as exc:
        raise _bad_input(str(exc)) from None
    clips = result.clips.rename(columns={"score": "clip_score", "tile": "clip_tile"})
    per_row = result.rows[["video_id", "clip", "score"]].merge(
        clips[["video_id", "clip", "clip_score", "clip_tile", "threshold", "anomalous"]],
        on=["video_id", "clip"],
        how="left",
        validate="many_to_one",
    )
    return per_row[list(OUTPUT_COLUMNS)].astype({"clip_tile": np.int64, "anomalous": bool})


class LiveDetectorModel(PythonModel):
    """`vad_core.live.LiveDetector` behind MLflow's pyfunc interface.

    `model_config={"device": "cpu"}` (at load) picks the device; None: vad_core's choice (CUDA, MPS, CPU).
    """

    live: LiveDetector | None = None

    def load_context(self, context: Any) -> None:
        folders = {Path(p).parent for p in context.artifacts.values()}
        if len(folders) != 1:
            raise MlflowException(f"live detector model: artifacts are not in one folder ({sorted(map(str, folders))})")
        device = (context.model_config or {}).get("device")
        self.live = load_live_detector(folders.pop(), device=device)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.live is None:
            raise MlflowException("live detector model: predict before load_context")
        if not isinstance(model_input, pd.DataFrame):
            raise _bad_input(f"expected a table of rows, got {type(model_input).__name__}")
        return score_request(self.live, model_input)


# MLflow's models from code: the object this file hands MLflow when it runs it as a model's code.
set_model(LiveDetectorModel())

__all__ = ["CLIP_KEYS", "OUTPUT_COLUMNS", "LiveDetectorModel", "feature_matrix", "score_request"]
