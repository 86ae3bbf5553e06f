"""The experiment tracker: an abstract interface, MLflow behind it, and a recording double for tests.

`ExperimentTracker` is a Dagster `ConfigurableResource` whose methods are abstract, and the run
handle `TrackedRun` an ABC: an implementation that forgets a method fails when it is created,
instead of silently logging nothing. `MLflowTracker` logs to MLflow's client (the project's own
resource: the `dagster-mlflow` package pins old versions); `RecordingTracker` keeps every call
in memory so a test asserts what a run logged.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from vad_core.io.store import jsonable
from vad_pipeline.resources.tracking_errors import GuardedClient, TrackingUnavailableError
from vad_pipeline.specs import default_home

PACKAGE = "vad-diffusion"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout (`+dirty` when it has changes)."""
    try:
        version = importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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
            out[name] = json.dumps(jsonable(list(value)))
        else:
            out[name] = str(value)
    return out


def finite_metrics(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """The entries that are finite numbers (None/NaN/inf are skipped: trackers cannot plot them)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


class TrackedRun(ABC):
    """One tracked run: params, metrics, curves, artifacts (bytes), tags, model registration."""

    run_id: str | None = None
    artifact_uri: str | None = None

    @abstractmethod
    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        """Log a (nested) config as string params."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Log finite metrics (None/NaN entries are skipped)."""

    @abstractmethod
    def log_series(self, name: str, values: Sequence[float | None]) -> None:
        """Log a curve (e.g. the loss per epoch) as one metric with step = index."""

    @abstractmethod
    def log_artifact(self, data: bytes, file_name: str, artifact_path: str | None = None) -> None:
        """Store `data` as the artifact `<artifact_path>/<file_name>` of the run."""

    @abstractmethod
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set string tags on the run (None values are left out)."""

    @abstractmethod
    def register_model(self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None) -> str | None:
        """Register `artifact_path` of this run as a new version of model `name`; returns the version."""


class ExperimentTracker(ConfigurableResource, ABC):
    """What the assets log through. Implementations: `MLflowTracker`, `RecordingTracker`."""

    @abstractmethod
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> AbstractContextManager[TrackedRun]:
        """A context manager yielding the run; the run ends FINISHED, or FAILED when the block raises."""

    @abstractmethod
    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        """Add tags to a registered model version (e.g. the AUC once evaluation has run)."""

    @abstractmethod
    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        """Add metrics to an existing (possibly finished) run."""

    @abstractmethod
    def describe(self) -> str:
        """Where runs go, for people."""


# --------------------------------------------------------------------------- MLflow


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
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in finite_metrics(metrics).items()]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_series(self, name: str, values: Sequence[float | None]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(name, float(v), now, i) for i, v in enumerate(values) if v is not None and math.isfinite(float(v))
        ]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_artifact(self, data: bytes, file_name: str, artifact_path: str | None = None) -> None:
        # MLflow's client uploads local files: stage the bytes under their name in a private folder.
        with tempfile.TemporaryDirectory(prefix="vad-artifact-") as tmp:
            local = Path(tmp) / file_name
            local.write_bytes(data)
            self._client.log_artifact(self.run_id, str(local), artifact_path)

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
            name,
            source=f"{self.artifact_uri}/{artifact_path}",
            run_id=self.run_id,
            tags={k: str(v) for k, v in (tags or {}).items() if v is not None},
        )
        return str(version.version)


class MLflowTracker(ExperimentTracker):
    """Logs runs, artifacts and registered models to MLflow.

    `tracking_uri` None reads `MLFLOW_TRACKING_URI`, else uses SQLite at
    `<home>/mlflow/mlflow.db` (home: `VAD_HOME`, else `./vad_home`) with artifacts in
    `<home>/mlflow/artifacts`.
    """

    tracking_uri: str | None = None
    experiment: str = "vad-diffusion"
    home: str | None = None

    def resolved_uri(self) -> str:
        if self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
            return self.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{self.default_dir() / 'mlflow.db'}"

    def default_dir(self) -> Path:
        """The folder of the project-owned store (when no tracking URI is set)."""
        root = Path(self.home).expanduser().resolve() if self.home else default_home()
        return root / "mlflow"

    def owns_store(self) -> bool:
        """True when runs go to the project's own SQLite store (not a user's server)."""
        return not (self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        uri = self.resolved_uri()
        if self.owns_store():
            self.default_dir().mkdir(parents=True, exist_ok=True)
        return GuardedClient(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)

    def experiment_id(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        location = (self.default_dir() / "artifacts").as_uri() if self.owns_store() else None
        try:
            return str(client.create_experiment(self.experiment, artifact_location=location))
        except MlflowException:
            # Another run created it between our look-up and the create: use theirs.
            return str(client.get_experiment_by_name(self.experiment).experiment_id)

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
        client = self.client()
        run = client.create_run(
            self.experiment_id(client),
            run_name=run_name,
            tags={k: str(v) for k, v in (tags or {}).items() if v is not None},
        )
        handle = _MLflowRun(client, run)
        try:
            yield handle
        except BaseException:
            try:
                client.set_terminated(run.info.run_id, "FAILED")
            except TrackingUnavailableError:
                pass  # the server is gone: the original error is the one to report
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


# --------------------------------------------------------------------------- recording double


@dataclass
class RecordedRun:
    """Everything one run of a `RecordingTracker` was given."""

    run_name: str
    tags: dict[str, str]
    run_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # "<artifact_path>/<file_name>" -> bytes
    models: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (name, artifact path, tags)
    status: str = "RUNNING"


class _RecordingRun(TrackedRun):
    def __init__(self, record: RecordedRun, versions: dict[str, int]) -> None:
        self.record, self._versions = record, versions
        self.run_id = record.run_id
        self.artifact_uri = f"recorded://{record.run_id}"

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        self.record.params.update(flatten_params(params, prefix))

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        self.record.metrics.update(finite_metrics(metrics))

    def log_series(self, name: str, values: Sequence[float | None]) -> None:
        self.record.series[name] = [float(v) for v in values if v is not None and math.isfinite(float(v))]

    def log_artifact(self, data: bytes, file_name: str, artifact_path: str | None = None) -> None:
        self.record.artifacts["/".join(p for p in (artifact_path, file_name) if p)] = bytes(data)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.record.tags.update({k: str(v) for k, v in tags.items() if v is not None})

    def register_model(self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None) -> str | None:
        self._versions[name] = self._versions.get(name, 0) + 1
        self.record.models.append((name, artifact_path, {k: str(v) for k, v in (tags or {}).items() if v is not None}))
        return str(self._versions[name])


@dataclass
class Recording:
    """What a `RecordingTracker` saw: the runs in start order, model-version tags, late metrics."""

    runs: list[RecordedRun] = field(default_factory=list)
    model_version_tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def run(self, run_name: str) -> RecordedRun:
        """The last run of that name (KeyError naming the names seen)."""
        for record in reversed(self.runs):
            if record.run_name == run_name:
                return record
        raise KeyError(f"no run {run_name!r} (runs: {[r.run_name for r in self.runs]})")


# One recording per tracker name: Dagster copies resources before a run, so the recording
# cannot live on the instance; tests look it up by the name they gave.
_RECORDINGS: dict[str, Recording] = {}


class RecordingTracker(ExperimentTracker):
    """Records every call in memory, per `name` (`RecordingTracker(name=...).recording()`): the
    test double that lets a test assert what an asset logged."""

    name: str = "default"

    def recording(self) -> Recording:
        return _RECORDINGS.setdefault(self.name, Recording())

    def reset(self) -> None:
        _RECORDINGS[self.name] = Recording()

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
        rec = self.recording()
        record = RecordedRun(
            run_name, {k: str(v) for k, v in (tags or {}).items() if v is not None}, run_id=uuid.uuid4().hex
        )
        rec.runs.append(record)
        try:
            yield _RecordingRun(record, rec.versions)
        except BaseException:
            record.status = "FAILED"
            raise
        record.status = "FINISHED"

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        self.recording().model_version_tags.setdefault((name, version), {}).update(
            {k: str(v) for k, v in tags.items() if v is not None}
        )

    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        for record in self.recording().runs:
            if record.run_id == run_id:
                record.metrics.update(finite_metrics(metrics))
                return
        raise KeyError(f"no recorded run {run_id!r}")

    def describe(self) -> str:
        return f"recording tracker {self.name!r} (in memory)"


__all__ = [
    "ExperimentTracker",
    "MLflowTracker",
    "RecordedRun",
    "Recording",
    "RecordingTracker",
    "TrackedRun",
    "code_version",
    "finite_metrics",
    "flatten_params",
]
