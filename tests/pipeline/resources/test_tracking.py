"""The experiment tracker: abstract interface, MLflow implementation, the recording double."""

from __future__ import annotations

from pathlib import Path

import pytest

from vad_pipeline.resources import ExperimentTracker, MLflowTracker, RecordingTracker, flatten_params


def test_flatten_params() -> None:
    assert flatten_params({"train": {"lr": 0.0002, "hidden": (8, 4)}, "k": None}, prefix="x.") == {
        "x.train.lr": "0.0002",
        "x.train.hidden": "[8, 4]",
        "x.k": "None",
    }


def test_recording_tracker_records_every_call() -> None:
    tracker = RecordingTracker(name="unit")
    tracker.reset()
    with tracker.start_run("r", tags={"a": 1, "none": None}) as run:
        run.log_params({"train": {"lr": 0.1}})
        run.log_metrics({"m": 1.0, "nan": float("nan")})
        run.log_series("loss", [3.0, None, 1.0])
        run.log_artifact(b"bytes", "x.json", "report")
        version = run.register_model("model", "denoiser", tags={"dataset": "d"})
    tracker.log_metrics_to(run.run_id, {"late": 2.0})
    tracker.tag_model_version("model", version, {"frame_auc": "0.9"})
    rec = tracker.recording().run("r")
    assert rec.status == "FINISHED" and rec.tags == {"a": "1"}
    assert rec.params == {"train.lr": "0.1"} and rec.metrics == {"m": 1.0, "late": 2.0}
    assert rec.series == {"loss": [3.0, 1.0]} and rec.artifacts == {"report/x.json": b"bytes"}
    assert rec.models == [("model", "denoiser", {"dataset": "d"})] and version == "1"
    assert tracker.recording().model_version_tags == {("model", "1"): {"frame_auc": "0.9"}}
    with pytest.raises(RuntimeError):
        with tracker.start_run("fails"):
            raise RuntimeError("x")
    assert tracker.recording().run("fails").status == "FAILED"
    with pytest.raises(KeyError, match="no recorded run"):
        tracker.log_metrics_to("unknown", {"m": 1.0})


def test_a_tracker_that_forgets_a_method_cannot_be_made() -> None:
    class Forgetful(ExperimentTracker):
        def describe(self) -> str:
            return "x"

    with pytest.raises(TypeError, match="abstract"):
        Forgetful()


def test_mlflow_artifacts_from_bytes(tmp_path: Path) -> None:
    tracker = MLflowTracker(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="t")
    with tracker.start_run("art") as run:
        run.log_artifact(b'{"a": 1}', "report.json", "report")
    client = tracker.client()
    assert [f.path for f in client.list_artifacts(run.run_id, "report")] == ["report/report.json"]
    local = client.download_artifacts(run.run_id, "report/report.json", str(tmp_path))
    assert Path(local).read_bytes() == b'{"a": 1}'


def test_mlflow_tracker_default_store_under_vad_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("VAD_HOME", str(tmp_path))
    assert MLflowTracker().resolved_uri() == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert MLflowTracker().resolved_uri() == "http://127.0.0.1:5000"
    assert MLflowTracker(tracking_uri="sqlite:///x.db").resolved_uri() == "sqlite:///x.db"


def test_mlflow_run_marked_failed_on_error(tmp_path: Path) -> None:
    tracker = MLflowTracker(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="t")
    with pytest.raises(RuntimeError):
        with tracker.start_run("boom", tags={"dataset": "d"}) as run:
            run.log_metrics({"ok": 1.0, "nan": float("nan"), "none": None})
            raise RuntimeError("x")
    got = tracker.client().get_run(run.run_id)
    assert got.info.status == "FAILED" and got.data.metrics == {"ok": 1.0} and got.data.tags["dataset"] == "d"
