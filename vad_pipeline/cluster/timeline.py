"""Where a partition run's time goes, read from its Dagster events (the benchmark's breakdown).

A features run leaves these events in the instance, in order (Celery executor; the multiprocess
executor's own in brackets):

    RUN_ENQUEUED                 the run is in the queue (QueuedRunCoordinator)
    RUN_STARTING                 the daemon dequeued it and the run launcher handed it on
    RUN_START                    a run worker (a process) orchestrates it
    ENGINE_EVENT "[CeleryExecutor] Executing steps ..."  [STEP_WORKER_STARTED]  a step worker has the step
    STEP_START                   resources are up, the asset body begins
    ASSET_MATERIALIZATION        the extraction returned; its `work_seconds` metadata is its own time
    STEP_SUCCESS
    RUN_SUCCESS

`segments` turns those marks into consecutive durations that add up to the run's wall time;
`slot_overhead_per_partition` is the throughput figure: worker-slot seconds a partition costs
beyond its extraction, idle slots included. Pure functions over `Mark`s; `run_marks` reads them.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The consecutive parts of a run, first to last; their sum is RUN_SUCCESS - RUN_ENQUEUED (or from
# RUN_STARTING, or RUN_START for a run that `execute_job` started directly).
SEGMENTS = ("queued", "launch", "dispatch", "step_setup", "pre_work", "work", "post_work", "finish")
SEGMENT_HELP = {
    "queued": "RUN_ENQUEUED -> RUN_STARTING: waiting in the run queue for the daemon (and the tag limits)",
    "launch": "RUN_STARTING -> RUN_START: the run launcher hands the run to a run worker, which loads the job",
    "dispatch": "RUN_START -> a step worker has the step: step task submitted, waiting for a free worker "
    "(Celery) or a fresh step process importing the code location (multiprocess)",
    "step_setup": "-> STEP_START: execution plan and resources in the step worker",
    "pre_work": "STEP_START -> extraction start (ASSET_MATERIALIZATION - work_seconds): the asset body before it",
    "work": "the extraction's own seconds (work_seconds metadata: planning, decoding, embedding, writing)",
    "post_work": "extraction end -> STEP_SUCCESS: the materialization event and the step's end",
    "finish": "STEP_SUCCESS -> RUN_SUCCESS: the run worker sees the result (Celery polls once a second)",
}
# dagster-celery's engine event in the step worker: "[CeleryExecutor] Executing steps clip_features in celery worker"
STEP_PICKED_TEXT = "Executing steps"


@dataclass(frozen=True)
class Mark:
    """One event of a run: its type (`DagsterEventType` value or "LOG"), unix time and what it says.

    `work_s` is the `work_seconds` metadata of a materialization (`work_cpu_s` its `work_cpu_seconds`);
    `worker` the Celery worker's name of a step-picked engine event."""

    kind: str
    t: float
    message: str = ""
    step_key: str | None = None
    work_s: float | None = None
    worker: str | None = None
    work_cpu_s: float | None = None


@dataclass(frozen=True)
class RunSegments:
    """A run's consecutive durations (`SEGMENTS`, seconds), its wall and the step worker's name."""

    seconds: dict[str, float]
    wall_s: float
    worker: str | None
    work_cpu_s: float | None = None
    held: tuple[float, float] | None = None  # unix times: the step worker picked the step, STEP_SUCCESS

    @property
    def busy_s(self) -> float:
        """Seconds the step worker held the partition: from picking the step to STEP_SUCCESS."""
        return sum(self.seconds[k] for k in ("step_setup", "pre_work", "work", "post_work"))


def _first(marks: Sequence[Mark], kind: str, text: str | None = None, step: bool = False) -> Mark | None:
    """The first mark of `kind` (whose message contains `text`; of a step when `step`)."""
    for mark in marks:
        if mark.kind == kind and (text is None or text in mark.message) and (not step or mark.step_key):
            return mark
    return None


