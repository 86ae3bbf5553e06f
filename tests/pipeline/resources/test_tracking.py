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
    assert tracker.recording().model_version_tags == {("model", "1"): {"dataset": "d", "frame_auc": "0.9"}}
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


def test_recording_tracker_nests_runs_and_describes_versions() -> None:
    tracker = RecordingTracker(name="nested")
    tracker.reset()
    with tracker.start_run("parent", description="what it holds") as parent:
        with tracker.start_run("child", tags={"scorer": "knn"}, parent_run_id=parent.run_id) as child:
            child.log_metrics({"frame_auc": 0.8})
        version = parent.register_model("model", "denoiser", description="first words")
    rec = tracker.recording()
    assert [r.run_name for r in rec.children(rec.run("parent"))] == ["child"]
    assert rec.run("parent").description == "what it holds" and child.url == tracker.run_url(child.run_id)
    assert rec.model_version_descriptions[("model", version)] == "first words"
    tracker.describe_model_version("model", version, "later words")
    assert rec.model_version_descriptions[("model", version)] == "later words"
    assert tracker.model_version_aliases("model", version) == []
    rec.aliases[("model", version)] = ["champion"]
    assert tracker.model_version_aliases("model", version) == ["champion"]
    with pytest.raises(KeyError, match="no recorded run"):
        with tracker.start_run("orphan", parent_run_id="missing"):
            pass


def test_mlflow_nested_runs_descriptions_links_and_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_MLFLOW_UI_URL", "http://127.0.0.1:5999/")
    tracker = MLflowTracker(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="t")
    with tracker.start_run("parent", tags={"dataset": "d"}, description="**evaluation**") as parent:
        with tracker.start_run("child", tags={"scorer": "knn"}, parent_run_id=parent.run_id) as child:
            child.log_metrics({"frame_auc": 0.8})
        parent.set_description("| scorer | AUC |")
        version = parent.register_model("m", "denoiser", tags={"dataset": "d"}, description="a denoiser")
    client = tracker.client()
    got_parent, got_child = client.get_run(parent.run_id), client.get_run(child.run_id)
    assert got_child.data.tags["mlflow.parentRunId"] == parent.run_id and got_child.data.tags["scorer"] == "knn"
    assert got_parent.data.tags["mlflow.note.content"] == "| scorer | AUC |"
    experiment = got_parent.info.experiment_id
    assert (
        child.url
        == f"http://127.0.0.1:5999/#/experiments/{experiment}/runs/{child.run_id}?workflowType=machine_learning"
    )
    assert tracker.run_url(child.run_id) == child.url
    exp = client.get_experiment(experiment)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # not a GenAI experiment
    assert client.get_model_version("m", version).description == "a denoiser"
    tracker.describe_model_version("m", version, "evaluated")
    assert client.get_model_version("m", version).description == "evaluated"
    assert tracker.model_version_aliases("m", version) == []
    client.set_registered_model_alias("m", "champion", version)  # what live scoring's promotion does
    assert tracker.model_version_aliases("m", version) == ["champion"]
    assert tracker.model_version_url("m", version) == (
        f"http://127.0.0.1:5999/#/models/m/versions/{version}?workflowType=machine_learning"
    )


def test_mlflow_telemetry_is_off_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.telemetry.utils import is_telemetry_disabled

    from vad_pipeline.resources.tracking import disable_mlflow_telemetry

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setattr("mlflow.telemetry.utils._IS_IN_CI_ENV_OR_TESTING", False)  # CI and pytest switch it off too
    assert not is_telemetry_disabled()
    MLflowTracker(tracking_uri="sqlite:///:memory:").client()
    assert is_telemetry_disabled()  # the switch MLflow reads on every event
    child_env = disable_mlflow_telemetry({"PATH": "/bin"})
    assert child_env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # a user's explicit choice is kept
    assert disable_mlflow_telemetry({})["MLFLOW_DISABLE_TELEMETRY"] == "false"


def _aliases_and_tags(tracker: ExperimentTracker, name: str, first: str, second: str) -> None:
    """What promotion relies on, for any tracker: an alias names one version and moves; tags read back."""
    assert tracker.model_version_by_alias(name, "champion") is None
    tracker.set_model_alias(name, "champion", first)
    tracker.set_model_alias(name, "challenger", second)
    assert tracker.model_version_by_alias(name, "champion") == first
    tracker.set_model_alias(name, "champion", second)  # moves: the first version loses it
    assert tracker.model_version_by_alias(name, "champion") == second
    assert tracker.model_version_aliases(name, first) == []
    assert tracker.model_version_aliases(name, second) == ["challenger", "champion"]
    tracker.tag_model_version(name, first, {"frame_auc": 0.75, "skipped": None})
    assert tracker.model_version_tags(name, first) == {"dataset": "d", "frame_auc": "0.75"}
    assert tracker.model_version_by_alias("no-such-model", "champion") is None


def test_recording_tracker_aliases_move_and_models_are_recorded_as_folders() -> None:
    from tests.core.live.test_live_core import _live

    tracker = RecordingTracker(name="aliases")
    tracker.reset()
    with tracker.start_run("train") as run:
        first = run.register_model("m", "denoiser_model", tags={"dataset": "d"})
        second = run.register_model("m", "denoiser_model", tags={"dataset": "d"})
        run.log_pyfunc_model(_live()[0], "denoiser_model")
    _aliases_and_tags(tracker, "m", str(first), str(second))
    files = tracker.recording().run("train").artifacts
    assert {"denoiser_model/MLmodel", "denoiser_model/artifacts/live.json", "denoiser_model/pyfunc_model.py"} <= set(
        files
    )
    assert b"python_function" in files["denoiser_model/MLmodel"]


def test_mlflow_tracker_aliases_tags_and_a_logged_pyfunc_model(tmp_path: Path) -> None:
    import mlflow

    from tests.core.live.test_live_core import _live

    live, rows, x = _live()
    tracker = MLflowTracker(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="t")
    with tracker.start_run("train") as run:
        run.log_pyfunc_model(live, "denoiser_model")
        first = run.register_model("m", "denoiser_model", tags={"dataset": "d"})
        second = run.register_model("m", "denoiser_model", tags={"dataset": "d"})
    _aliases_and_tags(tracker, "m", str(first), str(second))
    mlflow.set_tracking_uri(tracker.resolved_uri())
    try:
        model = mlflow.pyfunc.load_model("models:/m@champion", model_config={"device": "cpu"})
    finally:
        mlflow.set_tracking_uri(None)
    request = rows[["video_id", "clip", "start_frame", "end_frame", "tile"]].assign(feature=list(x))
    assert model.predict(request)["score"].tolist() == live.score(rows, x).rows["score"].tolist()
