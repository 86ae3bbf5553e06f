"""The alert sinks: the JSONL file (idempotent, whole lines, concurrent appends) and the webhook against a
real HTTP server on 127.0.0.1 (accepted, 503 then retried, down, and delivered later)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline._webhook import webhook_server
from vad_core.live.alerts import ALERT_COLUMNS, ALERT_DTYPES
from vad_pipeline.resources.alerting import (
    WEBHOOK_ENV,
    AlertSinks,
    RecordingAlertSink,
    alert_records,
    redact_url,
)


def _alerts(version: str = "3", video: str = "cams/1", n: int = 2) -> pd.DataFrame:
    rows = [
        {
            "video_id": video,
            "first_frame": 16 * 3 * i,
            "last_frame": 16 * 3 * i + 31,
            "first_clip": 3 * i,
            "last_clip": 3 * i + 1,
            "peak_score": 2.5 + i,
            "peak_clip": 3 * i + 1,
            "peak_tile": i,
            "box_x": 10 * i,
            "box_y": 5,
            "box_w": 64,
            "box_h": 64,
            "threshold": 1.25,
            "model_version": version,
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows, columns=ALERT_COLUMNS).astype(ALERT_DTYPES)


def _lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def test_records_carry_an_id_of_dataset_video_version_and_interval() -> None:
    (first, second) = alert_records(_alerts(), "cams", {"model_name": "vad-denoiser-cams"})
    digest = hashlib.sha256(json.dumps(["cams", "cams/1", "3", 0, 31]).encode()).hexdigest()[:24]
    assert first["alert_id"] == digest and second["alert_id"] != digest
    assert first["dataset"] == "cams" and first["model_name"] == "vad-denoiser-cams"
    assert (first["first_frame"], first["last_frame"], first["peak_score"], first["box_x"]) == (0, 31, 2.5, 0)
    assert (second["first_frame"], second["last_frame"], second["peak_tile"], second["box_x"]) == (48, 79, 1, 10)
    assert isinstance(first["first_frame"], int) and first["raised_at"].endswith("+00:00")


def test_jsonl_appends_each_alert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    sink = AlertSinks()
    path = tmp_path / "alerts" / "cams.jsonl"  # the default place: <home>/alerts/<dataset>.jsonl
    first = sink.deliver(alert_records(_alerts(), "cams"), home=tmp_path, dataset="cams")
    assert (first.jsonl, first.written, first.already, first.webhook) == (str(path), 2, 0, None)
    before = path.read_bytes()
    again = sink.deliver(alert_records(_alerts(), "cams"), home=tmp_path, dataset="cams")
    assert (again.written, again.already) == (0, 2) and path.read_bytes() == before  # nothing duplicated
    # Another model version's alerts of the same intervals are other alerts.
    newer = sink.deliver(alert_records(_alerts(version="4"), "cams"), home=tmp_path, dataset="cams")
    assert newer.written == 2
    lines = _lines(path)
    assert [(r["model_version"], r["first_frame"]) for r in lines] == [("3", 0), ("3", 48), ("4", 0), ("4", 48)]
    assert len({r["alert_id"] for r in lines}) == 4


def test_jsonl_cuts_a_torn_last_line_and_writes_its_alert_again(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    records = alert_records(_alerts(), "cams")
    whole = json.dumps(records[0], sort_keys=True)
    path.write_text(whole + "\n" + json.dumps(records[1], sort_keys=True)[:40])  # a crash mid-line
    delivery = AlertSinks(jsonl_path=str(path)).deliver(records, home=tmp_path, dataset="cams")
    assert (delivery.written, delivery.already) == (1, 1)
    assert [r["alert_id"] for r in _lines(path)] == [r["alert_id"] for r in records]
    # A complete record that only lacks its newline is kept as it is.
    path.write_text(whole)
    assert AlertSinks(jsonl_path=str(path)).deliver(records[:1], home=tmp_path, dataset="cams").written == 0
    assert path.read_text() == whole + "\n"


def test_concurrent_deliveries_leave_every_alert_once(tmp_path: Path) -> None:
    sink = AlertSinks(jsonl_path=str(tmp_path / "a.jsonl"))
    batches = [alert_records(_alerts(video=f"cam{i % 5}", n=3), "cams") for i in range(20)]
    threads = [
        threading.Thread(target=lambda b=b: sink.deliver(b, home=tmp_path, dataset="cams"), daemon=True)
        for b in batches
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [r["alert_id"] for r in _lines(tmp_path / "a.jsonl")]
    assert len(ids) == 15 and len(set(ids)) == 15  # 5 videos x 3 intervals, whatever the interleaving


def test_webhook_gets_each_alert_once_with_its_record(tmp_path: Path) -> None:
    records = alert_records(_alerts(), "cams")
    with webhook_server([200]) as hook:
        sink = AlertSinks(jsonl_path=str(tmp_path / "a.jsonl"), webhook_url=hook.url, backoff_s=0)
        delivery = sink.deliver(records, home=tmp_path, dataset="cams")
        assert (delivery.posted, delivery.pending, delivery.errors) == (2, 0, ())
        assert delivery.webhook == f"http://127.0.0.1:{hook.url.split(':')[2].split('/')[0]}/..."
        assert hook.accepted() == _lines(tmp_path / "a.jsonl")  # the body is the JSONL record
        assert [h["Idempotency-Key"] for h, _ in hook.posts] == [r["alert_id"] for r in records]
        assert all(h["Content-Type"] == "application/json" for h, _ in hook.posts)
        again = sink.deliver(records, home=tmp_path, dataset="cams")
        assert (again.posted, again.pending) == (0, 0) and len(hook.posts) == 2  # not posted twice


def test_webhook_503_is_retried_then_accepted(tmp_path: Path) -> None:
    with webhook_server([503, 200]) as hook:
        sink = AlertSinks(jsonl_path=str(tmp_path / "a.jsonl"), webhook_url=hook.url, retries=2, backoff_s=0)
        delivery = sink.deliver(alert_records(_alerts(n=1), "cams"), home=tmp_path, dataset="cams")
        assert (delivery.posted, delivery.pending, delivery.errors) == (1, 0, ())
        assert hook.answered == [503, 200]


def test_webhook_down_keeps_the_jsonl_and_delivers_later(tmp_path: Path) -> None:
    records = alert_records(_alerts(), "cams")
    path = tmp_path / "a.jsonl"
    with webhook_server([503]) as hook:
        sink = AlertSinks(jsonl_path=str(path), webhook_url=hook.url, retries=2, backoff_s=0)
        delivery = sink.deliver(records, home=tmp_path, dataset="cams")
        assert (delivery.written, delivery.posted, delivery.pending) == (2, 0, 2)
        assert delivery.errors == (f"alert {records[0]['alert_id']}: HTTP 503 after 2 retries",)
        assert len(hook.posts) == 3  # 1 + 2 retries of the first alert; the second waits for the next delivery
        assert [r["alert_id"] for r in _lines(path)] == [r["alert_id"] for r in records]  # the record kept
        hook.statuses[:] = [200]  # the receiver is back: the next delivery posts what is pending
        retried = [{**r, "raised_at": "2031-01-01T00:00:00+00:00"} for r in records]  # raised again, later
        later = sink.deliver(retried, home=tmp_path, dataset="cams")
        assert (later.written, later.already, later.posted, later.pending) == (0, 2, 2, 0)
        assert hook.accepted() == _lines(path)  # what the JSONL holds, first raised_at included


def test_webhook_unreachable_is_an_error_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{port}/token")
    sink = AlertSinks(jsonl_path=str(tmp_path / "a.jsonl"), retries=1, backoff_s=0, timeout_s=2)
    delivery = sink.deliver(alert_records(_alerts(n=1), "cams"), home=tmp_path, dataset="cams")
    assert delivery.written == 1 and delivery.pending == 1 and "ConnectionError" in delivery.errors[0]
    assert delivery.webhook == f"http://127.0.0.1:{port}/..." and "token" not in sink.describe()


def test_redaction_and_the_recording_double() -> None:
    assert redact_url("https://user:pw@hooks.example.com:8443/T0/B1/secret?x=1") == "https://hooks.example.com:8443/..."
    assert redact_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    sink = RecordingAlertSink(name="unit")
    sink.reset()
    records = alert_records(_alerts(), "cams")
    assert sink.deliver(records, home=Path("."), dataset="cams").written == 2
    assert sink.deliver(records, home=Path("."), dataset="cams").already == 2
    assert [r["alert_id"] for r in sink.records()] == [r["alert_id"] for r in records]
