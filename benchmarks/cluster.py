"""Scale benchmark of the cluster profile, printed as one JSON object (a benchmark, not a test).

Feature extraction of the Ped2 videos in ../shared/data (all 22 by default, 120-180 frames each),
one Dagster run per video partition that materializes the feature table (`clip_features`; not
features_job's live scoring steps), submitted longest video first:

    celery_2 / celery_1   the cluster profile (Postgres instance, run queue, CeleryRunLauncher, Celery
                          executor, tables in the S3 server) with 2 step workers, then 1, each one
                          process with one torch thread; the new-footage sensor and the schedule are
                          stopped first, so every run in the instance is the benchmark's
    multiprocess_2 / _1   beside it, the single-machine deployment: Dagster's multiprocess executor
                          (a fresh step process per run), a SQLite instance and a local folder, runs
                          orchestrated by 2 (then 1) warm processes, one torch thread

Both kinds are measured the same way: a warm-up (every worker has imported the code location and
loaded the backbone), the tables deleted, then the phase's partitions all at once; the 2-slot
phase first, then the 1-slot one, with the same videos.

Per phase: `wall_s`, `tile_clips_per_s` (= rows of the tables written / wall) and
- `overhead_per_partition_s` = slots x (wall - ideal wall) / videos, the issue's "Dagster + Celery
  overhead per partition" (target < 1 s): `ideal_wall_s` is the wall of a scheduler that costs
  nothing, given the same extraction seconds in the same order (`timeline.ideal_makespan`); what is
  left is dispatch, step setup and teardown, the gaps between steps, idle slots at the start and
  each run's finish, but not the tail that whole-video partitions of unequal length leave any
  scheduler (`unavoidable_idle_slot_s`);
- `slot_overhead_per_partition_s` = (slots x wall - extraction seconds) / videos: every worker-slot
  second not extracting, that tail included (the figure compared with the target until 2026-12-03);
- `step_overhead_per_partition_s` = mean (step worker held the step - extraction): the same cost
  without the idle slots;
- `run_minus_work_s` = mean (run wall - extraction): a run's latency beyond its work (includes
  waiting in the queue for a worker: not a cost of throughput);
- `breakdown_s`: the mean of each consecutive part of a run (vad_pipeline.cluster.timeline).
"Extraction seconds" are the `work_seconds` metadata of clip_features: the extraction call's own
wall time (`extraction_cpu_per_wall`: its CPU seconds over them, whether the step had a core).
`ratio_2_vs_1` = tile-clips/s of 2 slots over 1 slot (target >= 1.7 on 2 cores). `--rounds R`
repeats the Celery phases in mirrored order (2 1 1 2 ...: a drift of the machine's speed during
the benchmark then weighs on both slot counts alike); the first round stays `celery_2` /
`celery_1`, the later phases go to `celery_repeats`, `celery_ratio_2_vs_1` is then over every
round (rows and walls summed per slot count), with `celery_ratio_2_vs_1_by_round` and the mean
2-slot overhead (`celery_overhead_per_partition_s_mean`) beside it. For a 1-slot phase the second
step worker stays up but stops taking step tasks (Celery's `cancel_consumer`; until 2026-12-04 it
was stopped), so its idle CPU shows in that phase's `cpu_s`.
The load average before and after each phase is recorded: on a shared machine other processes
take cores from the 2-slot phase and lower the ratio. Each Celery phase waits (at most 2 minutes)
until the machine is quiet (under a quarter of a core busy over 5 s, `settle`) and records where
the machine's CPU went during it (`cpu_s`, `vad_pipeline.cluster.cpu_usage`): seconds per cluster
component's process group, the benchmark process, everything else (`other_s`), idle and the
hypervisor's steal time.

    python benchmarks/cluster.py [--videos 0] [--backbone i3d] [--phases celery,multiprocess] [--rounds 1]
                                 [--out FILE]

All 22 videos take about 25 minutes on a quiet 2-core machine with I3D (cluster start included; the
multiprocess phases, a fresh step process per run, take the longer part); `--videos 8` about 10;
`--phases celery` or `--phases multiprocess` runs one kind. Progress lines go to stderr, the JSON to
stdout (and `--out`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _output import emit_json  # noqa: E402

from vad_pipeline.automation.jobs import FEATURES_JOB, job_run_config  # noqa: E402
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME  # noqa: E402
from vad_pipeline.cluster.cpu_usage import cpu_between, snapshot, wait_until_quiet  # noqa: E402
from vad_pipeline.cluster.timeline import (  # noqa: E402
    SEGMENT_HELP,
    ideal_makespan,
    idle_slots,
    mean_segments,
    orchestration_overhead_per_partition,
    run_marks,
    segments,
    slot_overhead_per_partition,
)

REPO = Path(__file__).resolve().parents[1]
PED2 = Path(os.environ.get("VAD_SHARED", REPO.parent / "shared")) / "data" / "ucsd_ped2"
SPEC = """\
name: bench
footage_root: {root}
layout: frames
include: {include}
train: all
evaluate: ["none/*"]
"""
Log = Callable[[str], None]
# What a run materializes: the feature table only (the UI's "materialize selected" on clip_features),
# not features_job's live scoring steps, which are scoring, and with no champion in the benchmark
# would only add two empty steps per partition.
EXTRACTION = ("clip_features",)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def choose_videos(n: int) -> tuple[list[str], dict[str, int]]:
    """The Ped2 videos (`n` = 0: all; else the first `n`, sorted), longest first, and their frame counts.

    Longest first is the submission order (the daemon dequeues the oldest run first): the last
    videos to start are the short ones, so the workers' finishing times differ by at most about
    one short video, whatever the lengths (120-180 frames here)."""
    frames = {}
    for split in ("testing", "training"):
        for folder in sorted((PED2 / split / "frames").iterdir()):
            if folder.is_dir():
                frames[f"{split}/frames/{folder.name}"] = len(list(folder.glob("*.jpg")))
    if n < 0 or n == 1 or n > len(frames):
        raise SystemExit(f"--videos {n}: give 0 (all {len(frames)} under {PED2}) or 2..{len(frames)}")
    chosen = sorted(frames)[: n or None]
    # stable: equal lengths keep the sorted order
    return sorted(chosen, key=lambda v: -frames[v]), {v: frames[v] for v in chosen}


def figures(
    slots: int,
    wall: float,
    rows: int,
    instance: Any,
    run_ids: list[str],
    load_before: list[float],
    span: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """One phase's figures (see the module doc) from its wall time, table rows and runs' events.

    `span`: the phase's unix start and end, for where the slots sat idle (`idle_slot_s`)."""
    runs = [segments(run_marks(instance, run_id)) for run_id in run_ids]
    works = [r.seconds["work"] for r in runs]
    means = mean_segments(runs)
    return {
        "slots": slots,
        "videos": len(run_ids),
        "tile_clips": rows,
        "wall_s": round(wall, 2),
        "tile_clips_per_s": round(rows / wall, 3),
        "extraction_s": round(sum(works), 2),
        # CPU seconds per wall second of the extractions (about 1 with 1 torch thread on its own core,
        # a little more with the decoding thread): lower means other processes took the cores.
        "extraction_cpu_per_wall": round(means["work_cpu_per_wall"], 3) if "work_cpu_per_wall" in means else None,
        # the target's figure: slot-seconds beyond a zero-cost scheduler's wall with the same
        # extraction seconds in the same order (what Dagster and Celery add)
        "overhead_per_partition_s": round(orchestration_overhead_per_partition(slots, wall, works), 3),
        # every slot-second not extracting, the unavoidable tail included (this file's figure until 12-03)
        "slot_overhead_per_partition_s": round(slot_overhead_per_partition(slots, wall, works), 3),
        "ideal_wall_s": round(ideal_makespan(works, slots), 2),
        "unavoidable_idle_slot_s": round(slots * ideal_makespan(works, slots) - sum(works), 2),
        "step_overhead_per_partition_s": round(means["busy_minus_work"], 3),
        "run_minus_work_s": round(means["wall"] - means["work"], 3),
        "breakdown_s": {k: round(v, 3) for k, v in means.items()},
        "partitions_per_worker": dict(Counter(r.worker or "step process" for r in runs)),
        # submission order: each partition's extraction seconds and the worker that ran it
        "work_s": [round(w, 3) for w in works],
        "workers": [r.worker or "step process" for r in runs],
        # slot-seconds not holding a step: before the first, between steps, after the last (the tail)
        **({"idle_slot_s": {k: round(v, 2) for k, v in idle_slots(runs, slots, *span).items()}} if span else {}),
        "load_before": load_before,
        "load_after": load(),
    }


