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
    t = summary["timings"]
    assert summary["outside_backbone_share"] == pytest.approx(1 - t["backbone"] / t["total"])
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == N_FRAMES
    printed = capsys.readouterr().out
    assert f"{N_FRAMES} frames, 11 clips scored with vad-denoiser-test v3" in printed
    assert printed.count("alert frames") == len(alerts)
    # A re-run replaces the files; --no-video leaves the overlay out and removes the earlier run's.
    assert main(["score", str(video), "--model", str(model), "--out", str(out), "--no-video", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["overlay"] is None
    assert {p.name for p in out.iterdir()} == OUTPUTS - {"overlay.mp4"}


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


@pytest.mark.slow
def test_vad_score_on_a_ped2_test_video(ped2_dir, tmp_path, capsys, one_torch_thread):
    """A real Ped2 test video (180 JPEG frames, 360x240): scores, alerts and a playable MP4 of every frame.

    The model is a tiny detector on pixelstats features of four Ped2 training videos (the I3D
    weights are a download; the command's path is the same for any backbone)."""
    from tests.core.live._footage import KEY_COLUMNS, fit_live
    from vad_core.features import extract_all
    from vad_core.features.backbones.pixelstats import PixelStatsBackbone
    from vad_core.footage import build_manifest
    from vad_core.footage.clips import ClipConfig
    from vad_core.io.feature_tables import read_feature_matrix
    from vad_core.io.store import MemoryTableStore

    train = tmp_path / "train"
    train.mkdir()
    for vid in ("01", "02", "03", "04"):
        (train / vid).symlink_to(ped2_dir / "training" / "frames" / vid)
    store = MemoryTableStore()
    results = extract_all(build_manifest(train), PixelStatsBackbone(), ClipConfig(), store, prefix="features")
    assert all(r.ok for r in results)
    keys = store.list("features")
    rows = pd.concat([store.read_table(k, columns=KEY_COLUMNS).to_pandas() for k in keys], ignore_index=True)
    x = np.concatenate([read_feature_matrix(store, k) for k in keys])
    save_live_detector(fit_live(rows, x, store.read_metadata(keys[0]), n_tiles=3), tmp_path / "model")

    video = ped2_dir / "testing" / "frames" / "01"
    n_frames = len(list(video.glob("*.jpg")))
    assert n_frames == 180
    out = tmp_path / "out"
    assert main(["score", str(video), "--model", str(tmp_path / "model"), "--out", str(out)]) == 0
    frames = pd.read_parquet(out / "frame_scores.parquet")
    assert frames["frame"].tolist() == list(range(n_frames)) and np.isfinite(frames["score"]).all()
    clips = pd.read_parquet(out / "clip_scores.parquet")
    assert len(clips) == 12 and set(clips["tile"]) <= {0, 1, 2}  # 11 clips of 16 + one moved back to end at 180
    alerts = pd.read_parquet(out / "alerts.parquet")
    assert len(alerts) == sum(1 for _ in (out / "alerts.jsonl").open())
    assert int(frames["anomalous"].sum()) == int((alerts["last_frame"] - alerts["first_frame"] + 1).sum())
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f for f in container.decode(stream)]
        assert stream.codec_context.name == "h264" and len(decoded) == n_frames
        assert (decoded[0].width, decoded[0].height) == (360, 240 + 72)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_frames"] == n_frames and summary["overlay"]["n_frames"] == n_frames
