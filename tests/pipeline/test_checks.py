"""The blocking feature check stops training (and everything after it) on a table with NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dagster import AssetKey, instance_for_test

from vad_core.footage import manifest_frame
from vad_core.io.feature_tables import build_feature_table, write_feature_table
from vad_pipeline.automation.jobs import TRAINING_JOB
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import BackboneResource, DatasetResource, RecordingTracker, VadStorage


def _write_table(storage: VadStorage, video_id: str, x: np.ndarray) -> None:
    n = x.shape[0]
    table = build_feature_table(
        video_id,
        np.arange(n),
        np.arange(n) * 16,
        np.arange(n) * 16 + 16,
        np.zeros(n),
        np.tile([0, 0, 64, 64], (n, 1)),
        x,
    )
    write_feature_table(
        table,
        storage.store(),
        storage.dataset_keys("cams").features(video_id),
        {
            "backbone": "test",
            "dim": str(x.shape[1]),
            "n_clips": str(n),
            "n_tiles": "1",
            "video_fingerprint": f"fp-{video_id}",
        },
    )


def test_nan_features_block_training(tmp_path: Path) -> None:
    spec = tmp_path / "cams.yaml"
    spec.write_text("name: cams\nfootage_root: footage\n")
    storage = VadStorage(home=str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    good, bad = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    bad[7, 3] = np.nan
    _write_table(storage, "cam1", good)
    _write_table(storage, "cam2", bad)
    storage.store().write_table(
        storage.dataset_keys("cams").manifest,
        manifest_frame(
            [
                {"video_id": v, "path": f"/f/{v}.mp4", "kind": "file", "n_frames": 640, "width": 64, "height": 64}
                | {"rotation": 0, "size_bytes": 1, "fingerprint": f"fp-{v}", "status": "ok", "error": None}
                for v in ("cam1", "cam2")
            ]
        ),
    )
    defs = make_definitions(
        {
            "storage": storage,
            "dataset": DatasetResource(spec=str(spec)),
            "backbone": BackboneResource(name="pixelstats-2", device="cpu"),
            "tracker": RecordingTracker(name="blocking"),
        }
    )
    RecordingTracker(name="blocking").reset()
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["cam1", "cam2"])
        result = defs.resolve_job_def(TRAINING_JOB).execute_in_process(
            instance=instance, raise_on_error=False, run_config={"ops": {"denoiser": {"config": {"epochs": 1}}}}
        )
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        check = evaluations["features_finite_one_dim"]
        assert not check.passed and "non-finite values in cam2 (1)" in check.description
        # Blocked, not failed: training never started, so nothing downstream exists.
        started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
        assert started == {
            "feature_index",
            "feature_index_features_finite_one_dim",
            "feature_index_feature_index_current",
        }
        assert not result.success and not result.is_node_failed("denoiser")
        assert instance.get_latest_materialization_event(AssetKey("denoiser")) is None
        assert instance.get_latest_materialization_event(AssetKey("feature_index")) is not None
        assert not storage.store().exists(storage.dataset_keys("cams").denoiser)
        assert RecordingTracker(name="blocking").recording().runs == []  # no training run was started
