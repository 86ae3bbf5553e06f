"""`RecordingTracker`: the experiment tracker's test double, every call kept in memory.

A real implementation of `ExperimentTracker` (not a mock): tests materialize assets with it and
assert what a run logged, which runs nest under which, and what a model version was told.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vad_pipeline.resources.model_registry import tag_strings
from vad_pipeline.resources.tracking import ExperimentTracker, TrackedRun, finite_metrics, flatten_params

if TYPE_CHECKING:
    from vad_core.live.detector import LiveDetector


@dataclass
class RecordedRun:
    """Everything one run of a `RecordingTracker` was given."""

    run_name: str
    tags: dict[str, str]
    run_id: str
    parent_run_id: str | None = None
    description: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # "<artifact_path>/<file_name>" -> bytes
    models: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (name, artifact path, tags)
    status: str = "RUNNING"

    @property
    def url(self) -> str:
        return f"recorded://runs/{self.run_id}"


class _RecordingRun(TrackedRun):
    def __init__(self, record: RecordedRun, recording: Recording) -> None:
        self.record, self._recording = record, recording
        self.run_id = record.run_id
        self.artifact_uri = f"recorded://{record.run_id}"
        self.url = record.url

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        self.record.params.update(flatten_params(params, prefix))

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        self.record.metrics.update(finite_metrics(metrics))

    def log_series(self, name: str, values: Sequence[float | None]) -> None:
        self.record.series[name] = [float(v) for v in values if v is not None and math.isfinite(float(v))]

    def log_artifact(self, data: bytes, file_name: str, artifact_path: str | None = None) -> None:
        self.record.artifacts["/".join(p for p in (artifact_path, file_name) if p)] = bytes(data)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.record.tags.update(tag_strings(tags))

    def set_description(self, text: str) -> None:
        self.record.description = text

    def log_pyfunc_model(self, live: LiveDetector, artifact_path: str) -> None:
        # The same folder MLflowTracker uploads, kept file by file (`mlflow.pyfunc.load_model` reads it back
        # once a test writes the files out).
        from vad_pipeline.serving.package import save_pyfunc_model

        with tempfile.TemporaryDirectory(prefix="vad-recorded-model-") as tmp:
            folder = save_pyfunc_model(live, Path(tmp) / "model")
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                self.record.artifacts[f"{artifact_path}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()

    def register_model(
        self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> str | None:
        versions = self._recording.versions
        versions[name] = versions.get(name, 0) + 1
        version = str(versions[name])
        self.record.models.append((name, artifact_path, tag_strings(tags)))
        self._recording.model_version_tags[(name, version)] = tag_strings(tags)
        if description is not None:
            self._recording.model_version_descriptions[(name, version)] = description
        return version


@dataclass
class Recording:
    """What a `RecordingTracker` saw: the runs in start order, model-version tags, descriptions and
    aliases (`set_model_alias` moves an alias; tests may set `aliases` directly too)."""

    runs: list[RecordedRun] = field(default_factory=list)
    model_version_tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    model_version_descriptions: dict[tuple[str, str], str] = field(default_factory=dict)
    aliases: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    comparisons: dict[str, tuple[str, str, list[str], list[str]]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def run(self, run_name: str) -> RecordedRun:
        """The last run of that name (KeyError naming the names seen)."""
        for record in reversed(self.runs):
            if record.run_name == run_name:
                return record
        raise KeyError(f"no run {run_name!r} (runs: {[r.run_name for r in self.runs]})")

    def children(self, parent: RecordedRun) -> list[RecordedRun]:
        """The runs started under `parent`, in start order."""
        return [r for r in self.runs if r.parent_run_id == parent.run_id]

    def by_id(self, run_id: str) -> RecordedRun:
        for record in self.runs:
            if record.run_id == run_id:
                return record
        raise KeyError(f"no recorded run {run_id!r}")


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
    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        description: str | None = None,
    ) -> Iterator[TrackedRun]:
        rec = self.recording()
        if parent_run_id is not None:
            rec.by_id(parent_run_id)  # a child of a run that does not exist is a bug in the caller
        record = RecordedRun(run_name, tag_strings(tags), uuid.uuid4().hex, parent_run_id, description)
        rec.runs.append(record)
        try:
            yield _RecordingRun(record, rec)
        except BaseException:
            record.status = "FAILED"
            raise
        record.status = "FINISHED"

    def run_url(self, run_id: str) -> str | None:
        return self.recording().by_id(run_id).url

    def save_comparison(
        self, key: str, title: str, parent_run_id: str, metrics: Sequence[str], params: Sequence[str] = ()
    ) -> str | None:
        self.recording().comparisons[key] = (title, parent_run_id, list(metrics), list(params))
        return f"recorded://views/{key}"

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        self.recording().model_version_tags.setdefault((name, version), {}).update(tag_strings(tags))

    def describe_model_version(self, name: str, version: str, description: str) -> None:
        self.recording().model_version_descriptions[(name, version)] = description

    def model_version_aliases(self, name: str, version: str) -> list[str]:
        return sorted(self.recording().aliases.get((name, version), []))

    def model_version_url(self, name: str, version: str) -> str | None:
        return f"recorded://models/{name}/versions/{version}"

    def model_version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.recording().model_version_tags.get((name, version), {}))

    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        aliases = self.recording().aliases
        for (model, other), names in aliases.items():
            if model == name and other != version and alias in names:
                names.remove(alias)  # an alias names one version: setting it moves it
        listed = aliases.setdefault((name, str(version)), [])
        if alias not in listed:
            listed.append(alias)

    def model_version_by_alias(self, name: str, alias: str) -> str | None:
        found = [v for (model, v), names in self.recording().aliases.items() if model == name and alias in names]
        return found[0] if found else None

    def log_metrics_to(self, run_id: str, metrics: Mapping[str, float | None]) -> None:
        self.recording().by_id(run_id).metrics.update(finite_metrics(metrics))

    def describe(self) -> str:
        return f"recording tracker {self.name!r} (in memory)"


__all__ = ["RecordedRun", "Recording", "RecordingTracker"]
