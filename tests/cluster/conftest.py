"""One real cluster for the cluster tests (marked `cluster`): PostgreSQL, Redis, moto, MLflow, the
Dagster code server, daemon and webserver, a run worker and 2 step workers, all on free 127.0.0.1
ports, up for this package only and taken down by its last test (test_zz_down.py).

The workers default to the weight-free `pixelstats-2` backbone, and the daemon's own dataset
(VAD_DATASET, what the new-footage sensor watches) is one without footage: the tests launch every
run themselves, and the sensor's ticks skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterInstance

from vad_pipeline.cli.demo import PipelineSummary, materialize_all
from vad_pipeline.cluster.lifecycle import Cluster, ClusterSpec
from vad_pipeline.cluster.processes import group_alive
from vad_pipeline.cluster.submit import ClusterRunner, DagsterClient
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import VadStorage
from vad_pipeline.specs import ensure_footage, load_spec

BACKBONE = "pixelstats-2"
# The demo dataset with a quick training: the comparison is of the two profiles, not of the model
# (the "single" preset: one denoiser, not the default robust screen + seed ensemble).
QUICK = {
    "denoiser": {
        "recipe": "single",
        "epochs": 3,
        "hidden": [64, 32],
        "min_steps_per_epoch": 5,
        "batch_size": 256,
        "fourier_features": 16,
        "patience": 0,
    },
    "segment_scores": {"n_draws": 2},
    "baseline_scores": {"pca_components": 4, "gcl_epochs": 2, "gcl_d_epochs": 2, "iforest_estimators": 20, "knn_k": 3},
}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block only (the other tests must not see the cluster profile)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = [tool for tool in ("redis-server",) if shutil.which(tool) is None]
    if missing and os.geteuid() != 0:
        pytest.skip(f"{missing} not installed and not root to install them")
    home = tmp_path_factory.mktemp("cluster-home")
    idle = home / "idle.yaml"
    idle.write_text("name: idle\nfootage_root: no-footage-here\n")
    settings = {
        "VAD_HOME": str(home),
        "VAD_DATASET": str(idle),
        "VAD_BACKBONE": BACKBONE,
        "VAD_DEVICE": "cpu",
        # A frozen object store fails a request in ~8 s here (two attempts of a 4 s stall limit).
        "VAD_S3_REQUEST_TIMEOUT": "4",
        "VAD_S3_MAX_ATTEMPTS": "2",
    }
    with environment(settings):
        cluster = Cluster(home / "cluster")
        cluster.up(ClusterSpec(cpu_workers=2, gpu_workers=0, cores=2), echo=print)
    try:
        yield cluster
    finally:
        if cluster.table.processes:
            cluster.down(echo=lambda _line: None)


@pytest.fixture(scope="package")
def cluster_demo(cluster: Cluster) -> PipelineSummary:
    """The demo dataset materialized on the cluster once (QUICK settings); later tests build on it."""
    env = cluster.env()
    spec = load_spec("demo", home=Path(env["VAD_HOME"]))
    ensure_footage(spec)
    with environment({**env, "VAD_BACKBONE": BACKBONE, "VAD_DATASET": "demo"}):
        with DagsterInstance.get() as instance:
            runner = ClusterRunner(
                DagsterClient(env["VAD_DAGSTER_URL"]),
                instance,
                resources={"dataset": {"spec": "demo"}, "backbone": {"name": BACKBONE}},
                timeout_s=900,
            )
            return materialize_all(make_definitions(), instance, spec, VadStorage(), QUICK, runner=runner)


@pytest.fixture
def cluster_env(cluster: Cluster) -> Iterator[dict[str, str]]:
    """The cluster profile's variables in os.environ for one test."""
    env = {**cluster.env(), "VAD_BACKBONE": BACKBONE, "VAD_DEVICE": "cpu"}
    with environment(env):
        yield env


def worker_pool_pid(cluster: Cluster, node: str, timeout: float = 30) -> int:
    """The pool process of the step worker named `node` (the process that executes its tasks)."""
    record = next(p for p in cluster.table.processes.values() if p.extra.get("node") == node)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(record.pid)], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.2)
    raise AssertionError(f"no pool process under {node} (pid {record.pid})")


def alive(pgid: int) -> bool:
    return group_alive(pgid)


def pgrep(*args: str) -> list[str]:
    done = subprocess.run(["pgrep", *args], capture_output=True, text=True)
    return done.stdout.split()


def footage_copy(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target / source.name)
    return target