def table_rows(store: Any, keys: list[str]) -> int:
    return sum(store.read_table(k, columns=["clip"]).num_rows for k in keys)


# --------------------------------------------------------------------------- Celery (cluster profile)


def stop_automation(cluster: Any) -> None:
    """Stop the new-footage sensor and the retraining schedule (Dagster's CLI, through the cluster's
    code server): their ticks would take CPU and could launch runs of their own during a phase."""
    workspace = str(cluster.root / "workspace.yaml")
    env = {**os.environ, **cluster.env()}
    for kind, name in (("sensor", "new_footage_sensor"), ("schedule", "retraining_schedule")):
        argv = [str(REPO / ".venv" / "bin" / "dagster"), kind, "stop", name, "-w", workspace]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(f"`dagster {kind} stop {name}` failed: {(done.stderr or done.stdout).strip()[-500:]}")


def phase_order(rounds: int) -> list[int]:
    """Slots of each Celery phase: 2 then 1, and for more rounds the mirror image, 2 1 1 2 2 1 ...

    The phases run one after another, so a machine whose speed drifts (another tenant of the host)
    moves the ratio of two phases; mirrored rounds put a linear drift equally on both slot counts."""
    if rounds < 1:
        raise SystemExit(f"--rounds {rounds}: give 1 or more")
    return [s for r in range(rounds) for s in ((2, 1) if r % 2 == 0 else (1, 2))]


