"""Alert sinks: where a video's alert intervals go (the interface, the real sinks and the test double).

    sink = AlertSinks()                                     # JSONL always, a webhook when configured
    delivery = sink.deliver(alert_records(alerts, "ped2"), home=storage.root(), dataset="ped2")

`AlertSink` is a Dagster `ConfigurableResource` whose `deliver` is abstract; `AlertSinks` is the
real one, `RecordingAlertSink` keeps what it was given in memory per name (tests).

**JSONL** (always): one JSON object per alert and line, in `jsonl_path`, else `VAD_ALERT_JSONL`,
else `<VAD_HOME>/alerts/<dataset>.jsonl`. Appended under a file lock (runs of other video
partitions append at the same time) and idempotent per alert: an alert's id is the sha256 of
(dataset, video, model version, first and last frame), and a delivery appends only the ids the
file does not hold, so re-materializing a video adds nothing. The file grows by appends rather
than by rewrite-and-rename because `tail -f` and log shippers follow one growing file (a renamed
file is a new one to them: every line would be shipped again). Each delivery's lines go out in one
write followed by fsync; a crash mid-write can leave a torn last line, which the next delivery
cuts off before it appends (its alert is then written again, its id being gone): every line of
the file is a whole record.

**Webhook** (`webhook_url`, else `VAD_ALERT_WEBHOOK`): one POST per alert, its JSONL record as the
JSON body with an `Idempotency-Key: <alert id>` header, a timeout per attempt and bounded retries
with exponential back-off on connection errors, 429 and 5xx (urllib3's `Retry` through
`requests`; a `Retry-After` header is not obeyed, so the time spent stays bounded). Alerts a URL
accepted (2xx) are remembered in `<jsonl>.delivered` and never posted to it again; one that failed
is posted again by the next delivery that holds it (at least once; the header lets the receiver
drop repeats). After the first failure the rest wait for the next delivery too (the server is
likely down). A webhook failure never raises: it is returned in `Delivery.errors` for the asset
to log and show, after the JSONL line was written.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import filelock
import pandas as pd
from dagster import ConfigurableResource

from vad_core.io.store import jsonable

WEBHOOK_ENV = "VAD_ALERT_WEBHOOK"
JSONL_ENV = "VAD_ALERT_JSONL"
LOCK_TIMEOUT_S = 60.0
RETRY_STATUSES = (429, 500, 502, 503, 504)


def alert_id(dataset: str, video_id: str, model_version: str, first_frame: int, last_frame: int) -> str:
    """24 hex digits naming one alert interval of one video under one model version."""
    key = json.dumps([str(dataset), str(video_id), str(model_version), int(first_frame), int(last_frame)])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def alert_records(alerts: pd.DataFrame, dataset: str, extra: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One plain-JSON record per row of an alerts table (`vad_core.live.ALERT_COLUMNS`), with `alert_id`,
    `dataset`, `raised_at` (UTC, ISO 8601) and the `extra` fields (e.g. the model name)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out = []
    for row in alerts.to_dict(orient="records"):
        record = {str(k): jsonable(v) for k, v in row.items()}
        ident = alert_id(
            dataset, record["video_id"], record["model_version"], record["first_frame"], record["last_frame"]
        )
        out.append({"alert_id": ident, "dataset": dataset, **record, **dict(extra or {}), "raised_at": now})
    return out


def redact_url(url: str) -> str:
    """`scheme://host:port/...`: a webhook URL often holds its secret in the path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}" + (
        "/..." if parts.path.strip("/") else ""
    )


@dataclass(frozen=True)
class Delivery:
    """What one `deliver` call did."""

    jsonl: str  # where the records were appended (a path; `memory://<name>` for the test double)
    written: int  # records new to the JSONL, appended now
    already: int  # records it held already (a re-materialization)
    webhook: str | None = None  # the webhook's redacted address; None when none is configured
    posted: int = 0  # alerts the webhook accepted now
    pending: int = 0  # alerts not delivered to the webhook this time (tried again by the next delivery)
    errors: tuple[str, ...] = ()  # why not

    def summary(self) -> str:
        text = f"{self.written} new alert(s) appended to {self.jsonl} ({self.already} already there)"
        if self.webhook:
            text += f"; webhook {self.webhook}: {self.posted} posted, {self.pending} pending"
        return text + (f" ({self.errors[0]})" if self.errors else "")


class AlertSink(ConfigurableResource, ABC):
    """Where alerts go. `deliver` must be idempotent per `alert_id` and must not raise for a sink that
    is down (report it in `Delivery.errors`) except for the record of record (the JSONL)."""

    @abstractmethod
    def deliver(self, records: Sequence[Mapping[str, Any]], *, home: Path, dataset: str) -> Delivery:
        """Send `alert_records(...)` of one dataset; `home` is the VAD home (default JSONL location)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: where alerts go."""


