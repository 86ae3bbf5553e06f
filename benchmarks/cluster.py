"""Scale benchmark of the cluster profile, printed as one JSON object (a benchmark, not a test).

Feature extraction of Ped2 videos from ../shared/data, one Dagster run per video partition:

    celery_2 / celery_1   the cluster profile (Postgres instance, run queue, CeleryRunLauncher, Celery
                          executor, tables in the S3 server) with 2 step workers, then 1, each with one
                          torch thread
    multiprocess_2 / _1   the single-machine deployment beside it: Dagster's multiprocess executor, a
                          SQLite instance and a local folder, 2 then 1 runs at a time, one torch thread

For each: tile-clips/s over the phase's wall time, and the Dagster (+ Celery) overhead per
partition two ways: `overhead_per_partition_s` = (slots x wall - extraction seconds) / videos, the
worker time a partition costs beyond its extraction (target < 1 s); and `run_minus_work_s`, a
run's own wall time minus its extraction (latency, not throughput). `ratio_2_vs_1` is the 2-slot
throughput over the 1-slot one (target >= 1.7 on 2 cores). The host's load average is recorded:
on a shared machine other processes lower the ratio.

    python benchmarks/cluster.py [--videos 4] [--backbone i3d] [--phases celery,multiprocess]

`--videos N` takes the first N Ped2 videos of 180 frames (equal work per video); 4 runs in about
5 minutes on a quiet 2-core machine with I3D.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vad_pipeline.automation.jobs import FEATURES_JOB, job_run_config  # noqa: E402
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME  # noqa: E402

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


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def choose_videos(n: int) -> list[str]:
    """The first `n` video ids (sorted) whose folders hold 180 frames."""
    ids = []
    for split in ("testing", "training"):
        for folder in sorted((PED2 / split / "frames").iterdir()):
            if folder.is_dir() and len(list(folder.glob("*.jpg"))) == 180:
                ids.append(f"{split}/frames/{folder.name}")
    if len(ids) < n:
        raise SystemExit(f"only {len(ids)} Ped2 videos of 180 frames under {PED2}")
    return ids[:n]


def figures(slots: int, wall: float, rows: int, works: list[float], runs: list[float]) -> dict[str, Any]:
    n = len(works)
    return {
        "slots": slots,
        "videos": n,
        "tile_clips": rows,
        "wall_s": round(wall, 2),
        "tile_clips_per_s": round(rows / wall, 3),
        "extraction_s": round(sum(works), 2),
        "overhead_per_partition_s": round((slots * wall - sum(works)) / n, 3),
        "run_minus_work_s": round(sum(r - w for r, w in zip(runs, works, strict=True)) / n, 3),
    }


def table_rows(store: Any, keys: list[str]) -> int:
    return sum(store.read_table(k, columns=["clip"]).num_rows for k in keys)


# --------------------------------------------------------------------------- Celery (cluster profile)


def celery_phases(videos: list[str], spec: Path, backbone: str, root: Path) -> dict[str, Any]:
    from dagster import DagsterInstance

    from vad_pipeline.cluster.lifecycle import Cluster, ClusterSpec
    from vad_pipeline.cluster.submit import ClusterRunner, DagsterClient
    from vad_pipeline.resources import VadStorage

    cluster = Cluster(root / "cluster")
    cluster.up(ClusterSpec(cpu_workers=2, gpu_workers=0, cores=2), echo=lambda line: print(line, file=sys.stderr))
    out: dict[str, Any] = {}
    before = dict(os.environ)
    try:
        os.environ.update(cluster.env())
        store = VadStorage().store()
        keys = [f"bench/features/{v}.parquet" for v in videos]
        with DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, videos)
            runner = ClusterRunner(
                DagsterClient(os.environ["VAD_DAGSTER_URL"]),
                instance,
                resources={"dataset": {"spec": str(spec)}, "backbone": {"name": backbone}},
                timeout_s=3000,
            )
            config = job_run_config(FEATURES_JOB, {})
            for key in keys:
                store.delete(key)
            runner.run(FEATURES_JOB, config, partitions=videos[: min(4, len(videos))])  # warm-up: code, weights
            for slots in (2, 1):
                if slots == 1:
                    cluster.stop("worker-cpu-1")
                for key in keys:
                    store.delete(key)
                start = time.monotonic()
                runs = runner.run(FEATURES_JOB, config, partitions=videos)
                wall = time.monotonic() - start
                works, walls = [r.work_s for r in runs], [r.wall_s for r in runs]
                out[f"celery_{slots}"] = figures(slots, wall, table_rows(store, keys), works, walls)
                print(f"celery {slots}: {out[f'celery_{slots}']}", file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(before)
        cluster.down(echo=lambda _line: None)
    return out


# --------------------------------------------------------------------------- multiprocess executor


def features_job_def() -> Any:
    """The code location's features job (local profile: the multiprocess executor), for reconstructable()."""
    from vad_pipeline.definitions import make_definitions

    return make_definitions().resolve_job_def(FEATURES_JOB)