def consume(node: str, on: bool) -> None:
    """Make the Celery worker `node` take (or stop taking) tasks from the step queue."""
    from vad_pipeline.cluster.celery_app import app
    from vad_pipeline.cluster.profile import CPU_QUEUE

    control = app.control.add_consumer if on else app.control.cancel_consumer
    replies = control(CPU_QUEUE, destination=[node], reply=True, timeout=10.0)
    if not replies:
        raise SystemExit(f"Celery worker {node}: no reply to {'add' if on else 'cancel'}_consumer {CPU_QUEUE!r}")


def pooled_ratio(result: dict[str, Any], kind: str) -> tuple[float, list[float]]:
    """2-slot over 1-slot tile-clips/s over every round's phases (rows and walls summed), and per round."""
    phases = [result[f"{kind}_2"], result[f"{kind}_1"], *result.get(f"{kind}_repeats", [])]

    def rate(slots: int, chosen: list[dict[str, Any]]) -> float:
        mine = [p for p in chosen if p["slots"] == slots]
        return sum(p["tile_clips"] for p in mine) / sum(p["wall_s"] for p in mine)

    by_round: dict[int, list[dict[str, Any]]] = {}
    for p in phases:
        by_round.setdefault(p.get("round", 1), []).append(p)
    ratios = [rate(2, chosen) / rate(1, chosen) for _, chosen in sorted(by_round.items())]
    return rate(2, phases) / rate(1, phases), ratios


