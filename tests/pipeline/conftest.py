"""A tiny end-to-end pipeline run shared by the pipeline tests.

Four synthetic videos (2 normal, 2 with an anomaly) of 48 frames at 128x96, the weight-free
`pixelstats` backbone, a few training epochs: every asset is materialized in-process through
the same jobs and runner as `make demo`, into a temp VAD_HOME with a real MLflow SQLite store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test

from vad_pipeline.cli.demo import PipelineSummary, materialize_all
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import BackboneResource, DatasetResource, MLflowTracker, VadStorage
from vad_pipeline.specs import DatasetSpec, ensure_footage, load_spec

TINY_SPEC = """\
name: tiny
footage_root: footage
layout: files
generator: synthetic
seed: 0
generator_options: {n_train: 2, n_test: 2, n_frames: 48, width: 128, height: 96, person_height: 20}
annotations:
  {path: footage/ground_truth.csv, format: csv, pixel_masks: footage/test_pixel_mask, pixel_mask_ids: "test/{}"}
train: all
evaluate: ["test/*"]
"""

RUN_CONFIG = {
    "clip_features": {"short_side": 96, "tile_size": 64, "batch_size": 16},
    "denoiser": {
        "screen_folds": 2,
        "refit_seeds": 2,
        "n_draws": 4,
        "epochs": 3,
        "hidden": [64, 32],
        "min_steps_per_epoch": 5,
        "batch_size": 256,
        "fourier_features": 16,
        "patience": 0,
    },
    "segment_scores": {"n_draws": 2, "threshold_k": 1.0},
    "baseline_scores": {"pca_components": 4, "gcl_epochs": 2, "gcl_d_epochs": 2, "iforest_estimators": 20, "knn_k": 3},
    "evaluation_report": {"top_clips": 2, "max_curve_videos": 2, "smoothing_sigma": 4.0},
}


@dataclass
class TinyPipeline:
    root: Path
    spec: DatasetSpec
    storage: VadStorage
    tracker: MLflowTracker
    resources: dict
    defs: Definitions
    instance: DagsterInstance
    summary: PipelineSummary


def tiny_resources(root: Path, spec_path: Path) -> dict:
    return {
        "storage": VadStorage(home=str(root / "home")),
        "dataset": DatasetResource(spec=str(spec_path)),
        "backbone": BackboneResource(name="pixelstats-2", device="cpu"),
        "tracker": MLflowTracker(home=str(root / "home")),
    }


@pytest.fixture(scope="session")
def tiny_footage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder with the tiny spec and its generated footage: (folder, spec path)."""
    root = tmp_path_factory.mktemp("tiny")
    spec_path = root / "tiny.yaml"
    spec_path.write_text(TINY_SPEC)
    ensure_footage(load_spec(str(spec_path), home=root / "home"))
    return root, spec_path


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_footage: tuple[Path, Path]) -> Iterator[TinyPipeline]:
    root, spec_path = tiny_footage
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)  # never log tests to a user's server
    try:
        resources = tiny_resources(root, spec_path)
        storage = resources["storage"]
        spec = load_spec(str(spec_path), home=storage.root())
        defs = make_definitions(resources)
        with instance_for_test() as instance:
            summary = materialize_all(defs, instance, spec, storage, RUN_CONFIG, echo=lambda _: None)
            yield TinyPipeline(root, spec, storage, resources["tracker"], resources, defs, instance, summary)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
