"""Loopback RTSP: another process pushes an mp4 with PyAV, we listen and score it; equal to the file path.

No camera and no ffmpeg binary: the pusher is `python -m vad_core.live.push` (PyAV's RTSP muxer
over TCP), the scorer `score_stream(..., ReaderConfig(listen=True))` (ffmpeg's RTSP demuxer with
`rtsp_flags=listen`). Every wait is bounded: the listen timeout, the pusher's connect timeout and
the subprocess's own timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.core.live._streams import file_answer, free_port, live_model, video
from vad_core.live.source import ReaderConfig
from vad_core.live.stream import score_stream

REPO = Path(__file__).resolve().parents[3]


def _push(path: Path, url: str, speed: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vad_core.live.push", str(path), url, "--speed", str(speed), "--connect-timeout", "20"]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_stream_pushed_over_loopback_rtsp_scores_every_clip_as_the_file(tmp_path):
    path = video(tmp_path)  # 125 frames at 10 fps: 8 clips, the last one ending at the last frame
    live = live_model(path, "cam")
    clips, alerts = file_answer(path, live, "cam")
    assert len(alerts) >= 2
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    pusher = _push(path, url, speed=5.0)  # 2.5 s of stream
    try:
        config = ReaderConfig(listen=True, listen_timeout_s=20, read_timeout_s=10, queue=256, reconnect_attempts=0)
        result = score_stream(url, live, video_id="cam", reader=config)
        out, _ = pusher.communicate(timeout=30)
    finally:
        if pusher.poll() is None:
            pusher.kill()
            pusher.wait(10)
    assert pusher.returncode == 0, out
    stats = result.stats
    assert stats["frames"] == 125 and stats["frames_dropped"] == 0 and stats["cuts"] == 0, stats
    assert stats["frame_size"] == [360, 240] and stats["ended"] == "end"
    # Every clip of the pushed stream, scored as the file's: same keys, scores, decisions and alerts.
    keys = ["clip", "start_frame", "end_frame", "tile", "anomalous"]
    assert result.clips[keys].equals(clips[keys])
    np.testing.assert_allclose(result.clips["score"], clips["score"], rtol=0, atol=1e-9)
    assert result.alerts.equals(alerts)
    assert (result.clips["latency_s"] >= 0).all()