def celery_phases(
    videos: list[str], spec: Path, backbone: str, root: Path, timeout_s: float, rounds: int = 1
) -> dict[str, Any]:
    from dagster import DagsterInstance, RunsFilter

    from vad_pipeline.cluster.lifecycle import Cluster, ClusterSpec
    from vad_pipeline.cluster.submit import ClusterRunner, DagsterClient
    from vad_pipeline.resources import VadStorage

    idle = root / "idle.yaml"  # what the daemon's sensor would watch: nothing (it is stopped anyway)
    idle.write_text("name: idle\nfootage_root: no-footage-here\n")
    before = dict(os.environ)
    os.environ.update(VAD_HOME=str(root / "home_cluster"), VAD_DATASET=str(idle), VAD_BACKBONE=backbone)
    cluster = Cluster(root / "cluster")
    out: dict[str, Any] = {}
    try:
        start = time.monotonic()
        cluster.up(ClusterSpec(cpu_workers=2, gpu_workers=0, cores=2), echo=log)
        stop_automation(cluster)
        out["celery_cluster_up_s"] = round(time.monotonic() - start, 1)
        os.environ.update(cluster.env())
        store = VadStorage().store()
        keys = [f"bench/features/{v}.parquet" for v in videos]
        with DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, videos)
            runner = ClusterRunner(
                DagsterClient(os.environ["VAD_DAGSTER_URL"]),
                instance,
                resources={"dataset": {"spec": str(spec)}, "backbone": {"name": backbone}},
                timeout_s=timeout_s,
            )
            config = job_run_config(FEATURES_JOB, {})
            # Warm-up: each worker process imports the code location and loads the backbone once.
            for attempt in range(3):
                for key in keys:
                    store.delete(key)
                warm = runner.run(FEATURES_JOB, config, partitions=videos[:4], assets=EXTRACTION)
                workers = {segments(run_marks(instance, r.run_id)).worker for r in warm}
                log(f"celery warm-up {attempt + 1}: workers {sorted(map(str, workers))}")
                if len(workers) >= 2:
                    break
            second = cluster.table.processes["worker-cpu-1"].extra["node"]
            for index, slots in enumerate(phase_order(rounds)):
                # The second worker stays up and only stops or resumes taking step tasks (Celery's
                # remote control), so a later round can have it back; its idle CPU is in `cpu_s`.
                consume(second, on=slots == 2)
                for key in keys:
                    store.delete(key)
                settle = wait_until_quiet()
                log(f"celery {slots}: machine settled {settle}")
                groups = {name: p.pgid for name, p in cluster.table.processes.items()}
                groups["benchmark"] = os.getpgrp()
                cpu_before = snapshot(groups)
                load_before, since = load(), time.time()
                start = time.monotonic()
                runs = runner.run(FEATURES_JOB, config, partitions=videos, assets=EXTRACTION)
                wall = time.monotonic() - start
                cpu = cpu_between(cpu_before, snapshot(groups))
                ours = {r.run_id for r in runs}
                phase = figures(
                    slots, wall, table_rows(store, keys), instance, [r.run_id for r in runs], load_before,
                    span=(since, since + wall),
                )  # fmt: skip
                phase["settle"] = settle
                phase["cpu_s"] = cpu
                phase["retried_runs"] = sum(r.attempts > 1 for r in runs)
                others = instance.get_runs(RunsFilter(created_after=_utc(since)))
                phase["other_runs"] = len([r for r in others if r.run_id not in ours and not _retry_of(r, ours)])
                phase["round"] = index // 2 + 1
                if index < 2:
                    out[f"celery_{slots}"] = phase
                else:
                    out.setdefault("celery_repeats", []).append(phase)
                log(f"celery {slots} (round {phase['round']}): {json.dumps(phase)}")
    finally:
        os.environ.clear()
        os.environ.update(before)
        cluster.down(echo=lambda _line: None)
    return out


def _utc(unix: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix, tz=UTC)


def _retry_of(run: Any, ours: set[str]) -> bool:
    return run.tags.get("dagster/root_run_id") in ours


# --------------------------------------------------------------------------- multiprocess executor


def features_job_def() -> Any:
    """The code location's features job with Dagster's multiprocess executor (rebuilt in each step process)."""
    from dagster import multiprocess_executor

    from vad_pipeline.definitions import make_definitions

    return make_definitions(executor=multiprocess_executor).resolve_job_def(FEATURES_JOB)


def _warm_orchestrator() -> None:
    """Pool initializer: import Dagster and the code location once per orchestrating process."""
    features_job_def()


def _one_run(home: str, video: str) -> str:
    """One features run with `execute_job` in this (pool) process; the step in a fresh subprocess.

    Runs are orchestrated in processes, never in threads of one process: two `execute_job` calls
    in threads deadlock in `logging.config.dictConfig` (the instance's python-log handlers are
    configured per run while the other thread's run holds a handler's lock)."""
    from dagster import AssetKey, DagsterInstance, build_reconstructable_job, execute_job

    # By module name (this file as `benchmarks.cluster`): in a spawned pool process this module is
    # `__mp_main__`, which reconstructable() would hand to the step process as a module to import.
    job = build_reconstructable_job("benchmarks.cluster", "features_job_def", reconstructor_working_directory=str(REPO))
    with DagsterInstance.from_config(home) as instance:
        result = execute_job(
            job,
            instance,
            run_config=job_run_config(FEATURES_JOB, {}),
            tags={"dagster/partition": video},
            asset_selection=[AssetKey(a) for a in EXTRACTION],
        )
        if not result.success:
            raise RuntimeError(f"multiprocess run for {video} failed (Dagster run {result.run_id} in {home})")
        return str(result.run_id)


