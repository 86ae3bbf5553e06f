"""The retraining schedule: retrain and rescore when the features changed, skip when not.

Weekly by default (Mondays 03:00); `VAD_RETRAIN_CRON` or `build_retraining_schedule(cron=...)`
changes it. "Changed" compares the fingerprint of the current manifest's up-to-date feature
tables (`automation.inventory`, what `feature_index` indexes) with the one recorded beside the
last trained denoiser.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from vad_core.errors import VADInputError
from vad_pipeline.automation.fingerprints import (
    combined_fingerprint,
    feature_table_fingerprints,
    last_trained_fingerprint,
)
from vad_pipeline.automation.inventory import dataset_inventory
from vad_pipeline.automation.jobs import (
    TRAINING_JOB,
    check_asset_configs,
    context_job_resolver,
    job_run_config,
    training_job,
)
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage

DEFAULT_CRON = "0 3 * * 1"

# decide(current_fingerprint, last_trained_fingerprint) -> (run?, reason)
Decide = Callable[[str | None, str | None], tuple[bool, str]]


def retraining_decision(current: str | None, last_trained: str | None) -> tuple[bool, str]:
    """Whether to retrain, and why: only when there are features and they differ from the last run's."""
    if current is None:
        return False, "no feature tables yet: nothing to train on"
    if last_trained is None:
        return True, "no trained denoiser yet"
    if current == last_trained:
        return False, f"features unchanged since the last trained denoiser (fingerprint {current[:12]})"
    return True, f"features changed since the last trained denoiser ({last_trained[:12]} -> {current[:12]})"


def build_retraining_schedule(
    cron: str | None = None,
    decide: Decide = retraining_decision,
    name: str = "retraining_schedule",
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.RUNNING,
) -> ScheduleDefinition:
    """The schedule, with its cron and its decision injectable (tests pass their own)."""

    @schedule(
        name=name,
        job=training_job,
        cron_schedule=cron or os.environ.get("VAD_RETRAIN_CRON") or DEFAULT_CRON,
        default_status=default_status,
        description="Retrains the denoiser and the baselines and rescores, when the features "
        "changed since the last trained denoiser; skips with the reason otherwise.",
    )
    def _schedule(context: ScheduleEvaluationContext, storage: VadStorage, dataset: DatasetResource):
        try:
            spec = dataset.load(home=storage.root())
            if (resolve := context_job_resolver(context)) is not None:
                check_asset_configs(spec.run_config, resolve, f"{spec.name}: run_config")
            store, keys = storage.store(), storage.dataset_keys(spec.name)
            # The videos the manifest backs now, as feature_index will index them: a deleted
            # video's lingering table neither triggers nor blocks a retrain.
            videos = list(dataset_inventory(store, keys, spec).features.current)
        except VADInputError as exc:
            return SkipReason(f"not retraining: {exc}")
        current = combined_fingerprint(feature_table_fingerprints(store, keys, videos))
        run, reason = decide(current, last_trained_fingerprint(store, keys))
        if not run:
            return SkipReason(reason)
        context.log.info(reason)
        return RunRequest(
            run_key=f"retrain@{current}",
            run_config=job_run_config(TRAINING_JOB, spec.run_config),
            tags={"vad/dataset": spec.name, "vad/reason": reason[:200]},
        )

    return _schedule


retraining_schedule = build_retraining_schedule()


__all__ = ["DEFAULT_CRON", "Decide", "build_retraining_schedule", "retraining_decision", "retraining_schedule"]
