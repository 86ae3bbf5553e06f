"""`vad score`: one video end to end with a local, an MLflow-folder and a registered model; one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from tests.core.live._footage import N_FRAMES, live_model, make_frames, write_mp4
from vad_core.live import load_live_detector, save_live_detector
from vad_core.live.video import score_video
from vad_pipeline.cli import main

OUTPUTS = {
    "alerts.csv",
    "alerts.jsonl",
    "alerts.parquet",
    "clip_scores.csv",
    "clip_scores.parquet",
    "frame_scores.csv",
    "frame_scores.parquet",
    "overlay.mp4",
    "row_scores.csv",
    "row_scores.parquet",
    "summary.json",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("score_cli")
    save_live_detector(live_model(root / "train"), root / "model")
    return root / "model", write_mp4(root / "cam.mp4", make_frames(seed=9, event=True))


def test_vad_score_writes_scores_alerts_overlay_and_summary(setup, tmp_path, capsys, one_torch_thread):
    model, video = setup
    code = main(["score", str(video), "--model", str(model), "--out", str(tmp_path / "out"), "--threshold-k", "0.2"])
    assert code == 0
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == OUTPUTS
    # The files hold what score_video gives with the same model and rule.
    live = load_live_detector(model)
    live.rule = replace(live.rule, k=0.2)
    expected = score_video(video, live)
    frames = pd.read_parquet(out / "frame_scores.parquet")
    pd.testing.assert_frame_equal(frames, expected.frames)
    np.testing.assert_array_equal(pd.read_csv(out / "frame_scores.csv")["score"], expected.frames["score"])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "clip_scores.parquet"), expected.clips)
    alerts = pd.read_parquet(out / "alerts.parquet")
    pd.testing.assert_frame_equal(alerts, expected.alerts)
    assert len(alerts) >= 1 and (alerts["model_version"] == "3").all()
    lines = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert [(a["first_frame"], a["last_frame"]) for a in lines] == list(
        zip(alerts["first_frame"], alerts["last_frame"], strict=True)
    )
    assert all(a["source"] == str(video) for a in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_frames"] == N_FRAMES and summary["n_alerts"] == len(alerts)
    assert summary["threshold"] == pytest.approx(live.rule.threshold) and summary["rule"]["k"] == 0.2
    assert summary["model"]["model_version"] == "3" and summary["backbone"] == "pixelstats-2x4"
    assert summary["anomalous_frames"] == int(expected.frames["anomalous"].sum())
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == N_FRAMES
    printed = capsys.readouterr().out
    assert f"{N_FRAMES} frames, 11 clips scored with vad-denoiser-test v3" in printed
    assert printed.count("alert frames") == len(alerts)
    # A re-run replaces the files; --no-video leaves the overlay out (the old one stays untouched).
    assert main(["score", str(video), "--model", str(model), "--out", str(out), "--no-video", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["overlay"] is None


def test_an_mlflow_model_folder_and_a_registered_model_load(setup, tmp_path, monkeypatch, one_torch_thread):
    model, video = setup
    mlflow_folder = tmp_path / "denoiser_model"
    (mlflow_folder / "artifacts").mkdir(parents=True)
    (mlflow_folder / "MLmodel").write_text("flavors: {}\n")
    for name in ("detector.pt", "live.json"):
        shutil.copy(model / name, mlflow_folder / "artifacts" / name)
    assert main(["score", str(video), "--model", str(mlflow_folder), "--out", str(tmp_path / "a"), "--no-video"]) == 0

    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what mlflow and `vad score` read (never a user's server)
    experiment = mlflow.create_experiment("score-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(mlflow_folder), artifact_path="denoiser_model")
    client = MlflowClient(uri)
    client.create_registered_model("vad-denoiser-test")
    version = client.create_model_version(
        "vad-denoiser-test", f"runs:/{run.info.run_id}/denoiser_model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("vad-denoiser-test", "champion", version.version)
    for i, ref in enumerate(
        (f"runs:/{run.info.run_id}/denoiser_model", "models:/vad-denoiser-test@champion", "models:/vad-denoiser-test/1")
    ):
        assert main(["score", str(video), "--model", ref, "--out", str(tmp_path / f"m{i}"), "--no-video"]) == 0
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / f"m{i}" / "frame_scores.parquet"),
            pd.read_parquet(tmp_path / "a" / "frame_scores.parquet"),
        )


def test_bad_models_and_videos_get_one_line_errors(setup, tmp_path, capsys, monkeypatch):
    model, video = setup
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(video), "--model", str(tmp_path / "nope")], "model .*nope: no such folder"),
        ([str(video), "--model", str(tmp_path / "empty")], "holds neither live.json and detector.pt nor artifacts/"),
        ([str(video), "--model", "models:/missing@champion"], "model models:/missing@champion: cannot be downloaded"),
        ([str(tmp_path / "none.mp4"), "--model", str(model)], "none.mp4: no such video file or frame folder"),
        ([str(video), "--model", str(model), "--threshold-k", "-1"], "--threshold-k must be >= 0"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["score", *args, "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("vad score: error: ")
        assert re.search(message, err[-1]), (message, err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