class AlertSinks(AlertSink):
    """The real sinks: a JSONL file always, a webhook when `webhook_url` (or `VAD_ALERT_WEBHOOK`) is set.

    `timeout_s` bounds each HTTP attempt (connect and read), `retries` the attempts after the first,
    `backoff_s` the first back-off (doubling after each retry)."""

    jsonl_path: str | None = None
    webhook_url: str | None = None
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5

    def jsonl_file(self, home: Path, dataset: str) -> Path:
        explicit = self.jsonl_path or os.environ.get(JSONL_ENV)
        return Path(explicit).expanduser() if explicit else Path(home) / "alerts" / f"{dataset}.jsonl"

    def resolved_webhook(self) -> str | None:
        return self.webhook_url or os.environ.get(WEBHOOK_ENV) or None

    def describe(self) -> str:
        hook = self.resolved_webhook()
        where = self.jsonl_path or os.environ.get(JSONL_ENV) or "<VAD_HOME>/alerts/<dataset>.jsonl"
        return f"JSONL {where}" + (f" and webhook {redact_url(hook)}" if hook else " (no webhook configured)")

    def deliver(self, records: Sequence[Mapping[str, Any]], *, home: Path, dataset: str) -> Delivery:
        path = self.jsonl_file(home, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = list(_unique(records))
        with filelock.FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
            held = _repair_and_read_records(path)
            new = [r for r in records if r["alert_id"] not in held]
            if new:
                _append_lines(path, [json.dumps(jsonable(r), sort_keys=True) for r in new])
        # What the file holds is what every sink sends (an alert raised earlier keeps its `raised_at`).
        records = [held.get(str(r["alert_id"]), r) for r in records]
        url = self.resolved_webhook()
        if url is None:
            return Delivery(str(path), written=len(new), already=len(records) - len(new))
        tag = hashlib.sha256(url.encode()).hexdigest()[:12]  # per URL: a new URL gets what the old one got
        sent_file = Path(str(path) + ".delivered")
        with filelock.FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
            sent = _repair_and_read_lines(sent_file)
        todo = [r for r in records if f"{r['alert_id']} {tag}" not in sent]
        posted, errors = self._post_all(url, todo)
        if posted:
            with filelock.FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
                _append_lines(sent_file, [f"{i} {tag}" for i in posted])
        return Delivery(
            str(path),
            written=len(new),
            already=len(records) - len(new),
            webhook=redact_url(url),
            posted=len(posted),
            pending=len(todo) - len(posted),
            errors=tuple(errors),
        )

    def _post_all(self, url: str, records: list[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
        """POST each record until one fails; returns (ids accepted, errors)."""
        if not records:
            return [], []
        import requests  # imported here: only a configured webhook needs it
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        retry = Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff_s,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        posted: list[str] = []
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            for record in records:
                ident = str(record["alert_id"])
                try:
                    response = session.post(
                        url,
                        data=json.dumps(jsonable(record), sort_keys=True),
                        headers={"Content-Type": "application/json", "Idempotency-Key": ident},
                        timeout=self.timeout_s,
                    )
                except requests.RequestException as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    return posted, [f"alert {ident}: {type(exc).__name__} ({reason[:200]})"]
                if not 200 <= response.status_code < 300:
                    retried = f" after {self.retries} retries" if response.status_code in RETRY_STATUSES else ""
                    return posted, [f"alert {ident}: HTTP {response.status_code}{retried}"]
                posted.append(ident)
        return posted, []


def _unique(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    seen: set[str] = set()
    out = []
    for r in records:
        if "alert_id" not in r:
            raise ValueError("alert record without 'alert_id': build records with alert_records()")
        if r["alert_id"] not in seen:
            seen.add(r["alert_id"])
            out.append(r)
    return out


def _repair_and_read_lines(path: Path) -> set[str]:
    """The whole lines of `path` (empty set when it does not exist), after cutting off a torn last line
    (one without its newline that is not a complete record either; a complete one gets its newline)."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        with open(path, "r+b") as fh:
            if _is_record(tail) or b"{" not in tail:  # a finished line missing only its newline
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
            else:
                fh.truncate(cut)
                tail = b""
            fh.flush()
            os.fsync(fh.fileno())
        data = data[:cut] + (tail + b"\n" if tail else b"")
    return {line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()}


def _repair_and_read_records(path: Path) -> dict[str, dict[str, Any]]:
    """`{alert_id: record}` of the JSONL file (see `_repair_and_read_lines`)."""
    held = {}
    for line in _repair_and_read_lines(path):
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line someone else wrote: kept, never ours
        if isinstance(obj, dict) and "alert_id" in obj:
            held[str(obj["alert_id"])] = obj
    return held


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines in one write, then fsync (the caller holds the lock)."""
    with open(path, "ab") as fh:
        fh.write("".join(f"{line}\n" for line in lines).encode())
        fh.flush()
        os.fsync(fh.fileno())


# One store per test double name: Dagster copies resources before a run (see RecordingTracker).
_DELIVERED: dict[str, dict[str, dict[str, Any]]] = {}


class RecordingAlertSink(AlertSink):
    """The test double: keeps the records per `name` in memory (`records()`), idempotent like the real one."""

    name: str = "default"

    def records(self) -> list[dict[str, Any]]:
        return list(_DELIVERED.get(self.name, {}).values())

    def reset(self) -> None:
        _DELIVERED[self.name] = {}

    def describe(self) -> str:
        return f"recording alert sink {self.name!r} (in memory)"

    def deliver(self, records: Sequence[Mapping[str, Any]], *, home: Path, dataset: str) -> Delivery:
        held = _DELIVERED.setdefault(self.name, {})
        records = _unique(records)
        new = [r for r in records if r["alert_id"] not in held]
        held.update({str(r["alert_id"]): dict(r) for r in new})
        return Delivery(f"memory://{self.name}", written=len(new), already=len(records) - len(new))


__all__ = [
    "JSONL_ENV",
    "RETRY_STATUSES",
    "WEBHOOK_ENV",
    "AlertSink",
    "AlertSinks",
    "Delivery",
    "RecordingAlertSink",
    "alert_id",
    "alert_records",
    "redact_url",
]
