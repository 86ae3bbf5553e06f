"""`vad score-stream`: alerts printed and appended as they close, clip scores at the end, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.core.live._streams import file_answer, free_port, live_model, video
from vad_core.live.detector import save_live_detector
from vad_pipeline.cli import main

REPO = Path(__file__).resolve().parents[3]


def _model(tmp_path: Path):
    path = video(tmp_path)
    live = live_model(path, "cam")
    save_live_detector(live, tmp_path / "model")
    return path, live


def test_score_stream_of_a_file_writes_alerts_as_they_close_and_clip_scores(tmp_path, capsys, one_torch_thread):
    path, live = _model(tmp_path)
    clips, alerts = file_answer(path, live, "cam")
    out = tmp_path / "out"
    args = ["score-stream", str(path), "--model", str(tmp_path / "model"), "--out", str(out), "--video-id", "cam"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("ALERT cam frames") == len(alerts) >= 2
    first = alerts.iloc[0]
    assert f"ALERT cam frames {first.first_frame}-{first.last_frame}" in printed
    lines = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert [(a["first_frame"], a["last_frame"], a["peak_clip"]) for a in lines] == list(
        alerts[["first_frame", "last_frame", "peak_clip"]].itertuples(index=False, name=None)
    )
    assert all(a["source"] == str(path) and a["model_version"] == "7" for a in lines)
    scored = pd.read_parquet(out / "clip_scores.parquet")
    np.testing.assert_allclose(scored["score"], clips["score"], atol=1e-9)
    assert len(pd.read_csv(out / "clip_scores.csv")) == len(clips)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stats"]["clips"] == len(clips) and summary["stats"]["ended"] == "end"
    # A second run appends its alerts (the JSONL file is the sink's log), the tables are replaced.
    assert main([*args, "--max-clips", "3", "--quiet"]) == 0
    assert len((out / "alerts.jsonl").read_text().splitlines()) > len(lines)
    assert len(pd.read_parquet(out / "clip_scores.parquet")) == 3


def test_bad_arguments_get_one_line(tmp_path, capsys):
    assert main(["score-stream", "x.mp4", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.slow
def test_listen_for_a_pushed_stream_and_stop_cleanly_on_ctrl_c(tmp_path):
    path, live = _model(tmp_path)
    _, alerts = file_answer(path, live, "cam")
    url, out = f"rtsp://127.0.0.1:{free_port()}/live", tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vad_pipeline.cli", "score-stream", url, "--listen", "--listen-timeout", "60"]
    cmd += ["--model", str(tmp_path / "model"), "--out", str(out), "--video-id", "cam"]
    scorer = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    push = [sys.executable, "-m", "vad_core.live.push", str(path), url, "--speed", "1", "--connect-timeout", "60"]
    pusher = subprocess.Popen(push, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not (out / "alerts.jsonl").exists() and time.monotonic() < deadline and scorer.poll() is None:
            time.sleep(0.1)
        assert (out / "alerts.jsonl").exists(), "no alert within 90 s"
        scorer.send_signal(signal.SIGINT)  # the first alert is out; the stream has more clips to come
        printed, _ = scorer.communicate(timeout=60)
    finally:
        for proc in (scorer, pusher):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert scorer.returncode == 0, printed
    assert "stopping" in printed and "ended: stopped" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= summary["stats"]["clips"] < 8 and summary["stats"]["frames_dropped"] == 0
    first = json.loads((out / "alerts.jsonl").read_text().splitlines()[0])
    assert (first["first_frame"], first["last_frame"]) == (
        int(alerts.iloc[0].first_frame),
        int(alerts.iloc[0].last_frame),
    )
