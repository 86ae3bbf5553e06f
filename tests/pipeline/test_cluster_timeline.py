"""The benchmark's overhead arithmetic (vad_pipeline.cluster.timeline) on hand-made event marks."""

from __future__ import annotations

import pytest

from vad_pipeline.cluster.timeline import (
    SEGMENTS,
    Mark,
    ideal_makespan,
    idle_slots,
    mean_segments,
    orchestration_overhead_per_partition,
    segments,
    slot_overhead_per_partition,
)

PICKED = "[CeleryExecutor] Executing steps clip_features in celery worker"  # dagster-celery's text


def celery_run(t0: float, work: float = 10.0, worker: str = "vad-cpu-0@h") -> list[Mark]:
    """A Celery-executor features run: 1 s queued, 2 s launch, 0.5 s dispatch, 0.25 s setup, ..."""
    return [
        Mark("ASSET_MATERIALIZATION_PLANNED", t0),
        Mark("RUN_ENQUEUED", t0),
        Mark("RUN_STARTING", t0 + 1.0),
        Mark("RUN_START", t0 + 3.0),
        Mark("ENGINE_EVENT", t0 + 3.2, 'Submitting celery task for step "clip_features" to queue "dagster".'),
        Mark("ENGINE_EVENT", t0 + 3.5, PICKED, "clip_features", None, worker),
        Mark("STEP_START", t0 + 3.75, step_key="clip_features"),
        Mark("LOG", t0 + 6.0, "video_start"),
        Mark("ASSET_MATERIALIZATION", t0 + 14.0, step_key="clip_features", work_s=work),
        Mark("STEP_SUCCESS", t0 + 14.5, step_key="clip_features"),
        Mark("RUN_SUCCESS", t0 + 15.5),
    ]


def test_segments_of_a_celery_run_add_up_to_its_wall() -> None:
    run = segments(reversed(celery_run(100.0)))  # order of the input does not matter
    expected = {
        "queued": 1.0,
        "launch": 2.0,
        "dispatch": 0.5,
        "step_setup": 0.25,
        "pre_work": 0.25,  # STEP_START 103.75 -> work start 114 - 10 = 104
        "work": 10.0,
        "post_work": 0.5,
        "finish": 1.0,
    }
    assert run.seconds == pytest.approx(expected)
    assert list(run.seconds) == list(SEGMENTS)
    assert run.wall_s == pytest.approx(15.5) == pytest.approx(sum(run.seconds.values()))
    assert run.busy_s == pytest.approx(11.0)  # 103.5 (picked) -> 114.5 (STEP_SUCCESS)
    assert run.worker == "vad-cpu-0@h"


def test_multiprocess_run_uses_the_step_worker_event_and_ignores_the_parent_engine_event() -> None:
    marks = [
        Mark("RUN_START", 0.5),
        Mark("ENGINE_EVENT", 0.6, "Executing steps using multiprocess executor: parent process (pid: 1)"),
        Mark("STEP_WORKER_STARTING", 0.7, step_key="clip_features"),
        Mark("STEP_WORKER_STARTED", 8.0, step_key="clip_features"),
        Mark("STEP_START", 9.0, step_key="clip_features"),
        Mark("ASSET_MATERIALIZATION", 20.0, step_key="clip_features", work_s=10.0),
        Mark("STEP_SUCCESS", 20.5, step_key="clip_features"),
        Mark("RUN_SUCCESS", 21.0),
    ]
    run = segments(marks)
    assert run.seconds["queued"] == run.seconds["launch"] == 0.0  # never queued: execute_job starts it
    assert run.seconds["dispatch"] == pytest.approx(7.5)  # the fresh step process
    assert run.seconds["step_setup"] == pytest.approx(1.0)
    assert run.seconds["pre_work"] == pytest.approx(1.0)
    assert run.wall_s == pytest.approx(20.5)
    assert run.worker is None


def test_work_longer_than_the_step_is_clamped_to_the_step() -> None:
    marks = celery_run(0.0, work=50.0)  # a clock step: the metadata claims more than the step lasted
    run = segments(marks)
    assert run.seconds["pre_work"] == 0.0
    assert run.seconds["work"] == pytest.approx(14.0 - 3.75)
    assert all(v >= 0 for v in run.seconds.values())


def test_a_run_without_its_step_names_what_is_missing() -> None:
    marks = [m for m in celery_run(0.0) if m.kind not in ("RUN_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION")]
    with pytest.raises(ValueError, match="lack RUN_START, ASSET_MATERIALIZATION, STEP_SUCCESS"):
        segments(marks)


