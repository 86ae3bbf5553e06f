"""Dagster resources, one module per resource: storage, dataset, backbone, experiment tracking
(the MLflow tracker and its recording test double)."""

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
    "BackboneResource",
    "DatasetKeys",
    "DatasetResource",
    "ExperimentTracker",
    "MLflowTracker",
    "RecordingTracker",
    "TrackedRun",
    "VadStorage",
    "code_version",
    "flatten_params",
]
