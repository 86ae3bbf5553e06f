"""Asset jobs: what the sensor, the schedule, the UI's launchpad and the demo runner launch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetSelection,
    DagsterInvalidConfigError,
    DagsterInvariantViolationError,
    JobDefinition,
    define_asset_job,
    validate_run_config,
)

from vad_core.errors import VADInputError
from vad_pipeline.cluster.profile import POOL_TAG
from vad_pipeline.specs import unknown_key_message

FOOTAGE_JOB = "footage_job"
FEATURES_JOB = "features_job"
TRAINING_JOB = "train_and_score_job"

# Footage: the manifest and the ground truth (cheap: probing, no decoding of every frame).
footage_job = define_asset_job(
    FOOTAGE_JOB,
    selection=AssetSelection.assets("video_manifest", "ground_truth"),
    description="Scan the footage root into the video manifest and read the ground truth.",
)

# Partitioned like clip_features (inferred): one run per video partition, the unit of parallel work
# (design.md, "Scaling"). The live assets ride in the same run, after the features they read (the
# asset graph orders the steps): the run the new-footage sensor launches for a video scores it with
# the champion once its features are written, and skips that (no failure) until a champion exists.
LIVE_ASSETS = ("live_scores", "live_alerts")
features_job = define_asset_job(
    FEATURES_JOB,
    selection=AssetSelection.assets("clip_features", *LIVE_ASSETS),
    description="Extract the clip-features table of one video (one run per video partition), then score it with "
    "the promoted champion and raise its alerts (skipped until a champion exists).",
    # The run queue's pool (cluster dagster.yaml: as many feature runs as worker slots), and run
    # retries where the instance enables them: a run whose worker was killed is launched again,
    # re-executing only what did not finish (the table is written atomically, or not at all).
    tags={POOL_TAG: "features", "dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"},
)

# Everything downstream of the per-video features, in one run, so the blocking feature check
# can stop training before it starts. The parameter study hangs off the same features but is
# an exploration with its own job: retraining must not run a 30-minute grid.
STUDY_ASSETS = ("parameter_study",)
training_job = define_asset_job(
    TRAINING_JOB,
    selection=AssetSelection.assets("feature_index").downstream() - AssetSelection.assets(*STUDY_ASSETS),
    description="Index the features, train the denoiser and the baselines, score, report, and promote the new "
    "model to champion when its gates pass.",
    tags={POOL_TAG: "training"},  # one training run at a time (cluster dagster.yaml); no automatic retry
)

# The assets of each job that take a Config (feature_index and frame_scores take none).
CONFIGURABLE = {
    FOOTAGE_JOB: ("video_manifest",),
    FEATURES_JOB: ("clip_features",),
    TRAINING_JOB: ("denoiser", "segment_scores", "baseline_scores", "evaluation_report", "model_promotion"),
}


# Jobs defined elsewhere whose assets a spec's run_config may configure too (the study lives
# with its asset in assets/study.py, which imports this module).
CONFIGURABLE_ELSEWHERE = {"parameter_study_job": ("parameter_study",)}


def _config_error(where: str, exc: DagsterInvalidConfigError, job: JobDefinition) -> str:
    """Dagster's first config error as one line: `run_config.denoiser: unknown key 'epochz' (did you mean ...)`."""
    err = exc.errors[0]
    path = [str(getattr(e, "field_name", e)) for e in err.stack.entries]
    asset = path[1] if len(path) > 1 and path[0] == "ops" else None
    fields = ".".join(path[3:]) if asset else ".".join(path)
    at = f"{where}.{asset}" + (f".{fields}" if fields else "") if asset else f"{where} ({job.name})"
    more = f" (and {len(exc.errors) - 1} more problems)" if len(exc.errors) > 1 else ""
    names = getattr(err.error_data, "field_names", None) or [getattr(err.error_data, "field_name", None)]
    if err.reason.name in ("FIELD_NOT_DEFINED", "FIELDS_NOT_DEFINED"):  # a typo'd field name
        known: list[str] = []
        if asset is not None:
            schema = job.graph.node_named(asset).definition.config_schema
            config_type = None if schema is None else schema.config_type
            known = list(getattr(config_type, "fields", {}) or [])
        return unknown_key_message(at, names[0], known) + more
    return f"{at}: {err.message.split(' Expected:')[0]}{more}"


def check_asset_configs(
    asset_configs: Mapping[str, Mapping[str, Any]],
    resolve_job: Callable[[str], JobDefinition],
    where: str = "run_config",
) -> None:
    """Validate `{asset: {field: value}}` with Dagster's own config schemas before any run starts.

    Every asset named must take a config in one of the pipeline's jobs, and every job's config
    (`job_run_config`) must pass `dagster.validate_run_config` against the job `resolve_job(name)`
    returns (`Definitions.resolve_job_def`, or a sensor's `repository_def.get_job`). Raises
    `VADInputError` with one line naming the asset, the field and, for a typo, the nearest valid name.
    """
    jobs = {**CONFIGURABLE, **CONFIGURABLE_ELSEWHERE}
    known = sorted({a for assets in jobs.values() for a in assets})
    for asset, fields in asset_configs.items():
        if asset not in known:
            raise VADInputError(unknown_key_message(where, asset, known) + " (asset names that take a config)")
        if not isinstance(fields, Mapping):
            raise VADInputError(f"{where}.{asset}: expected a mapping of config fields, got {fields!r}")
    for name, assets in jobs.items():
        if not any(a in asset_configs for a in assets):
            continue
        job = resolve_job(name)
        config = {"ops": {a: {"config": dict(asset_configs[a])} for a in assets if asset_configs.get(a)}}
        try:
            validate_run_config(job, config)
        except DagsterInvalidConfigError as exc:
            raise VADInputError(_config_error(where, exc, job)) from None


def context_job_resolver(context: Any) -> Callable[[str], JobDefinition] | None:
    """`repository_def.get_job` of a sensor or schedule context, or None when it has no repository
    (a context built by a test without one)."""
    try:
        repository = context.repository_def
    except DagsterInvariantViolationError:
        return None
    return None if repository is None else repository.get_job


def job_run_config(
    job: str, asset_configs: Mapping[str, Mapping[str, Any]], log_level: str | None = None
) -> dict[str, Any]:
    """Run config for `job` from `{asset: {field: value}}`, keeping the assets the job has.

    `log_level` switches the console to the one-line `brief` logger at that level (the demo keeps
    Dagster's per-step DEBUG lines and stack traces off the terminal; every event is still stored
    in the instance and shown by the UI).
    """
    config: dict[str, Any] = {
        "ops": {a: {"config": dict(asset_configs[a])} for a in CONFIGURABLE[job] if asset_configs.get(a)}
    }
    if log_level:  # the one-line console logger (vad_pipeline.loggers) instead of Dagster's
        config["loggers"] = {"brief": {"config": {"log_level": log_level}}}
    return config


__all__ = [
    "CONFIGURABLE",
    "CONFIGURABLE_ELSEWHERE",
    "FEATURES_JOB",
    "FOOTAGE_JOB",
    "LIVE_ASSETS",
    "STUDY_ASSETS",
    "TRAINING_JOB",
    "check_asset_configs",
    "context_job_resolver",
    "features_job",
    "footage_job",
    "job_run_config",
    "training_job",
]
