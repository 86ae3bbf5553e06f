"""Dagster resources, one module per resource: storage, dataset, backbone, experiment tracking
(the MLflow tracker and its recording test double), alert sinks (JSONL + webhook, and a test double)."""

from vad_pipeline.resources.alerting import AlertSink, AlertSinks, RecordingAlertSink
from vad_pipeline.resources.backbone import BackboneResource
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.recording import RecordingTracker
from vad_pipeline.resources.storage import DatasetKeys, VadStorage
from vad_pipeline.resources.tracking import (
    ExperimentTracker,
    MLflowTracker,
    TrackedRun,
    code_version,
    flatten_params,
)

__all__ = [
    "AlertSink",
    "AlertSinks",
    "BackboneResource",
    "DatasetKeys",
    "DatasetResource",
    "ExperimentTracker",
    "MLflowTracker",
    "RecordingAlertSink",
    "RecordingTracker",
    "TrackedRun",
    "VadStorage",
    "code_version",
    "flatten_params",
]
