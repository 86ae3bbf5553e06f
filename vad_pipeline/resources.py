"""Dagster resources: storage under VAD_HOME, the dataset spec, the backbone, the experiment tracker.

The tracker is the project's own small `ConfigurableResource` over MLflow's client (the
`dagster-mlflow` package pins old versions): `MLflowTracker` logs to MLflow, `NoOpTracker`
accepts the same calls and records nothing. Both hand out a run handle from `start_run`.
"""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import time
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import pandas as pd
from dagster import ConfigurableResource

from vad_core.features.backbones import load_backbone
from vad_core.io.feature_tables import feature_path
from vad_core.io.tables import atomic_write_bytes, write_parquet_atomic
from vad_pipeline.datasets import DatasetSpec, default_home, load_spec

PACKAGE = "vad-diffusion"


# --------------------------------------------------------------------------- storage


class VadStorage(ConfigurableResource):
    """Every table, checkpoint and report of a dataset lives under `<home>/<dataset name>/`.

    `home` defaults to `VAD_HOME` (else `./vad_home`), read when the resource is used so a test
    or a shell can point it elsewhere. All writes are atomic (temp file + rename).
    """

    home: Optional[str] = None

    def root(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else default_home()

    def dataset_dir(self, dataset: str) -> Path:
        return self.root() / dataset

    def manifest_path(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "video_manifest.parquet"

    def ground_truth_path(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "ground_truth.parquet"

    def features_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "features"

    def feature_path(self, dataset: str, video_id: str) -> Path:
        return feature_path(self.features_dir(dataset), video_id)

    def feature_index_path(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "feature_index.parquet"

    def denoiser_path(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "denoiser" / "denoiser.pt"

    def denoiser_info_path(self, dataset: str) -> Path:
        """JSON beside the checkpoint: fingerprints, figures and the MLflow run/model version."""
        return self.dataset_dir(dataset) / "denoiser" / "denoiser.json"

    def scores_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "scores"

    def segment_scores_path(self, dataset: str) -> Path:
        return self.scores_dir(dataset) / "segment_scores.parquet"

    def tile_scores_path(self, dataset: str) -> Path:
        """Companion of the segment scores: the MSE of every (clip, tile), for localization."""
        return self.scores_dir(dataset) / "segment_tile_scores.parquet"

    def frame_scores_path(self, dataset: str) -> Path:
        return self.scores_dir(dataset) / "frame_scores.parquet"

    def baseline_scores_path(self, dataset: str) -> Path:
        return self.scores_dir(dataset) / "baseline_scores.parquet"

    def report_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "report"

    def mlflow_dir(self) -> Path:
        return self.root() / "mlflow"

    def write_table(self, df: pd.DataFrame, path: Path, metadata: Mapping[str, str] | None = None) -> Path:
        write_parquet_atomic(df, path, metadata)
        return path

    def write_json(self, obj: Any, path: Path) -> Path:
        atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n").encode())
        return path

    def write_text(self, text: str, path: Path) -> Path:
        atomic_write_bytes(path, text.encode())
        return path

    def read_json(self, path: Path) -> Any | None:
        """The parsed JSON at `path`, or None when there is no such file."""
        try:
            return json.loads(Path(path).read_text())
        except FileNotFoundError:
            return None


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become null so the file stays valid JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- dataset and backbone


class DatasetResource(ConfigurableResource):
    """Which dataset spec the pipeline runs on: a YAML path or a name in `datasets/`.

    None reads `VAD_DATASET` at use time, then falls back to the demo spec.
    """

    spec: Optional[str] = None

    def load(self, home: Path | None = None) -> DatasetSpec:
        return load_spec(self.spec, home=home)


class BackboneResource(ConfigurableResource):
    """The pretrained clip embedder and its device.

    `name` None reads `VAD_BACKBONE` (default "i3d"); `device` None reads `VAD_DEVICE` (default:
    CUDA, then MPS, then CPU). Any name `vad_core.features.backbones.load_backbone` knows, e.g.
    `pixelstats-2` (weight-free, for tests and quick runs).
    """

    name: Optional[str] = None
    device: Optional[str] = None
    weights: Optional[str] = None

    def resolved_name(self) -> str:
        return self.name or os.environ.get("VAD_BACKBONE") or "i3d"

    def resolved_device(self) -> str | None:
        return self.device or os.environ.get("VAD_DEVICE") or None

    def load(self) -> Any:
        """The backbone object (`name`, `dim`, `weights_sha256`, `embed`), loaded once per process."""
        return _load_backbone(self.resolved_name(), self.resolved_device(), self.weights)


@functools.lru_cache(maxsize=4)
def _load_backbone(name: str, device: str | None, weights: str | None) -> Any:
    # Loading I3D converts and reads ~50 MB of weights: do it once per process, not per run.
    return load_backbone(name, device=device, weights=weights)


# --------------------------------------------------------------------------- experiment tracking


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout (`+dirty` when it has changes)."""
    try:
        version = importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{version}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return version


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts -> `{"train.lr": "0.0002", ...}` (lists/tuples as JSON)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(_jsonable(list(value)))
        else:
            out[name] = str(value)
    return out


class TrackedRun:
    """A run handle that records nothing: the interface every tracker's runs share."""

    run_id: str | None = None
    artifact_uri: str | None = None

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        """Log a (nested) config as string params."""

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Log finite metrics (None/NaN entries are skipped: MLflow cannot plot them)."""

    def log_series(self, name: str, values: Sequence[float]) -> None:
        """Log a curve (e.g. the loss per epoch) as one metric with step = index."""

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set string tags on the run."""

    def register_model(self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None) -> str | None:
        """Register `artifact_path` of this run as a new version of model `name`; returns the version."""
        return None


class ExperimentTracker(ConfigurableResource):
    """Base of the trackers: `start_run` yields a `TrackedRun`. This base records nothing."""

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
        yield TrackedRun()

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        """Add tags to a registered model version (e.g. the AUC once evaluation has run)."""

    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        """Add metrics to an existing (possibly finished) run."""

    def describe(self) -> str:
        return "no tracking"


class NoOpTracker(ExperimentTracker):
    """Accepts every call and records nothing: for tests and runs that need no tracking."""


class _MLflowRun(TrackedRun):
    def __init__(self, client: Any, run: Any) -> None:
        self._client = client
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        from mlflow.entities import Param

        flat = flatten_params(params, prefix)
        # MLflow caps a param value at 6000 characters; longer values are cut, marked as such.
        items = [Param(k[:250], v if len(v) <= 6000 else v[:5990] + "...[cut]") for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i:i + 500])

    def log_series(self, name: str, values: Sequence[float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(name, float(v), now, i) for i, v in enumerate(values) if v is not None and math.isfinite(float(v))]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i:i + 500])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])

    def register_model(self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(name)
        except MlflowException:
            pass  # already registered: add a version to it
        version = self._client.create_model_version(
            name, source=f"{self.artifact_uri}/{artifact_path}", run_id=self.run_id,
            tags={k: str(v) for k, v in (tags or {}).items() if v is not None},
        )
        return str(version.version)


class MLflowTracker(ExperimentTracker):
    """Logs runs, artifacts and registered models to MLflow.

    `tracking_uri` None reads `MLFLOW_TRACKING_URI`, else uses SQLite at
    `<VAD_HOME>/mlflow/mlflow.db` with artifacts in `<VAD_HOME>/mlflow/artifacts`.
    """

    tracking_uri: Optional[str] = None
    experiment: str = "vad-diffusion"
    home: Optional[str] = None

    def resolved_uri(self) -> str:
        if self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
            return self.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{self._default_dir() / 'mlflow.db'}"

    def _default_dir(self) -> Path:
        return VadStorage(home=self.home).mlflow_dir()

    def _owns_store(self) -> bool:
        return not (self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        uri = self.resolved_uri()
        if self._owns_store():
            self._default_dir().mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def experiment_id(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        location = (self._default_dir() / "artifacts").as_uri() if self._owns_store() else None
        try:
            return client.create_experiment(self.experiment, artifact_location=location)
        except MlflowException:
            # Another run created it between our look-up and the create: use theirs.
            return client.get_experiment_by_name(self.experiment).experiment_id

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
        client = self.client()
        run = client.create_run(self.experiment_id(client), run_name=run_name,
                                tags={k: str(v) for k, v in (tags or {}).items() if v is not None})
        handle = _MLflowRun(client, run)
        try:
            yield handle
        except BaseException:
            client.set_terminated(run.info.run_id, "FAILED")
            raise
        client.set_terminated(run.info.run_id, "FINISHED")

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        client = self.client()
        for k, v in tags.items():
            if v is not None:
                client.set_model_version_tag(name, version, k, str(v))

    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        client = self.client()
        _MLflowRun(client, client.get_run(run_id)).log_metrics(metrics)

    def describe(self) -> str:
        return f"MLflow at {self.resolved_uri()} (experiment {self.experiment!r})"
