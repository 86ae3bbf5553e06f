"""The Dagster code location: assets, checks, jobs, the sensor, the schedule and the resources.

Loaded by `dagster dev -w workspace.yaml` and by the demo runner. Resources read their
settings from the environment when used: VAD_HOME, VAD_STORE, VAD_DATASET, VAD_BACKBONE, VAD_DEVICE,
MLFLOW_TRACKING_URI, VAD_ALERT_JSONL, VAD_ALERT_WEBHOOK. `VAD_PROFILE=cluster` swaps the executor for
Dagster's Celery executor (vad_pipeline.cluster.profile); the assets, jobs and resources are the
same in both profiles.

Locally, runs execute their steps in the run's own process (`in_process_executor`): Dagster's default
multiprocess executor starts a fresh interpreter per step, and each one imported the code
location and torch again (about 20 s a step on a loaded 2-core machine) before any work; one
run at a time (the instance's `max_concurrent_runs: 1`) leaves nothing for step processes to run
in parallel with. `make_definitions(executor=...)` passes another executor explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Definitions, ExecutorDefinition, colored_console_logger, in_process_executor

from vad_pipeline.assets import ALL_ASSETS
from vad_pipeline.assets.study import study_assets, study_jobs
from vad_pipeline.automation.cleanup import cleanup_stale_job
from vad_pipeline.automation.jobs import features_job, footage_job, training_job
from vad_pipeline.automation.schedules import retraining_schedule
from vad_pipeline.automation.sensors import new_footage_sensor
from vad_pipeline.checks import ALL_CHECKS
from vad_pipeline.cluster.profile import profile_executor
from vad_pipeline.loggers import brief_console_logger
from vad_pipeline.resources import AlertSinks, BackboneResource, DatasetResource, MLflowTracker, VadStorage


def default_resources() -> dict:
    return {
        "storage": VadStorage(),
        "dataset": DatasetResource(),
        "backbone": BackboneResource(),
        "tracker": MLflowTracker(),
        "alerts": AlertSinks(),
    }


def make_definitions(
    resources: Mapping[str, Any] | None = None, executor: ExecutorDefinition | None = None
) -> Definitions:
    """The code location; `resources` replace the defaults by key (tests, the demo runner); `executor`
    None: the profile's (Celery under `VAD_PROFILE=cluster`), else in-process."""
    return Definitions(
        assets=[*ALL_ASSETS, *study_assets],
        asset_checks=ALL_CHECKS,
        jobs=[footage_job, features_job, training_job, cleanup_stale_job, *study_jobs],
        sensors=[new_footage_sensor],
        schedules=[retraining_schedule],
        resources={**default_resources(), **(resources or {})},
        executor=executor or profile_executor() or in_process_executor,
        # Dagster's console logger stays the default; `brief` is used when a run's config names it.
        loggers={"console": colored_console_logger, "brief": brief_console_logger},
    )


defs = make_definitions()


__all__ = ["default_resources", "defs", "make_definitions"]
