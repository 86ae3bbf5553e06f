"""The registered denoiser version is a servable MLflow pyfunc model (issue 12, item 1).

On the tiny pipeline of conftest (a real MLflow SQLite store): `models:/vad-denoiser-tiny@champion`
loads in a fresh interpreter and scores rows of a video the detector never saw exactly as the
pipeline's path for new footage (`Detector.score_new` with `row_keys_for` keys, as `segment_scores`
scores an unseen video) and as the store's champion `LiveDetector`; `mlflow models serve` answers the
same over loopback and refuses schema-breaking requests with a 4xx.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vad_core.diffusion.detector import load_detector
from vad_core.io.feature_tables import read_feature_matrix
from vad_core.live import DecisionRule, live_model_from_files
from vad_core.scoring.rows import clip_scores, row_keys_for
from vad_pipeline.assets.common import load_feature_rows
from vad_pipeline.assets.training import model_name
from vad_pipeline.resources.storage import DatasetKeys

K = DatasetKeys("tiny")
URI = f"models:/{model_name('tiny')}@champion"
MLFLOW = Path(sys.executable).with_name("mlflow")


def _new_video_rows(p) -> tuple[pd.DataFrame, np.ndarray]:
    """test/01's feature rows under an id no member trained on: new footage to the detector."""
    store = p.storage.store()
    rows = store.read_frame(K.features("test/01"))[0].drop(columns=["feature"])
    return rows.assign(video_id="camera/new"), read_feature_matrix(store, K.features("test/01"))


def _champion(p):
    store = p.storage.store()
    files = {n: store.read_bytes(K.live_model("champion", n)) for n in ("detector.pt", "live.json")}
    return live_model_from_files(files, device="cpu")


def _request(rows: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
    keys = rows[["video_id", "clip", "start_frame", "end_frame", "tile"]]
    return keys.assign(feature=[r.astype(np.float64).tolist() for r in x])


def _env(p) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    path = os.pathsep.join([str(MLFLOW.parent), env.get("PATH", "")])  # the server runs the venv's uvicorn
    return {**env, "PATH": path, "MLFLOW_TRACKING_URI": p.tracker.resolved_uri(), "MLFLOW_DISABLE_TELEMETRY": "true"}


def test_the_pipeline_promoted_its_servable_model(tiny_pipeline) -> None:
    p = tiny_pipeline
    client, name = p.tracker.client(), model_name("tiny")
    info = p.storage.store().read_json(K.denoiser_info)
    version = client.get_model_version_by_alias(name, "champion")
    assert str(version.version) == info["model_version"] and sorted(version.aliases) == ["challenger", "champion"]
    assert version.source.endswith("/denoiser_model")
    assert version.tags["promotion.outcome"] == "promoted" and version.tags["promotion.champion_before"] == "none"
    store = p.storage.store()
    for f in ("detector.pt", "live.json"):  # the store's champion slot follows the alias
        assert store.read_bytes(K.live_model("champion", f)) == store.read_bytes(K.live_model("challenger", f))
    live = _champion(p)
    assert live.info["model_version"] == info["model_version"] and live.info["mlflow_run_id"] == info["mlflow_run_id"]
    assert live.feature_spec["backbone"] == store.read_metadata(K.features("train/01"))["backbone"]
    # The live rule: mean + 1 std of the training clips' out-of-fold scores, recomputed here.
    index = store.read_frame(K.feature_index)[0]
    rows, x = load_feature_rows(store, K, index.loc[index["train"], "video_id"].tolist())
    detector = load_detector(store.read_bytes(K.denoiser), device="cpu")
    tiles = rows["tile"].to_numpy(np.int64)
    fitted, _ = detector.score_fitted(x, rows["video_id"].to_numpy(), tiles, row_keys_for(rows))
    rule = DecisionRule.from_clip_scores(clip_scores(rows.assign(score=fitted))["score"], k=1.0)
    assert live.rule.threshold == pytest.approx(rule.threshold, rel=1e-9) and live.rule.n_clips == rule.n_clips
    report = store.read_json(K.report_json)
    assert report["promotion"]["outcome"] == "promoted" and "## Promotion" in store.read_bytes(K.report_md).decode()


def test_champion_loads_in_a_fresh_process_and_scores_as_the_pipeline(tiny_pipeline, tmp_path: Path) -> None:
    p = tiny_pipeline
    rows, x = _new_video_rows(p)
    _request(rows, x).to_parquet(tmp_path / "rows.parquet")
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({URI!r}, model_config={{'device': 'cpu'}})\n"
        "import vad_core\n"
        "print(vad_core.__file__)\n"
        "model.predict(pd.read_parquet('rows.parquet')).to_parquet('out.parquet')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=_env(p), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The model brought its own scoring code: vad_core came from the downloaded model's code folder.
    assert "/code/vad_core/__init__.py" in done.stdout.strip().splitlines()[-1]
    out = pd.read_parquet(tmp_path / "out.parquet")
    detector = load_detector(p.storage.store().read_bytes(K.denoiser), device="cpu")
    expected = detector.score_new(x, rows["tile"].to_numpy(np.int64), row_keys_for(rows))
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=0, atol=1e-6)
    live = _champion(p).score(rows, x)
    np.testing.assert_allclose(out["score"].to_numpy(), live.rows["score"].to_numpy(), rtol=0, atol=1e-6)
    per_row = rows[["video_id", "clip"]].merge(live.clips, on=["video_id", "clip"], how="left")
    np.testing.assert_allclose(out["clip_score"].to_numpy(), per_row["score"].to_numpy(), rtol=0, atol=1e-6)
    assert out["clip_tile"].tolist() == per_row["tile"].tolist()
    assert out["anomalous"].tolist() == per_row["anomalous"].tolist()
    assert np.allclose(out["threshold"], _champion(p).rule.threshold)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _split(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}


def test_mlflow_models_serve_answers_over_loopback_and_refuses_bad_requests(tiny_pipeline, tmp_path: Path) -> None:
    p = tiny_pipeline
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(MLFLOW), "models", "serve", "-m", URI, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        + ["--workers", "1"],
        cwd=tmp_path,
        env=_env(p),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped with every worker it started
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer within 180 s"
            time.sleep(0.5)
        rows, x = _new_video_rows(p)
        request = _request(rows, x)
        url = f"http://127.0.0.1:{port}/invocations"
        status, body = _post(url, _split(request))
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        expected = _champion(p).score(rows, x).rows["score"].to_numpy()
        np.testing.assert_allclose(served["score"].to_numpy(), expected, rtol=0, atol=1e-6)
        bad = {
            "missing column": request.drop(columns=["tile"]),
            "wrong type": request.assign(tile=["left"] * len(request)),
            "wrong feature length": request.assign(feature=[f[:-1] for f in request["feature"]]),
        }
        for what, frame in bad.items():
            status, body = _post(url, _split(frame))
            assert 400 <= status < 500, f"{what}: HTTP {status} {body}"
            assert body.get("message"), what
    finally:
        _stop(server)
        log.close()


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn and its worker), SIGKILL if it outlives 30 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return  # the group is gone already
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def test_the_demo_summary_names_the_champion(tiny_pipeline) -> None:
    from vad_pipeline.cli.demo import format_summary

    p = tiny_pipeline
    version = p.storage.store().read_json(K.denoiser_info)["model_version"]
    text = format_summary(p.summary, p.storage, p.tracker.describe())
    assert f"== model: {model_name('tiny')} version {version} promoted, champion {version}" in text
