"""The ground-truth asset against its manifest, through real footage_job runs (issue 10, defect 3).

Annotated ids the manifest lacks used to be dropped without a word, so those videos counted as
all-normal and the AUC was wrong. Now they fail the asset with the list, or, with the spec's
`annotations.unknown_ids: ignore`, are left out and reported; intervals past a video's end are
reported either way.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, instance_for_test

from vad_pipeline.automation.jobs import FOOTAGE_JOB
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import BackboneResource, DatasetResource, RecordingTracker, VadStorage
from vad_pipeline.specs import ensure_footage, load_spec

SPEC = """\
name: gt
footage_root: footage
layout: files
generator: synthetic
generator_options: {{n_train: 1, n_test: 1, n_frames: 32, width: 64, height: 64}}
annotations: {{path: labels.csv, format: csv{extra}}}
"""
# test/01 exists (32 frames); 'test/1' is a typo of it, 'cam9' is no video at all; [20, 40) ends past frame 32.
LABELS = "video_id,start_frame,end_frame\ntest/01,3,9\ntest/01,20,40\ntest/1,0,4\ncam9,1,2\n"


def _run(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    (tmp_path / "gt.yaml").write_text(SPEC.format(extra=extra))
    (tmp_path / "labels.csv").write_text(LABELS)
    storage = VadStorage(home=str(tmp_path / "home"))
    ensure_footage(load_spec(str(tmp_path / "gt.yaml"), home=storage.root()))
    defs = make_definitions(
        {
            "storage": storage,
            "dataset": DatasetResource(spec=str(tmp_path / "gt.yaml")),
            "backbone": BackboneResource(name="pixelstats-2", device="cpu"),
            "tracker": RecordingTracker(name="gt"),
        }
    )
    with instance_for_test() as instance:
        result = defs.resolve_job_def(FOOTAGE_JOB).execute_in_process(instance=instance, raise_on_error=False)
        event = instance.get_latest_materialization_event(AssetKey("ground_truth"))
    return result, event, storage


def test_unknown_annotation_ids_fail_the_ground_truth_with_the_list(tmp_path: Path) -> None:
    result, event, storage = _run(tmp_path, "")
    assert not result.success and result.is_node_failed("ground_truth")
    assert event is None  # nothing written: the old table (if any) is not replaced by a wrong one
    assert not storage.store().exists(storage.dataset_keys("gt").ground_truth)
    failure = next(e for e in result.get_step_failure_events() if e.step_key == "ground_truth")
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    description = str(data.user_failure_data.description)
    assert "2 annotated video ids are not in the manifest: 'cam9', 'test/1' (nearest video: 'test/01')" in description
    assert "annotations.unknown_ids: ignore" in description and "\n" not in description
    assert data.user_failure_data.metadata["unknown_ids"].value == "cam9, test/1"


def test_unknown_ids_ignored_on_request_and_intervals_past_the_end_reported(tmp_path: Path) -> None:
    result, event, storage = _run(tmp_path, ", unknown_ids: ignore")
    assert result.success
    meta = event.asset_materialization.metadata
    assert meta["ignored_unknown_ids"].value == "cam9, test/1"
    assert meta["intervals_past_end"].value == 1
    store, keys = storage.store(), storage.dataset_keys("gt")
    truth, table_meta = store.read_frame(keys.ground_truth)
    assert truth[["video_id", "start_frame", "end_frame"]].values.tolist() == [["test/01", 3, 9], ["test/01", 20, 40]]
    assert table_meta["ignored_ids"] == '["cam9", "test/1"]'
    assert table_meta["past_end"] == '[["test/01", 20, 40, 32]]'
