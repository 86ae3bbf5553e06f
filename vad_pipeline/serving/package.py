"""Saving a `LiveDetector` as an MLflow pyfunc model folder: signature, requirements, code, artifacts.

    path = save_pyfunc_model(live, folder / "denoiser_model")   # an MLflow model folder (MLmodel, ...)
    mlflow.pyfunc.load_model(str(path)).predict(rows)           # rows: tile, feature [, clip keys]

The folder holds `MLmodel` with `SIGNATURE`, `pyfunc_model.py` (the model's code, MLflow's models
from code: nothing is pickled), `code/vad_core/` (the scoring code, so the model does not depend on
the pipeline's checkout), `artifacts/detector.pt` + `artifacts/live.json` (the detector with its
scaler and scoring sigma, the decision rule and its training statistics, the feature spec and
provenance: `vad_core.live.load_live_detector(<folder>/artifacts)` reads them) and the pip
requirements, pinned to the versions installed here and given explicitly (MLflow infers nothing).
"""

from __future__ import annotations

import os
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import vad_core
from vad_core.live.detector import LiveDetector, save_live_detector

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
# What the model's code imports (vad_core.live's scoring path: torch, numpy, pandas, pyarrow) and MLflow itself.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pyarrow")
ARTIFACTS_DIR = "artifacts"  # MLflow copies each artifact into <model>/artifacts/<file name>


def pip_requirements() -> list[str]:
    """`name==version` of REQUIREMENTS as installed here (a local label such as `+cpu` dropped: PyPI has none)."""
    out = []
    for name in REQUIREMENTS:
        version = importlib_metadata.version(name).split("+", 1)[0]
        out.append(f"{name}=={version}")
    return out


def model_signature() -> object:
    """The pyfunc signature: input feature rows (`tile`, `feature` [, clip keys]), output row and clip scores."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("long", "tile"),
            # Doubles: JSON numbers are float64 and MLflow refuses to narrow them; the model casts to float32,
            # which is exact for values that were float32 (the feature tables').
            ColSpec(Array("double"), "feature"),
            ColSpec("string", "video_id", required=False),
            ColSpec("long", "clip", required=False),
            ColSpec("long", "start_frame", required=False),
            ColSpec("long", "end_frame", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("double", "score"),
            ColSpec("double", "clip_score", required=False),
            ColSpec("long", "clip_tile", required=False),
            ColSpec("double", "threshold", required=False),
            ColSpec("boolean", "anomalous", required=False),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def save_pyfunc_model(live: LiveDetector, path: str | os.PathLike[str]) -> Path:
    """Save `live` as an MLflow pyfunc model folder at `path` (which must not exist yet); returns it.

    MLflow metadata of the model (`MLmodel` `metadata`): `live.info` (model name, run ids, dataset),
    the decision rule's threshold and the feature dimension.
    """
    from mlflow.pyfunc import save_model

    out = Path(path)
    with tempfile.TemporaryDirectory(prefix="vad-live-model-") as tmp:
        files = save_live_detector(live, tmp)
        save_model(
            path=str(out),
            python_model=str(MODEL_CODE),
            artifacts={"detector": files["detector"], "live": files["live"]},
            code_paths=[str(Path(vad_core.__file__).parent)],
            pip_requirements=pip_requirements(),
            signature=model_signature(),
            model_config={"device": None},  # load_model(..., model_config={"device": "cpu"}) overrides
            metadata={
                **{k: str(v) for k, v in live.info.items()},
                "threshold": str(live.rule.threshold),
                "dim": str(live.dim),
                "n_tiles": str(live.n_tiles),
            },
        )
    return out


def live_model_folder(model_path: str | os.PathLike[str]) -> Path:
    """Where a saved or downloaded pyfunc model folder keeps the live model's files (`load_live_detector` it)."""
    return Path(model_path) / ARTIFACTS_DIR


__all__ = [
    "ARTIFACTS_DIR",
    "MODEL_CODE",
    "REQUIREMENTS",
    "live_model_folder",
    "model_signature",
    "pip_requirements",
    "save_pyfunc_model",
]
