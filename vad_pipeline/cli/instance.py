"""The Dagster instance folder (DAGSTER_HOME) the CLI commands share: telemetry and the first-visit dialog off."""

from __future__ import annotations

import os
from pathlib import Path

from vad_core.errors import VADInputError
from vad_pipeline.cluster.profile import is_cluster, require
from vad_pipeline.specs import default_home

INSTANCE_YAML = """\
# Written by vad_pipeline on first use; edit freely.
telemetry:
  enabled: false
# The UI's "join the community" dialog asks for an e-mail address on first visit: off.
nux:
  enabled: false
concurrency:
  runs:
    # One run at a time: a features run already keeps every core of a small machine busy, and a
    # sensor tick over new footage would otherwise start a run (and a backbone) per video at once.
    max_concurrent_runs: 1
"""


def dagster_home(home: Path | None = None) -> Path:
    """DAGSTER_HOME, default `<VAD_HOME>/dagster`, created with telemetry off (no network).

    The cluster profile's DAGSTER_HOME holds the dagster.yaml `make cluster-up` rendered (PostgreSQL,
    run queue, Celery run launcher); it is never replaced by the local one.
    """
    if is_cluster():
        path = Path(require(["DAGSTER_HOME"])["DAGSTER_HOME"]).resolve()
        if not (path / "dagster.yaml").is_file():
            raise VADInputError(f"VAD_PROFILE=cluster: {path}/dagster.yaml is missing (make cluster-up writes it)")
        return path
    return init_dagster_home(Path(os.environ.get("DAGSTER_HOME") or (home or default_home()) / "dagster"))


def init_dagster_home(path: Path) -> Path:
    """Create the folder and, when it has none, the project's `dagster.yaml`."""
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    return path


__all__ = ["INSTANCE_YAML", "dagster_home", "init_dagster_home"]
