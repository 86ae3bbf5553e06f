"""The extraction engine: backbone inputs of many videos, batched across videos, rows written per video.

`run_jobs(jobs, batch_size, on_event)` reads the videos one after another in a background
thread (`vad_core.footage.clips.prefetch`), stacks their backbone inputs into batches of
`batch_size` whichever video they come from, and embeds a batch while the next one is read. A
video's last inputs share a batch with the next video's first ones, so only the run's very last
batch is short (a compiled backbone pads a short batch to its compiled size: per video, that was
up to `batch_size - 1` inputs of wasted work). Each video's table is written as soon as its last
row is back, so a long run loses nothing finished when it stops.

Inputs in one batch must be stackable and embedded alike (`Job.batch_key`: the input shape and,
for the frame pass, the region boxes): a video whose inputs differ starts a new batch. A video
that fails (it does not decode, the backbone gives non-finite numbers for it) loses its rows and
gets its error; the other videos go on.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vad_core.errors import VADInputError
from vad_core.footage.clips import prefetch

__all__ = ["Job", "JobOutcome", "run_jobs"]

# (job index, event name, rows done, extra fields) -> None
EventSink = Callable[[int, str, int, dict[str, Any]], None]


@dataclass
class Job:
    """One video's extraction.

    `inputs()` yields `(keys (k, 8) int64 [clip, start, end, region, x, y, w, h], pixels)` per
    backbone input (k rows each); `embed(pixels stacked (B, ...)) -> (B * k, D)` float32;
    `finish(keys (N, 8), features (N, D = dim))` stores the table once all `n_rows` rows are back.
    """

    index: int
    video_id: str
    inputs: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
    embed: Callable[[np.ndarray], np.ndarray]
    finish: Callable[[np.ndarray, np.ndarray], None]
    batch_key: Hashable
    n_rows: int
    dim: int
    backbone_name: str = ""


@dataclass
class JobOutcome:
    """What happened to one job: `n_rows` written, or `error`."""

    n_rows: int = 0
    error: str | None = None


@dataclass
class _State:
    keys: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    rows: int = 0
    produced: int | None = None  # rows the reader produced, known once every input has been read
    started: bool = False
    outcome: JobOutcome | None = None


def _produce(jobs: list[Job], batch_size: int) -> Iterator[tuple[Any, ...]]:
    """Reader thread: ("batch", owners, keys, pixels) for full batches, ("read", i, rows) when video i
    has been read completely (its last rows may still wait in the next batch), ("failed", i, message)
    when it could not be."""
    owners: list[int] = []
    keys: list[np.ndarray] = []
    pixels: list[np.ndarray] = []
    current: Hashable = None

    def flush() -> tuple[Any, ...]:
        batch = ("batch", list(owners), list(keys), np.stack(pixels))
        owners.clear()
        keys.clear()
        pixels.clear()
        return batch

    for job in jobs:
        produced = 0
        try:
            for k, p in job.inputs():
                if pixels and job.batch_key != current:
                    yield flush()
                current = job.batch_key
                owners.append(job.index)
                keys.append(k)
                pixels.append(p)
                produced += len(k)
                if len(pixels) == batch_size:
                    yield flush()
        except VADInputError as exc:
            yield ("failed", job.index, str(exc))
            continue
        yield ("read", job.index, produced)
    if pixels:
        yield flush()


def _check_output(job: Job, out: Any, n_rows: int) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    if out.shape != (n_rows, job.dim):
        raise VADInputError(
            f"backbone {job.backbone_name!r} returned shape {out.shape}, expected ({n_rows}, {job.dim})"
        )
    return out


def run_jobs(jobs: list[Job], batch_size: int, on_event: EventSink | None = None) -> dict[int, JobOutcome]:
    """Run every job (see the module doc); `{job.index: JobOutcome}`.

    `on_event(index, event, rows_done, extra)` gets `video_start` (first rows or failure seen),
    `batch` (after each batch holding the video's rows) and `video_done` (`extra`: `error` or none).
    """
    if batch_size < 1:
        raise VADInputError(f"batch_size must be a positive int, got {batch_size!r}")
    by_index = {job.index: job for job in jobs}
    states = {job.index: _State() for job in jobs}

    def emit(i: int, event: str, **extra: Any) -> None:
        if on_event is not None:
            on_event(i, event, states[i].rows, extra)

    def start(i: int) -> None:
        if not states[i].started:
            states[i].started = True
            emit(i, "video_start")

    def fail(i: int, message: str) -> None:
        state = states[i]
        if state.outcome is None:
            start(i)
            state.outcome = JobOutcome(error=message)
            state.keys, state.features = [], []
            emit(i, "video_done", error=message)

    def finish_if_complete(i: int) -> None:
        state, job = states[i], by_index[i]
        if state.outcome is not None or state.produced is None or state.rows < state.produced:
            return
        if state.rows != job.n_rows:
            fail(i, f"video {job.video_id!r}: produced {state.rows} rows, expected {job.n_rows}")
            return
        try:
            job.finish(np.concatenate(state.keys), np.concatenate(state.features))
        except VADInputError as exc:
            fail(i, str(exc))
            return
        state.outcome = JobOutcome(n_rows=state.rows)
        state.keys, state.features = [], []
        emit(i, "video_done")

    for event in prefetch(_produce(jobs, batch_size), max_queue=2):
        kind = event[0]
        if kind == "failed":
            fail(event[1], event[2])
            continue
        if kind == "read":
            start(event[1])
            states[event[1]].produced = event[2]
            finish_if_complete(event[1])
            continue
        _, owners, keys, pixels = event
        n_rows = sum(len(k) for k in keys)
        first = by_index[owners[0]]
        try:
            out = _check_output(first, first.embed(pixels), n_rows)
        except VADInputError as exc:
            for i in dict.fromkeys(owners):
                fail(i, f"video {by_index[i].video_id!r}: {exc}")
            continue
        offset = 0
        touched: dict[int, None] = {}
        for i, k in zip(owners, keys, strict=True):
            rows = out[offset : offset + len(k)]
            offset += len(k)
            state = states[i]
            if state.outcome is not None:
                continue  # failed earlier: its remaining rows are dropped
            start(i)
            if not np.isfinite(rows).all():  # never write a table the asset checks would reject anyway
                bad = k[~np.isfinite(rows).all(axis=1)][0]
                fail(
                    i,
                    f"video {by_index[i].video_id!r}: backbone {first.backbone_name!r} gave non-finite features "
                    f"for clip {int(bad[0])} tile {int(bad[3])}",
                )
                continue
            state.keys.append(k)
            state.features.append(rows)
            state.rows += len(k)
            touched[i] = None
        for i in touched:
            if states[i].outcome is None:
                emit(i, "batch")
                finish_if_complete(i)
    for i, state in states.items():  # a reader that stopped early leaves jobs unfinished
        if state.outcome is None:
            fail(i, f"video {by_index[i].video_id!r}: extraction stopped before its rows were complete")
    return {i: s.outcome for i, s in states.items() if s.outcome is not None}
