"""MLflow client calls of `MLflowTracker` beyond a run's own logging: experiment, registry, artifacts.

The experiment (created once; a concurrent creator's kept), artifacts from bytes, registered
versions (from a run's artifact path, with tags and a description), their tags, aliases
(`challenger`, `champion`: one version per alias, moved by setting it again) and a pyfunc model
folder logged to a run: `vad_pipeline.serving.package.save_pyfunc_model` saves it in a private
temporary folder and the client uploads it under the run's artifact path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vad_core.live.detector import LiveDetector


def tag_strings(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags as MLflow stores them: every value a string, None meaning "no tag". The real tracker, its
    registry calls and the recording double all go through here, so they agree on what a tag is."""
    return {k: str(v) for k, v in (tags or {}).items() if v is not None}


def ensure_experiment(client: Any, name: str, location: str | None, tags: Mapping[str, str]) -> str:
    """The id of experiment `name`, created with `location` and `tags` when it does not exist."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=location, tags=dict(tags)))
    except MlflowException:
        # Another run created it between our look-up and the create: use theirs.
        return str(client.get_experiment_by_name(name).experiment_id)


def register_version(
    client: Any,
    name: str,
    source: str,
    run_id: str | None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> str:
    """A new version of registered model `name` (created when missing) from `source`; returns its number."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # already registered: add a version to it
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags=tag_strings(tags), description=description
    )
    return str(version.version)


def log_bytes(client: Any, run_id: str, data: bytes, file_name: str, artifact_path: str | None) -> None:
    """Upload `data` as `<artifact_path>/<file_name>` of run `run_id` (the client uploads files: staged privately)."""
    with tempfile.TemporaryDirectory(prefix="vad-artifact-") as tmp:
        local = Path(tmp) / file_name
        local.write_bytes(data)
        client.log_artifact(run_id, str(local), artifact_path)


def log_pyfunc_folder(client: Any, run_id: str, live: LiveDetector, artifact_path: str) -> None:
    """Save `live` as a pyfunc model and upload the folder as `<artifact_path>/` of run `run_id`."""
    from vad_pipeline.serving.package import save_pyfunc_model

    with tempfile.TemporaryDirectory(prefix="vad-pyfunc-") as tmp:
        folder = save_pyfunc_model(live, Path(tmp) / "model")
        client.log_artifacts(run_id, str(folder), artifact_path)


def tag_version(client: Any, name: str, version: str, tags: Mapping[str, Any]) -> None:
    for k, v in tag_strings(tags).items():
        client.set_model_version_tag(name, version, k, v)


def version_tags(client: Any, name: str, version: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (client.get_model_version(name, version).tags or {}).items()}


def set_alias(client: Any, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


def version_by_alias(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points at; None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


__all__ = [
    "ensure_experiment",
    "log_bytes",
    "log_pyfunc_folder",
    "register_version",
    "set_alias",
    "tag_strings",
    "tag_version",
    "version_by_alias",
    "version_tags",
]
