"""Automation: the video partitions, the jobs, the new-footage sensor, the retraining schedule and
the fingerprints they compare."""

from vad_pipeline.automation.jobs import (
    FEATURES_JOB,
    FOOTAGE_JOB,
    TRAINING_JOB,
    features_job,
    footage_job,
    training_job,
)
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME, video_partitions
from vad_pipeline.automation.schedules import build_retraining_schedule, retraining_schedule
from vad_pipeline.automation.sensors import build_new_footage_sensor, new_footage_sensor

__all__ = [
    "FEATURES_JOB",
    "FOOTAGE_JOB",
    "TRAINING_JOB",
    "VIDEO_PARTITIONS_NAME",
    "build_new_footage_sensor",
    "build_retraining_schedule",
    "features_job",
    "footage_job",
    "new_footage_sensor",
    "retraining_schedule",
    "training_job",
    "video_partitions",
]
