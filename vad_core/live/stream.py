"""Score a stream as it arrives: each finished clip embedded, scored and decided alone; alerts as they close.

    result = score_stream("rtsp://cam7/live", live, on_alert=print)
    result.clips     # CLIP_COLUMNS + latency_s, one row per scored clip, in stream order
    result.alerts    # ALERT_COLUMNS, every alert that closed
    result.stats     # frames, drops, reconnects, clips, latency p50/p95, seconds per stage

Frames come from a `FrameReader` (`vad_core.live.source`: decoder thread, bounded queue that
drops when scoring is behind, reconnects with back-off); `ClipFeaturizer`
(`vad_core.live.featurize`) cuts them into the model's clips and embeds each clip's regions as
`extract_features` would; `LiveDetector.score` scores the clip's rows and decides the clip by the
stored training-batch rule (`vad_core.live.decision`), which needs no other clip.

An alert is a run of consecutive anomalous clips; it closes at the first normal clip after it
(or when the stream ends or stops) and is then handed to `on_alert` as one ALERT_COLUMNS row
from `vad_core.live.alert_intervals`, the function the file and batch paths use, so on the same
frames all three give the same alerts. A clip's latency is the time from its last frame's
arrival (decoded) to its decision.

`stop` (a `threading.Event`) ends scoring cleanly: the frames still queued are left, the open
alert is closed, and what was scored is returned. `max_clips` stops after that many clips.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError
from vad_core.live.alerts import alert_intervals, empty_alerts
from vad_core.live.detector import CLIP_COLUMNS, LiveDetector
from vad_core.live.featurize import ClipFeaturizer
from vad_core.live.source import FrameReader, Opener, ReaderConfig
from vad_core.live.video import feature_setup

__all__ = ["STREAM_CLIP_COLUMNS", "StreamResult", "score_stream", "stream_id"]

STREAM_CLIP_COLUMNS = [*CLIP_COLUMNS, "latency_s"]


class StreamResult(NamedTuple):
    """What scoring a stream gave (see the module doc)."""

    clips: pd.DataFrame  # STREAM_CLIP_COLUMNS
    alerts: pd.DataFrame  # ALERT_COLUMNS
    stats: dict[str, Any]


def stream_id(source: str) -> str:
    """A video id for a source: the URL path's or the file's stem (`rtsp://cam/live` -> `live`)."""
    text = str(source)
    path = urlparse(text).path if "://" in text else text
    stem = Path(path).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "stream"


class _Alerts:
    """The open run of anomalous clips; closes it into one alert row when the run ends."""

    def __init__(self, boxes: Callable[[], dict], model_version: str, sink: Callable[[dict], None] | None) -> None:
        self._boxes, self._version, self._sink = boxes, model_version, sink
        self.run: list[dict[str, Any]] = []
        self.closed: list[pd.DataFrame] = []

    def add(self, clip: dict[str, Any]) -> None:
        if clip["anomalous"]:
            self.run.append(clip)
        else:
            self.close()

    def close(self) -> None:
        if not self.run:
            return
        alert = alert_intervals(pd.DataFrame(self.run), self._boxes(), self._version)
        self.run = []
        self.closed.append(alert)
        if self._sink is not None:
            for row in alert.to_dict("records"):
                self._sink(row)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def score_stream(
    source: str,
    live: LiveDetector,
    *,
    video_id: str | None = None,
    reader: ReaderConfig | None = None,
    backbone: Any = None,
    device: str | None = None,
    stop: threading.Event | None = None,
    max_clips: int | None = None,
    on_clip: Callable[[dict[str, Any]], None] | None = None,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    opener: Opener | None = None,
) -> StreamResult:
    """Score `source` clip by clip as its frames arrive (see the module doc).

    `reader`: how the source is read (default `ReaderConfig()`). `video_id`: the id the rows carry
    and their noise keys are hashed from (default `stream_id(source)`; pass the file path's id to
    reproduce its scores). `backbone`: an already
    loaded one, checked against the model's feature spec (default: built from the spec on
    `device`). `on_clip(row)` gets each scored clip (STREAM_CLIP_COLUMNS), `on_alert(row)` each
    closed alert (ALERT_COLUMNS). `opener`: see `FrameReader`. Raises `VADInputError` for a
    model whose spec cannot rebuild the features, a frame size giving another number of regions
    than the detector's, or a source that cannot be read (after its reconnect attempts).
    """
    if max_clips is not None and max_clips < 1:
        raise VADInputError(f"max_clips must be >= 1, got {max_clips!r}")
    t0 = time.perf_counter()
    backbone, clip_config, regions = feature_setup(dict(live.feature_spec), device, backbone)
    vid = video_id or stream_id(source)
    feat = ClipFeaturizer(backbone, clip_config, regions, vid)

    def size_for(width: int, height: int) -> tuple[int, int]:
        scaled = feat.size_for(width, height)
        assert feat.layout is not None
        if live.n_tiles and len(feat.layout.boxes) != live.n_tiles:
            raise VADInputError(
                f"{source}: its {width}x{height} frames give {len(feat.layout.boxes)} regions per clip under the "
                f"model's clip and region config, the detector knows {live.n_tiles}"
            )
        return scaled

    frames = FrameReader(str(source), size_for, reader or ReaderConfig(), opener=opener, stop=stop)
    alerts = _Alerts(lambda: feat.boxes, live.info.get("model_version", ""), on_alert)
    clips: list[dict[str, Any]] = []
    latencies: list[float] = []
    seconds = {"embed": 0.0, "score": 0.0}
    t_first: float | None = None

    def handle(clip: Any) -> None:
        t_embed = time.perf_counter()
        rows, features = feat.embed(clip)
        t_score = time.perf_counter()
        scored = live.score(rows, features).clips
        done = time.perf_counter()
        seconds["embed"] += t_score - t_embed
        seconds["score"] += done - t_score
        row: dict[str, Any] = {str(k): v for k, v in scored.iloc[0].to_dict().items()}
        row["latency_s"] = done - clip.last_arrival
        row["anomalous"] = bool(row["anomalous"])
        latencies.append(row["latency_s"])
        clips.append(row)
        if on_clip is not None:
            on_clip(row)
        alerts.add(row)

    def full() -> bool:
        return max_clips is not None and len(clips) >= max_clips

    with frames:
        for frame in frames:
            t_first = frame.arrival if t_first is None else t_first
            for clip in feat.add(frame):
                handle(clip)
            if full():
                break
        else:  # the source ended (not stopped, not full): its last clip covers the last frames
            if frames.stats.ended == "end":
                for clip in feat.close():
                    handle(clip)
    alerts.close()
    table = pd.DataFrame(clips, columns=STREAM_CLIP_COLUMNS)
    if len(table):
        table = table.astype({"clip": "int64", "start_frame": "int64", "end_frame": "int64", "tile": "int64"})
    stats = {
        "video_id": vid,
        "source": str(source),
        "frames": frames.stats.decoded,
        "frames_dropped": frames.stats.dropped,
        "drop_events": frames.stats.drop_events,
        "reconnects": frames.stats.reconnects,
        "segments": frames.stats.segments,
        "cuts": feat.cuts,
        "ended": "max_clips" if full() else (frames.stats.ended or "stopped"),
        "clips": len(table),
        "alerts": sum(len(a) for a in alerts.closed),
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "latency_max_s": max(latencies) if latencies else None,
        "wall_s": time.perf_counter() - t0,
        # from the first frame's arrival: what a real-time factor compares with the video's duration
        "stream_s": time.perf_counter() - t_first if t_first is not None else 0.0,
        "embed_s": seconds["embed"],
        "score_s": seconds["score"],
        "frame_size": list(feat.size) if feat.size else None,
        "model_version": live.info.get("model_version", ""),
    }
    return StreamResult(table, pd.concat(alerts.closed, ignore_index=True) if alerts.closed else empty_alerts(), stats)