def multiprocess_phases(videos: list[str], spec: Path, backbone: str, root: Path, timeout_s: float) -> dict[str, Any]:
    from dagster import DagsterInstance

    from vad_core.io.store import LocalTableStore
    from vad_pipeline.cli.instance import init_dagster_home

    home = init_dagster_home(root / "dagster_local")
    tables = root / "tables"
    env = {
        "VAD_PROFILE": "local",
        "VAD_DATASET": str(spec),
        "VAD_BACKBONE": backbone,
        "VAD_DEVICE": "cpu",
        "VAD_STORE": str(tables),
        "VAD_HOME": str(root / "home_local"),
        "OMP_NUM_THREADS": "1",  # every step process: one torch thread
        "MKL_NUM_THREADS": "1",
        "DAGSTER_HOME": str(home),
    }
    before = dict(os.environ)
    os.environ.update(env)
    for name in [k for k in os.environ if k.startswith(("VAD_PG_", "VAD_CELERY_", "AWS_ENDPOINT"))]:
        os.environ.pop(name)
    out: dict[str, Any] = {}
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, videos)
        store = LocalTableStore(tables)
        keys = [f"bench/features/{v}.parquet" for v in videos]
        spawn = multiprocessing.get_context("spawn")  # fresh interpreters with this environment
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn, initializer=_warm_orchestrator) as pool:

            def phase_runs(slots: int, chosen: list[str]) -> list[str]:
                # `slots` runs in flight at once, each in one of the pool's processes.
                with concurrent.futures.ThreadPoolExecutor(slots) as waiters:
                    futures = [
                        waiters.submit(lambda v: pool.submit(_one_run, str(home), v).result(), v) for v in chosen
                    ]
                    return [f.result(timeout=timeout_s) for f in futures]

            phase_runs(2, videos[:2])  # warm-up: both orchestrators imported, the OS file cache
            for slots in (2, 1):
                for key in keys:
                    store.delete(key)
                load_before = load()
                start = time.monotonic()
                run_ids = phase_runs(slots, videos)
                wall = time.monotonic() - start
                with DagsterInstance.from_config(str(home)) as instance:
                    phase = figures(slots, wall, table_rows(store, keys), instance, run_ids, load_before)
                out[f"multiprocess_{slots}"] = phase
                log(f"multiprocess {slots}: {json.dumps(phase)}")
    finally:
        os.environ.clear()
        os.environ.update(before)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=0, help="the first N Ped2 videos (default 0: all)")
    parser.add_argument("--backbone", default="i3d")
    parser.add_argument("--phases", default="celery,multiprocess")
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound of one phase's runs, seconds")
    parser.add_argument(
        "--rounds", type=int, default=1, help="Celery rounds of 2 and 1 workers, mirrored (2 1 1 2 ...)"
    )
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    videos, frames = choose_videos(args.videos)
    result: dict[str, Any] = {
        "benchmark": "cluster feature extraction, 1 vs 2 slots",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "videos": videos,
        "frames": frames,
        "assets": list(EXTRACTION),
        "backbone": args.backbone,
        "torch_threads_per_worker": 1,
        "cpus": os.cpu_count(),
        "host": platform.node(),
        "load_before": load(),
    }
    with tempfile.TemporaryDirectory(prefix="vad-bench-cluster-") as tmp:
        root = Path(tmp)
        spec = root / "bench.yaml"
        spec.write_text(SPEC.format(root=PED2, include=json.dumps(videos)))
        phases = [p.strip() for p in args.phases.split(",") if p.strip()]
        unknown = sorted(set(phases) - {"celery", "multiprocess"})
        if unknown:
            raise SystemExit(f"--phases: unknown {unknown} (celery, multiprocess)")
        if "celery" in phases:
            result.update(celery_phases(videos, spec, args.backbone, root, args.timeout, args.rounds))
        if "multiprocess" in phases:
            result.update(multiprocess_phases(videos, spec, args.backbone, root, args.timeout))
    for kind in ("celery", "multiprocess"):
        if f"{kind}_1" in result:
            ratio, by_round = pooled_ratio(result, kind)
            result[f"{kind}_ratio_2_vs_1"] = round(ratio, 3)
            if len(by_round) > 1:
                result[f"{kind}_ratio_2_vs_1_by_round"] = [round(r, 3) for r in by_round]
                two = [p for p in [result[f"{kind}_2"], *result[f"{kind}_repeats"]] if p["slots"] == 2]
                result[f"{kind}_overhead_per_partition_s_mean"] = round(
                    sum(p["overhead_per_partition_s"] for p in two) / len(two), 3
                )
    result["targets"] = {"ratio_2_vs_1": ">= 1.7", "overhead_per_partition_s": "< 1"}
    result["breakdown_help"] = SEGMENT_HELP
    result["load_after"] = load()
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
