"""The shipped Ped2 spec reads ../shared/data/ucsd_ped2 in place: manifest and ground truth."""

from __future__ import annotations

from pathlib import Path

from dagster import instance_for_test

from vad_pipeline.automation.jobs import FOOTAGE_JOB
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import DatasetResource, RecordingTracker, VadStorage


def test_ped2_footage_assets(ped2_dir: Path, tmp_path: Path) -> None:
    storage = VadStorage(home=str(tmp_path))
    defs = make_definitions(
        {"storage": storage, "dataset": DatasetResource(spec="ucsd_ped2"), "tracker": RecordingTracker(name="ped2")}
    )
    with instance_for_test() as instance:
        result = defs.resolve_job_def(FOOTAGE_JOB).execute_in_process(instance=instance)
    assert result.success
    keys = storage.dataset_keys("ucsd_ped2")
    manifest = storage.store().read_frame(keys.manifest)[0]
    assert len(manifest) == 22 and (manifest["status"] == "ok").all() and (manifest["kind"] == "frames").all()
    assert manifest["n_frames"].sum() == 2550 + 1020  # the README's frame counts
    path = Path(manifest.loc[manifest["video_id"] == "testing/frames/01", "path"].item())
    assert path.resolve() == (ped2_dir / "testing/frames/01").resolve()  # shared/ may be a link
    truth = storage.store().read_frame(keys.ground_truth)[0].set_index("video_id")
    # README (1-based, inclusive): 01: 61-180, 03: 1-146 -> 0-based half-open.
    assert tuple(truth.loc["testing/frames/01", ["start_frame", "end_frame"]]) == (60, 180)
    assert tuple(truth.loc["testing/frames/03", ["start_frame", "end_frame"]]) == (0, 146)