def segments(marks: Iterable[Mark]) -> RunSegments:
    """The run's `SEGMENTS` from its marks; `ValueError` naming the first milestone it lacks."""
    ordered = sorted(marks, key=lambda m: m.t)
    # A step's engine event (the run-level "Executing steps in process" of the in-process and the
    # multiprocess executors' parent is not a step worker), else the step process's own event.
    picked = _first(ordered, "ENGINE_EVENT", STEP_PICKED_TEXT, step=True) or _first(ordered, "STEP_WORKER_STARTED")
    start = _first(ordered, "RUN_START")
    needed = {
        # A run started directly (`execute_job`) is neither queued nor launched: both segments are 0.
        "RUN_STARTING": _first(ordered, "RUN_STARTING") or start,
        "RUN_START": start,
        "step picked": picked,
        "STEP_START": _first(ordered, "STEP_START"),
        "ASSET_MATERIALIZATION": _first(ordered, "ASSET_MATERIALIZATION"),
        "STEP_SUCCESS": _first(ordered, "STEP_SUCCESS"),
        "RUN_SUCCESS": _first(ordered, "RUN_SUCCESS"),
    }
    missing = [name for name, mark in needed.items() if mark is None]
    if missing:
        raise ValueError(f"run events lack {', '.join(missing)}: not a finished single-step run")
    t = {name: mark.t for name, mark in needed.items() if mark is not None}
    enqueued = _first(ordered, "RUN_ENQUEUED")
    t0 = enqueued.t if enqueued is not None else t["RUN_STARTING"]
    materialized = needed["ASSET_MATERIALIZATION"]
    work = float(materialized.work_s or 0.0) if materialized is not None else 0.0
    # The asset measures its extraction and returns: the work ended where the materialization was
    # logged. Clamp so that a clock step never makes a segment negative.
    work_start = max(t["STEP_START"], t["ASSET_MATERIALIZATION"] - work)
    work = t["ASSET_MATERIALIZATION"] - work_start
    bounds = [
        t0,
        t["RUN_STARTING"],
        t["RUN_START"],
        t["step picked"],
        t["STEP_START"],
        work_start,
        t["ASSET_MATERIALIZATION"],
        t["STEP_SUCCESS"],
        t["RUN_SUCCESS"],
    ]
    durations = [max(0.0, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    durations[SEGMENTS.index("work")] = work
    return RunSegments(
        seconds=dict(zip(SEGMENTS, durations, strict=True)),
        wall_s=t["RUN_SUCCESS"] - t0,
        worker=picked.worker if picked is not None else None,
        work_cpu_s=materialized.work_cpu_s if materialized is not None else None,
        held=(t["step picked"], t["STEP_SUCCESS"]),
    )


def mean_segments(runs: Sequence[RunSegments]) -> dict[str, float]:
    """Each segment's mean over the runs, plus `wall`, `busy` (step worker held it),
    `busy_minus_work` (the step worker's own overhead per partition) and, when every run has it,
    `work_cpu` and `work_cpu_per_wall`."""
    if not runs:
        return {}
    out = {k: statistics.fmean(r.seconds[k] for r in runs) for k in SEGMENTS}
    out["wall"] = statistics.fmean(r.wall_s for r in runs)
    out["busy"] = statistics.fmean(r.busy_s for r in runs)
    out["busy_minus_work"] = out["busy"] - out["work"]
    cpu = [r.work_cpu_s for r in runs if r.work_cpu_s is not None]
    if len(cpu) == len(runs):
        # CPU per wall second of the extraction: about 1 with one torch thread on a free core, less
        # when other processes took the core.
        out["work_cpu"] = statistics.fmean(cpu)
        out["work_cpu_per_wall"] = sum(cpu) / max(sum(r.seconds["work"] for r in runs), 1e-9)
    return out


def slot_overhead_per_partition(slots: int, wall_s: float, work_s: Sequence[float]) -> float:
    """(slots x phase wall - summed extraction seconds) / partitions: every worker-slot second of the
    phase not spent extracting (Dagster, Celery, idle slots at the start, the end and between steps),
    per partition. With n partitions on `slots` busy workers it tends to the per-step cost."""
    if slots < 1 or not work_s:
        raise ValueError(f"need slots >= 1 and at least one partition, got slots={slots}, {len(work_s)} partitions")
    return (slots * wall_s - sum(work_s)) / len(work_s)


def ideal_makespan(work_s: Sequence[float], slots: int) -> float:
    """The phase wall of a scheduler with no cost at all: the partitions' extraction seconds `work_s`,
    in submission order, each started the instant a slot is free on the slot free first (greedy list
    scheduling, what the run queue and Celery's one-task prefetch do with zero latency).

    `slots x ideal_makespan - sum(work_s)` are the idle slot-seconds that no orchestrator could avoid
    with these partitions in this order: when the last partitions start, the slots finish at different
    times (partitions are whole videos). Seconds beyond it are what Dagster and Celery cost."""
    if slots < 1 or not work_s:
        raise ValueError(f"need slots >= 1 and at least one partition, got slots={slots}, {len(work_s)} partitions")
    free = [0.0] * slots  # when each slot is next free; a heap, the earliest on top
    for seconds in work_s:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def orchestration_overhead_per_partition(slots: int, wall_s: float, work_s: Sequence[float]) -> float:
    """slots x (phase wall - `ideal_makespan`) / partitions: the worker-slot seconds per partition the
    phase took beyond a zero-cost scheduler's with the same extraction seconds in the same order
    (dispatch, step setup and teardown, the gaps between steps, the run's finish), without the idle
    tail that the partitions' unequal lengths leave any scheduler. `slot_overhead_per_partition`
    minus that tail per partition."""
    return slots * (wall_s - ideal_makespan(work_s, slots)) / len(work_s)


def idle_slots(runs: Sequence[RunSegments], slots: int, start: float, end: float) -> dict[str, float]:
    """Where a phase's worker slots sat idle (seconds summed over slots), from when each held a step.

    `start`/`end`: the phase's unix times (first submission, last run finished). Per slot: `start`
    (until its first step), `between` (from one step's success to picking the next: the
    dispatch gap), `end` (after its last step: the tail, at most about one partition when the
    longest partitions go first). A slot that never got a step is idle for the whole phase
    (`start`). Slots are told apart by the Celery worker's name; runs without one are ignored."""
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        if run.worker is not None and run.held is not None:
            by_worker.setdefault(run.worker, []).append(run.held)
    out = {"start": 0.0, "between": 0.0, "end": 0.0}
    for spans in by_worker.values():
        spans.sort()
        out["start"] += max(0.0, spans[0][0] - start)
        out["between"] += sum(max(0.0, b[0] - a[1]) for a, b in zip(spans, spans[1:], strict=False))
        out["end"] += max(0.0, end - max(done for _, done in spans))
    out["start"] += max(0, slots - len(by_worker)) * max(0.0, end - start)
    return out


def run_marks(instance: object, run_id: str) -> list[Mark]:
    """The `Mark`s of one run from a Dagster instance's event log."""
    records = instance.get_records_for_run(run_id, limit=10_000).records  # type: ignore[attr-defined]
    marks = []
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        kind = event.event_type.name if event is not None else "LOG"  # RUN_START, not PIPELINE_START
        work, worker, cpu = None, None, None
        if event is not None and kind == "ASSET_MATERIALIZATION":
            metadata = event.step_materialization_data.materialization.metadata
            value, cpu_value = metadata.get("work_seconds"), metadata.get("work_cpu_seconds")
            work = float(value.value) if value is not None else None
            cpu = float(cpu_value.value) if cpu_value is not None else None
        if event is not None and kind == "ENGINE_EVENT" and event.engine_event_data is not None:
            value = event.engine_event_data.metadata.get("Celery worker")
            worker = str(value.value) if value is not None else None
        step_key = event.step_key if event is not None else entry.step_key
        # An engine event's text is the event's message (the entry's user_message is often empty).
        message = (event.message if event is not None else None) or entry.user_message or ""
        marks.append(Mark(kind, float(entry.timestamp), message, step_key, work, worker, cpu))
    return marks


__all__ = [
    "SEGMENTS",
    "SEGMENT_HELP",
    "Mark",
    "RunSegments",
    "ideal_makespan",
    "idle_slots",
    "mean_segments",
    "orchestration_overhead_per_partition",
    "run_marks",
    "segments",
    "slot_overhead_per_partition",
]