def test_mean_segments_and_busy_minus_work() -> None:
    runs = [segments(celery_run(0.0, work=10.0)), segments(celery_run(50.0, work=8.0))]
    means = mean_segments(runs)
    assert means["work"] == pytest.approx(9.0)
    assert means["pre_work"] == pytest.approx((0.25 + 2.25) / 2)
    assert means["busy"] == pytest.approx(11.0)  # picked -> STEP_SUCCESS is 11 s in both
    assert means["busy_minus_work"] == pytest.approx(2.0)
    assert "work_cpu" not in means  # the marks carry no CPU seconds
    assert mean_segments([]) == {}


def test_cpu_per_wall_of_the_extraction() -> None:
    def with_cpu(t0: float, work: float, cpu: float) -> list[Mark]:
        marks = celery_run(t0, work=work)
        return [Mark(m.kind, m.t, m.message, m.step_key, m.work_s, m.worker, cpu) if m.work_s else m for m in marks]

    means = mean_segments([segments(with_cpu(0.0, 10.0, 9.0)), segments(with_cpu(50.0, 8.0, 3.0))])
    assert means["work_cpu"] == pytest.approx(6.0)
    assert means["work_cpu_per_wall"] == pytest.approx(12.0 / 18.0)  # a shared core: 2/3 of it


def test_slot_overhead_counts_idle_slots() -> None:
    # 2 slots, 30 s phase, 4 partitions of 12 s work: 60 slot-seconds, 48 working, 3 s each.
    assert slot_overhead_per_partition(2, 30.0, [12.0] * 4) == pytest.approx(3.0)
    # one partition on two slots: the idle slot is all overhead (the old 22 s figure of --videos 1)
    assert slot_overhead_per_partition(2, 17.6, [13.2]) == pytest.approx(22.0)
    with pytest.raises(ValueError, match="slots"):
        slot_overhead_per_partition(0, 1.0, [1.0])
    with pytest.raises(ValueError, match="partition"):
        slot_overhead_per_partition(2, 1.0, [])


def test_ideal_makespan_is_greedy_list_scheduling_in_submission_order() -> None:
    # 2 slots: A 0-5, B 0-4, then 3 -> B (4-7), 3 -> A (5-8), 1 -> B (7-8): both done at 8.
    assert ideal_makespan([5.0, 4.0, 3.0, 3.0, 1.0], 2) == pytest.approx(8.0)
    # the same partitions shortest first: A 0-1, B 0-3, A 1-4, B 3-7, A 4-9
    assert ideal_makespan([1.0, 3.0, 3.0, 4.0, 5.0], 2) == pytest.approx(9.0)
    assert ideal_makespan([5.0, 4.0, 3.0], 1) == pytest.approx(12.0)
    assert ideal_makespan([5.0], 3) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="slots"):
        ideal_makespan([1.0], 0)
    with pytest.raises(ValueError, match="partition"):
        ideal_makespan([], 2)


def test_orchestration_overhead_leaves_out_the_tail_no_scheduler_avoids() -> None:
    # 6 s and 4 s on 2 slots: a zero-cost scheduler ends at 6 with one slot idle 2 s. A 7 s phase
    # cost 2 slot-seconds beyond it (1 per partition); slot_overhead also counts the 2 s tail.
    assert orchestration_overhead_per_partition(2, 7.0, [6.0, 4.0]) == pytest.approx(1.0)
    assert slot_overhead_per_partition(2, 7.0, [6.0, 4.0]) == pytest.approx(2.0)
    # equal partitions that fill both slots: no unavoidable tail, the two figures agree
    assert orchestration_overhead_per_partition(2, 30.0, [12.0] * 4) == pytest.approx(3.0)


def test_idle_slots_split_into_start_between_and_end() -> None:
    # celery_run(t0) holds its worker from t0 + 3.5 (picked) to t0 + 14.5 (STEP_SUCCESS).
    a1, a2 = segments(celery_run(100.0)), segments(celery_run(112.0))  # worker 0: 103.5-114.5, 115.5-126.5
    b1 = segments(celery_run(101.0, worker="vad-cpu-1@h"))  # worker 1: 104.5-115.5
    assert a1.held == pytest.approx((103.5, 114.5))
    idle = idle_slots([a1, a2, b1], slots=2, start=100.0, end=128.0)
    assert idle["start"] == pytest.approx(3.5 + 4.5)
    assert idle["between"] == pytest.approx(1.0)  # worker 0: 114.5 -> 115.5
    assert idle["end"] == pytest.approx((128.0 - 126.5) + (128.0 - 115.5))
    # a third slot that never got a step idles the whole phase
    assert idle_slots([a1, a2, b1], slots=3, start=100.0, end=128.0)["start"] == pytest.approx(8.0 + 28.0)