def _one_run(home: str, video: str) -> tuple[float, float]:
    """One features run with `execute_job` (the run orchestrated here, the step in a subprocess)."""
    from dagster import DagsterInstance, execute_job, reconstructable

    from vad_pipeline.cluster.submit import work_seconds

    with DagsterInstance.from_config(home) as instance:
        start = time.monotonic()
        result = execute_job(
            reconstructable(features_job_def),
            instance,
            run_config=job_run_config(FEATURES_JOB, {}),
            tags={"dagster/partition": video},
        )
        wall = time.monotonic() - start
        if not result.success:
            raise RuntimeError(f"multiprocess run for {video} failed")
        return wall, work_seconds(instance, result.run_id)


def multiprocess_phases(videos: list[str], spec: Path, backbone: str, root: Path) -> dict[str, Any]:
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
        "OMP_NUM_THREADS": "1",  # each run's step process: one torch thread
        "MKL_NUM_THREADS": "1",
        "DAGSTER_HOME": str(home),
    }
    before = dict(os.environ)
    os.environ.update(env)
    os.environ.pop("VAD_PG_HOST", None)
    out: dict[str, Any] = {}
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, videos)
        store = LocalTableStore(tables)
        keys = [f"bench/features/{v}.parquet" for v in videos]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # warm-up: the OS file cache, the weights
            list(pool.map(lambda v: _one_run(str(home), v), videos[: min(2, len(videos))]))
        for slots in (2, 1):
            for key in keys:
                store.delete(key)
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(slots) as pool:
                results = list(pool.map(lambda v: _one_run(str(home), v), videos))
            wall = time.monotonic() - start
            walls, works = [r[0] for r in results], [r[1] for r in results]
            out[f"multiprocess_{slots}"] = figures(slots, wall, table_rows(store, keys), works, walls)
            print(f"multiprocess {slots}: {out[f'multiprocess_{slots}']}", file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(before)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="Ped2 videos of 180 frames to extract (default 4)")
    parser.add_argument("--backbone", default="i3d")
    parser.add_argument("--phases", default="celery,multiprocess")
    args = parser.parse_args()
    videos = choose_videos(args.videos)
    result: dict[str, Any] = {
        "benchmark": "cluster feature extraction, 1 vs 2 slots",
        "videos": videos,
        "backbone": args.backbone,
        "cpus": os.cpu_count(),
        "host": platform.node(),
        "load_before": load(),
    }
    with tempfile.TemporaryDirectory(prefix="vad-bench-cluster-") as tmp:
        root = Path(tmp)
        spec = root / "bench.yaml"
        spec.write_text(SPEC.format(root=PED2, include=json.dumps(videos)))
        phases = [p.strip() for p in args.phases.split(",") if p.strip()]
        if "celery" in phases:
            result.update(celery_phases(videos, spec, args.backbone, root))
        if "multiprocess" in phases:
            result.update(multiprocess_phases(videos, spec, args.backbone, root))
    for kind in ("celery", "multiprocess"):
        if f"{kind}_1" in result:
            one, two = result[f"{kind}_1"]["tile_clips_per_s"], result[f"{kind}_2"]["tile_clips_per_s"]
            result[f"{kind}_ratio_2_vs_1"] = round(two / one, 3)
    result["targets"] = {"ratio_2_vs_1": ">= 1.7", "overhead_per_partition_s": "< 1"}
    result["load_after"] = load()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
