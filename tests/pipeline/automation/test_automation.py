"""The new-footage sensor and the retraining schedule, evaluated against a real Dagster instance."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from dagster import (
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from vad_core.footage import manifest_frame
from vad_core.io.feature_tables import build_feature_table, write_feature_table
from vad_pipeline.automation.fingerprints import combined_fingerprint, feature_table_fingerprints, stat_fingerprint
from vad_pipeline.automation.jobs import FEATURES_JOB, FOOTAGE_JOB
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME
from vad_pipeline.automation.schedules import build_retraining_schedule, retraining_decision
from vad_pipeline.automation.sensors import new_footage_sensor, plan_footage_update, state_digest
from vad_pipeline.resources import DatasetResource, VadStorage


@pytest.fixture()
def setup(tmp_path: Path):
    footage = tmp_path / "data" / "footage"
    footage.mkdir(parents=True)
    spec = tmp_path / "data" / "spec.yaml"
    spec.write_text(
        "name: cams\nfootage_root: footage\nrun_config: {clip_features: {batch_size: 4}, denoiser: {epochs: 2}}\n"
    )
    storage = VadStorage(home=str(tmp_path / "home"))
    resources = {"storage": storage, "dataset": DatasetResource(spec=str(spec))}
    return footage, storage, resources


def _tick(instance: DagsterInstance, resources: dict, cursor: str | None):
    """Evaluate the sensor once and apply its partition requests, as the daemon would."""
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = new_footage_sensor(ctx)
    if isinstance(result, SensorResult):
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def _frame_folder(path: Path, n: int) -> None:
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"{i:03d}.jpg").write_bytes(b"\xff\xd8 not decoded by the sensor " + bytes([i]))


def test_sensor_adds_partitions_for_new_files_and_is_idempotent(setup) -> None:
    footage, _, resources = setup
    (footage / "cam1.mp4").write_bytes(b"a" * 10)
    _frame_folder(footage / "site" / "02", 3)
    instance = DagsterInstance.ephemeral()

    first = _tick(instance, resources, None)
    assert isinstance(first, SensorResult)
    assert sorted(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME)) == ["cam1", "site/02"]
    feature_runs = [r for r in first.run_requests if r.job_name == FEATURES_JOB]
    assert sorted(r.partition_key for r in feature_runs) == ["cam1", "site/02"]
    assert len({r.run_key for r in first.run_requests}) == 3
    assert [r.job_name for r in first.run_requests].count(FOOTAGE_JOB) == 1
    # Runs the sensor launches carry the spec's asset configs for their job.
    assert feature_runs[0].run_config == {"ops": {"clip_features": {"config": {"batch_size": 4}}}}

    second = _tick(instance, resources, first.cursor)
    assert isinstance(second, SensorResult) and not second.run_requests
    assert not second.dynamic_partitions_requests
    assert "no new or changed footage: 2 videos known" in second.skip_reason.skip_message

    # A new file appears: exactly one new partition and one feature run.
    (footage / "cam3.mkv").write_bytes(b"c" * 5)
    third = _tick(instance, resources, second.cursor)
    assert [r.partition_key for r in third.run_requests if r.job_name == FEATURES_JOB] == ["cam3"]
    assert len(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME)) == 3


def test_sensor_rerequests_changed_video_and_reports_removed(setup) -> None:
    footage, _, resources = setup
    (footage / "cam1.mp4").write_bytes(b"a" * 10)
    (footage / "cam2.mp4").write_bytes(b"b" * 10)
    instance = DagsterInstance.ephemeral()
    first = _tick(instance, resources, None)

    (footage / "cam1.mp4").write_bytes(b"a" * 11)  # rewritten: size (and mtime) change
    (footage / "cam2.mp4").unlink()
    second = _tick(instance, resources, first.cursor)
    runs = [r for r in second.run_requests if r.job_name == FEATURES_JOB]
    assert [r.partition_key for r in runs] == ["cam1"]
    assert runs[0].run_key != [r for r in first.run_requests if r.partition_key == "cam1"][0].run_key
    assert not second.dynamic_partitions_requests  # cam1 already had its partition
    # The removed video keeps its partition; the next tick is quiet and says it is gone.
    third = _tick(instance, resources, second.cursor)
    assert not third.run_requests
    assert "1 removed" in third.skip_reason.skip_message
    assert sorted(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME)) == ["cam1", "cam2"]


def test_sensor_cursor_is_a_digest_and_the_fingerprints_live_in_the_store(setup) -> None:
    footage, storage, resources = setup
    for i in range(200):  # a large dataset: the cursor must not grow with it
        (footage / f"cam{i:03d}.mp4").write_bytes(b"x" * (i + 1))
    instance = DagsterInstance.ephemeral()
    first = _tick(instance, resources, None)
    cursor = json.loads(first.cursor)
    assert set(cursor) == {"digest", "videos"} and cursor["videos"] == 200 and len(first.cursor) < 80
    store, keys = storage.store(), storage.dataset_keys("cams")
    stored = store.read_json(keys.footage_state(cursor["digest"]))
    assert stored == {f"cam{i:03d}": stat_fingerprint(footage / f"cam{i:03d}.mp4") for i in range(200)}
    assert cursor["digest"] == state_digest(stored)

    # A change: a new snapshot, the one the old cursor names kept until the next tick, older ones pruned.
    (footage / "cam000.mp4").write_bytes(b"changed")
    second = _tick(instance, resources, first.cursor)
    assert [r.partition_key for r in second.run_requests if r.job_name == FEATURES_JOB] == ["cam000"]
    snapshots = lambda: sorted(store.list(keys.footage_state("x").rsplit("/", 1)[0], suffix=".json"))  # noqa: E731
    digests = [json.loads(c)["digest"] for c in (first.cursor, second.cursor)]
    assert snapshots() == sorted(keys.footage_state(d) for d in digests)
    third = _tick(instance, resources, second.cursor)
    assert not third.run_requests and snapshots() == [keys.footage_state(digests[1])]

    # A cursor from before (the whole mapping) still works: nothing is re-requested.
    fourth = _tick(instance, resources, json.dumps(store.read_json(keys.footage_state(digests[1]))))
    assert not fourth.run_requests and json.loads(fourth.cursor)["digest"] == digests[1]
    # A cursor whose snapshot is gone costs one re-check of the videos without features, nothing else.
    store.delete(keys.footage_state(digests[1]))
    fifth = _tick(instance, resources, third.cursor)
    assert {r.partition_key for r in fifth.run_requests if r.job_name == FEATURES_JOB} == {
        f"cam{i:03d}" for i in range(200)
    }


def test_sensor_skips_when_footage_root_is_missing(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: none\nfootage_root: nowhere\n")
    resources = {"storage": VadStorage(home=str(tmp_path)), "dataset": DatasetResource(spec=str(spec))}
    result = _tick(DagsterInstance.ephemeral(), resources, None)
    assert isinstance(result, SkipReason) and "does not exist" in result.skip_message


def test_plan_treats_unextracted_partitions_as_changed() -> None:
    plan = plan_footage_update(
        {"a": "1", "b": "2", "c": "3"}, ["a", "b", "gone"], {}, has_features=lambda vid: vid == "a"
    )
    assert plan.new == ("c",)
    assert plan.changed == ("b",)  # partition exists, never extracted, no cursor entry
    assert plan.removed == ("gone",)
    assert plan.to_extract == ("c", "b")


def test_retraining_decision() -> None:
    assert retraining_decision(None, None) == (False, "no feature tables yet: nothing to train on")
    assert retraining_decision("f" * 64, None) == (True, "no trained denoiser yet")
    run, reason = retraining_decision("ab" * 32, "ab" * 32)
    assert not run and reason.startswith("features unchanged") and "abababababab" in reason
    run, reason = retraining_decision("cd" * 32, "ab" * 32)
    assert run and "abababababab -> cdcdcdcdcdcd" in reason


def _manifest_row(vid: str) -> dict:
    return {
        "video_id": vid,
        "path": f"/footage/{vid}.mp4",
        "kind": "file",
        "n_frames": 32,
        "fps": 10.0,
        "width": 64,
        "height": 48,
        "rotation": 0,
        "size_bytes": 100,
        "fingerprint": f"fp-{vid}",
        "status": "ok",
        "error": None,
    }


def _feature_table(store, keys, vid: str, value: float) -> None:
    table = build_feature_table(
        vid, np.arange(2), np.array([0, 16]), np.array([16, 32]), np.zeros(2), np.zeros((2, 4)), np.full((2, 3), value)
    )
    write_feature_table(table, store, keys.features(vid), {"video_fingerprint": f"fp-{vid}"})


def test_schedule_skips_until_features_change(setup) -> None:
    footage, storage, resources = setup
    stack = contextlib.ExitStack()
    with stack:
        _schedule_scenario(stack, storage, resources)


def _schedule_scenario(stack: contextlib.ExitStack, storage: VadStorage, resources: dict) -> None:
    instance = stack.enter_context(instance_for_test())
    instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["v1", "v2"])
    schedule = build_retraining_schedule(cron="0 3 * * 1")
    assert schedule.cron_schedule == "0 3 * * 1"

    def evaluate():
        with build_schedule_context(instance=instance, resources=resources) as ctx:
            data = schedule.evaluate_tick(ctx)
        return list(data.run_requests or []), data.skip_message

    runs, skip = evaluate()
    assert not runs and "video_manifest table" in skip and "materialize video_manifest first" in skip

    store, keys = storage.store(), storage.dataset_keys("cams")
    rows = [_manifest_row(vid) for vid in ("v1", "v2", "gone")]
    rows[2].update(status="error", error="gone.mp4: empty file (zero bytes)")
    store.write_table(keys.manifest, manifest_frame(rows))
    runs, skip = evaluate()
    assert not runs and skip == "no feature tables yet: nothing to train on"
    for vid in ("v1", "v2"):
        _feature_table(store, keys, vid, 0.0)
    # A lingering table of an unreadable video neither triggers a retrain nor changes the fingerprint.
    _feature_table(store, keys, "gone", 5.0)
    runs, skip = evaluate()
    assert len(runs) == 1 and skip is None  # never trained
    assert runs[0].run_config == {"ops": {"denoiser": {"config": {"epochs": 2}}}}

    fp = combined_fingerprint(feature_table_fingerprints(store, keys, ["v1", "v2"]))
    store.write_json(keys.denoiser_info, {"features_fingerprint": fp})
    runs, skip = evaluate()
    assert not runs and skip.startswith("features unchanged since the last trained denoiser")

    _feature_table(store, keys, "gone", 6.0)
    runs, skip = evaluate()
    assert not runs and skip.startswith("features unchanged")
    _feature_table(store, keys, "v2", 1.0)
    runs, skip = evaluate()
    assert len(runs) == 1 and runs[0].run_key != f"retrain@{fp}"
