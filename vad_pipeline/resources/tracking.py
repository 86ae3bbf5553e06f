"""The experiment tracker: an abstract interface and MLflow behind it (the test double: `recording.py`).

`ExperimentTracker` is a Dagster `ConfigurableResource` whose methods are abstract, and the run
handle `TrackedRun` an ABC: an implementation that forgets a method fails when it is created,
instead of silently logging nothing. `MLflowTracker` logs to MLflow's client (the project's own
resource: the `dagster-mlflow` package pins old versions). Runs nest (`parent_run_id`: one
evaluation, a child run per scorer), carry a Markdown description, and have an address in the
tracker's UI (`run_url`), so Dagster's metadata can link to them.

MLflow telemetry is off in every process the tracker runs in (`MLFLOW_DISABLE_TELEMETRY`, the
switch MLflow 3 reads on every event; a user's explicit setting wins).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource

from vad_core.io.store import jsonable
from vad_pipeline import ui_links
from vad_pipeline.resources import model_registry
from vad_pipeline.resources.tracking_errors import GuardedClient, TrackingUnavailableError
from vad_pipeline.specs import default_home

if TYPE_CHECKING:
    from vad_core.live.detector import LiveDetector

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
    """One tracked run: params, metrics, curves, artifacts (bytes), tags, description, model registration."""

    run_id: str | None = None
    artifact_uri: str | None = None
    url: str | None = None  # the run's page in the tracker's UI, when it has one

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
    def set_description(self, text: str) -> None:
        """The run's description (Markdown: the UI renders it on the run's page)."""

    @abstractmethod
    def log_pyfunc_model(self, live: LiveDetector, artifact_path: str) -> None:
        """Log `live` as an MLflow pyfunc model folder (`vad_pipeline.serving`) under `artifact_path`."""

    @abstractmethod
    def register_model(
        self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> str | None:
        """Register `artifact_path` of this run as a new version of model `name`; returns the version."""


class ExperimentTracker(ConfigurableResource, ABC):
    """What the assets log through. Implementations: `MLflowTracker`, `RecordingTracker`."""

    @abstractmethod
    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        description: str | None = None,
    ) -> AbstractContextManager[TrackedRun]:
        """A context manager yielding the run (a child of `parent_run_id` when given); the run ends
        FINISHED, or FAILED when the block raises."""

    @abstractmethod
    def run_url(self, run_id: str) -> str | None:
        """The page of run `run_id` in the tracker's UI (None: the tracker has no UI)."""

    @abstractmethod
    def save_comparison(
        self, key: str, title: str, parent_run_id: str, metrics: Sequence[str], params: Sequence[str] = ()
    ) -> str | None:
        """Save a runs-table view named `title` (replacing the one under `key`) that lists the children
        of `parent_run_id` side by side: `metrics` and `params` as columns, sorted by the first metric,
        highest first. Returns its address (None: the tracker has no UI)."""

    @abstractmethod
    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        """Add tags to a registered model version (e.g. the AUC once evaluation has run)."""

    @abstractmethod
    def describe_model_version(self, name: str, version: str, description: str) -> None:
        """Replace a registered model version's description (Markdown)."""

    @abstractmethod
    def model_version_aliases(self, name: str, version: str) -> list[str]:
        """The aliases (e.g. `champion`) that point at a registered model version now, sorted."""

    @abstractmethod
    def model_version_url(self, name: str, version: str) -> str | None:
        """The page of a registered model version in the tracker's UI (None: no UI)."""

    @abstractmethod
    def model_version_tags(self, name: str, version: str) -> dict[str, str]:
        """The tags of a registered model version (e.g. its `frame_auc`)."""

    @abstractmethod
    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` (`challenger`, `champion`) at `version`, moving it from any other version."""

    @abstractmethod
    def model_version_by_alias(self, name: str, alias: str) -> str | None:
        """The version `alias` points at now (None: no such alias or model)."""

    @abstractmethod
    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        """Add metrics to an existing (possibly finished) run."""

    @abstractmethod
    def describe(self) -> str:
        """Where runs go, for people."""


# MLflow: the run handle and the tracker (registry calls: model_registry.py).
# MLflow's own tags: the parent of a nested run, and the Markdown description of a run or experiment.
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
# A saved runs-table view (MLflow 3.17's format, `ui_links.mlflow_saved_view`) is an experiment tag of this
# prefix, opened by `?viewStateShareKey=<key>` and listed under "Views" (tests/browser: the UI reads it).
VIEW_TAG = "mlflow.sharedViewState."
# Tells MLflow 3 the experiment holds classic model-training runs (not GenAI traces).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
TELEMETRY_SWITCH = "MLFLOW_DISABLE_TELEMETRY"


def disable_mlflow_telemetry(env: dict[str, str] | None = None) -> dict[str, str]:
    """Turn MLflow's telemetry off in `env` (default: os.environ) and return it, unless the user set the switch."""
    target: Any = os.environ if env is None else env
    if TELEMETRY_SWITCH not in target:
        target[TELEMETRY_SWITCH] = os.environ.get(TELEMETRY_SWITCH, "true")
    return dict(target)


class _MLflowRun(TrackedRun):
    def __init__(self, client: Any, run: Any, url: str | None = None) -> None:
        self._client = client
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri
        self.url = url

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        from mlflow.entities import Param

        flat = flatten_params(params, prefix)
        # MLflow caps a param value at 6000 characters; longer values are cut, marked as such.
        items = [Param(k[:250], v if len(v) <= 6000 else v[:5990] + "...[cut]") for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def _log_metric_items(self, items: list[Any]) -> None:
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log_metric_items([Metric(k, v, now, step or 0) for k, v in finite_metrics(metrics).items()])

    def log_series(self, name: str, values: Sequence[float | None]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(float(v))]
        self._log_metric_items([Metric(name, v, now, i) for i, v in finite])

    def log_artifact(self, data: bytes, file_name: str, artifact_path: str | None = None) -> None:
        model_registry.log_bytes(self._client, str(self.run_id), data, file_name, artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in model_registry.tag_strings(tags).items()])

    def set_description(self, text: str) -> None:
        self._client.set_tag(self.run_id, NOTE_TAG, text)

    def log_pyfunc_model(self, live: LiveDetector, artifact_path: str) -> None:
        model_registry.log_pyfunc_folder(self._client, str(self.run_id), live, artifact_path)

    def register_model(
        self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> str | None:
        source = f"{self.artifact_uri}/{artifact_path}"
        return model_registry.register_version(self._client, name, source, self.run_id, tags, description)


class MLflowTracker(ExperimentTracker):
    """Logs runs, artifacts and registered models to MLflow.

    `tracking_uri` None reads `MLFLOW_TRACKING_URI`, else uses SQLite at
    `<home>/mlflow/mlflow.db` (home: `VAD_HOME`, else `./vad_home`) with artifacts in
    `<home>/mlflow/artifacts`. `ui_url` is where people open the MLflow UI (None:
    `vad_pipeline.ui_links.mlflow_ui_url`, from `VAD_MLFLOW_UI_URL` or the tracking server).
    """

    tracking_uri: str | None = None
    experiment: str = "vad-diffusion"
    home: str | None = None
    ui_url: str | None = None

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

    def resolved_ui_url(self) -> str:
        return (self.ui_url or ui_links.mlflow_ui_url(self.resolved_uri())).rstrip("/")

    def client(self) -> Any:
        disable_mlflow_telemetry()
        from mlflow.tracking import MlflowClient

        uri = self.resolved_uri()
        if self.owns_store():
            self.default_dir().mkdir(parents=True, exist_ok=True)
        return GuardedClient(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)

    def experiment_id(self, client: Any) -> str:
        location = (self.default_dir() / "artifacts").as_uri() if self.owns_store() else None
        tags = {
            EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1],
            NOTE_TAG: "Runs of the vad-diffusion pipeline: one per denoiser training, baseline fit and evaluation "
            "(a child run per scorer, all with `frame_auc`, `frame_ap`, `frame_auc_smoothed`, `paper_protocol_auc`).",
        }
        return model_registry.ensure_experiment(client, self.experiment, location, tags)

    @contextmanager
    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        description: str | None = None,
    ) -> Iterator[TrackedRun]:
        client = self.client()
        all_tags = model_registry.tag_strings(tags)
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        if description:
            all_tags[NOTE_TAG] = description
        experiment_id = self.experiment_id(client)
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        url = ui_links.mlflow_run_url(self.resolved_ui_url(), experiment_id, run.info.run_id)
        handle = _MLflowRun(client, run, url)
        try:
            yield handle
        except BaseException:
            try:
                client.set_terminated(run.info.run_id, "FAILED")
            except TrackingUnavailableError:
                pass  # the server is gone: the original error is the one to report
            raise
        client.set_terminated(run.info.run_id, "FINISHED")

    def run_url(self, run_id: str) -> str | None:
        run = self.client().get_run(run_id)
        return ui_links.mlflow_run_url(self.resolved_ui_url(), run.info.experiment_id, run_id)

    def save_comparison(
        self, key: str, title: str, parent_run_id: str, metrics: Sequence[str], params: Sequence[str] = ()
    ) -> str | None:
        client = self.client()
        experiment_id = self.experiment_id(client)
        view = ui_links.mlflow_saved_view(title, f"tags.`{PARENT_TAG}` = '{parent_run_id}'", metrics, params)
        safe = re.sub(r"[^A-Za-z0-9_-]", "-", key)
        client.set_experiment_tag(experiment_id, VIEW_TAG + safe, view)
        return ui_links.mlflow_view_url(self.resolved_ui_url(), experiment_id, safe)

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        model_registry.tag_version(self.client(), name, version, tags)

    def describe_model_version(self, name: str, version: str, description: str) -> None:
        self.client().update_model_version(name, version, description=description)

    def model_version_aliases(self, name: str, version: str) -> list[str]:
        return sorted(self.client().get_model_version(name, version).aliases or [])

    def model_version_url(self, name: str, version: str) -> str | None:
        return ui_links.mlflow_model_version_url(self.resolved_ui_url(), name, version)

    def model_version_tags(self, name: str, version: str) -> dict[str, str]:
        return model_registry.version_tags(self.client(), name, version)

    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        model_registry.set_alias(self.client(), name, alias, version)

    def model_version_by_alias(self, name: str, alias: str) -> str | None:
        return model_registry.version_by_alias(self.client(), name, alias)

    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        client = self.client()
        _MLflowRun(client, client.get_run(run_id)).log_metrics(metrics)

    def describe(self) -> str:
        return f"MLflow at {self.resolved_uri()} (experiment {self.experiment!r})"


__all__ = [
    "EXPERIMENT_KIND",
    "NOTE_TAG",
    "PARENT_TAG",
    "TELEMETRY_SWITCH",
    "VIEW_TAG",
    "ExperimentTracker",
    "MLflowTracker",
    "TrackedRun",
    "code_version",
    "disable_mlflow_telemetry",
    "finite_metrics",
    "flatten_params",
]
