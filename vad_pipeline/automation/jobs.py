"""Asset jobs: what the sensor, the schedule, the UI's launchpad and the demo runner launch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetSelection, define_asset_job

from vad_pipeline.cluster.profile import POOL_TAG

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
# (design.md, "Scaling").
features_job = define_asset_job(
    FEATURES_JOB,
    selection=AssetSelection.assets("clip_features"),
    description="Extract the clip-features table of one video (one run per video partition).",
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
    description="Index the features, train the denoiser and the baselines, score, and report.",
    tags={POOL_TAG: "training"},  # one training run at a time (cluster dagster.yaml); no automatic retry
)

# The assets of each job that take a Config (feature_index and frame_scores take none).
CONFIGURABLE = {
    FOOTAGE_JOB: ("video_manifest",),
    FEATURES_JOB: ("clip_features",),
    TRAINING_JOB: ("denoiser", "segment_scores", "baseline_scores", "evaluation_report"),
}


def job_run_config(
    job: str, asset_configs: Mapping[str, Mapping[str, Any]], log_level: str | None = None
) -> dict[str, Any]:
    """Run config for `job` from `{asset: {field: value}}`, keeping the assets the job has.

    `log_level` sets the console logger (the demo keeps Dagster's per-step DEBUG lines off the
    terminal; every event is still stored in the instance and shown by the UI).
    """
    config: dict[str, Any] = {
        "ops": {a: {"config": dict(asset_configs[a])} for a in CONFIGURABLE[job] if asset_configs.get(a)}
    }
    if log_level:
        config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    return config


__all__ = [
    "CONFIGURABLE",
    "FEATURES_JOB",
    "FOOTAGE_JOB",
    "STUDY_ASSETS",
    "TRAINING_JOB",
    "features_job",
    "footage_job",
    "job_run_config",
    "training_job",
]
