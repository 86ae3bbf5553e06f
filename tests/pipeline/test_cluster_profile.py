"""The cluster profile by configuration, no servers: the profile switch, the rendered dagster.yaml,
the Celery settings shared by executor and workers, GPU routing, worker sizing, tracker errors."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from vad_core.errors import VADInputError
from vad_pipeline.cluster.lifecycle import ClusterSpec
from vad_pipeline.cluster.pg_storage import PooledPostgresStorage, pooled_engine
from vad_pipeline.cluster.profile import (
    QUEUE_TAG,
    active_profile,
    celery_config_source,
    gpu_step_tags,
    render_instance_yaml,
    require,
)
from vad_pipeline.cluster.workers import worker_plan
from vad_pipeline.resources.tracking import MLflowTracker
from vad_pipeline.resources.tracking_errors import TrackingUnavailableError

CELERY_ENV = {"VAD_CELERY_BROKER": "redis://127.0.0.1:1/0", "VAD_CELERY_BACKEND": "redis://127.0.0.1:1/1"}


def test_the_profile_variable() -> None:
    assert active_profile({}) == "local" and active_profile({"VAD_PROFILE": "Cluster"}) == "cluster"
    with pytest.raises(VADInputError, match="VAD_PROFILE='k8s'"):
        active_profile({"VAD_PROFILE": "k8s"})
    with pytest.raises(VADInputError, match="VAD_PG_HOST, VAD_PG_PORT"):
        require(["VAD_PG_HOST", "VAD_PG_PORT"], {})


def test_the_cluster_instance_yaml() -> None:
    config = yaml.safe_load(render_instance_yaml(feature_run_limit=4))
    storage = config["storage"]["custom"]
    assert (storage["module"], storage["class"]) == ("vad_pipeline.cluster.pg_storage", "PooledPostgresStorage")
    db = storage["config"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1: a bare postgresql:// means psycopg 3
    assert db["hostname"] == {"env": "VAD_PG_HOST"} and db["password"] == {"env": "VAD_PG_PASSWORD"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    runs = config["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 5
    assert {(t["value"], t["limit"]) for t in runs["tag_concurrency_limits"]} == {("features", 4), ("training", 1)}
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_celery.launcher", "CeleryRunLauncher")
    assert launcher["config"]["default_queue"] == "vad-runs"
    assert launcher["config"]["config_source"] == celery_config_source({})
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    with pytest.raises(VADInputError):
        render_instance_yaml(0)


def _engine_id_in_a_fork(url: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(id(pooled_engine(url, pool_size=3)))


def test_the_pooled_storage_reads_its_config_and_pools_per_process() -> None:
    # No server: should_autocreate_tables=False, and SQLAlchemy engines connect only when used.
    db = {"username": "vad", "password": "pw", "hostname": "127.0.0.1", "db_name": "dagster", "port": 1}
    config = {"postgres_db": {**db, "params": {}, "scheme": "postgresql+psycopg2"}, "should_autocreate_tables": False}
    storage = PooledPostgresStorage.from_config_value(None, {**config, "pool_size": 3})
    engine = storage.engine
    assert engine.url.drivername == "postgresql+psycopg2" and engine.url.port == 1
    assert engine.pool.size() == 3 and engine.pool._pre_ping  # type: ignore[attr-defined]
    # the run, event-log and schedule storages all query through the one engine
    assert {id(s._engine) for s in (storage._run_storage, storage._event_log_storage, storage._schedule_storage)} == {
        id(engine)
    }
    url = storage.postgres_url
    assert pooled_engine(url, pool_size=3) is engine  # the same process: the same pool
    queue: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()  # type: ignore[type-arg]
    child = multiprocessing.get_context("fork").Process(target=_engine_id_in_a_fork, args=(url, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and queue.get(timeout=5) != id(engine)  # a fork builds its own
    assert pooled_engine(url, pool_size=3) is engine  # and the parent's is untouched
    # dagster.yaml's values are checked against the storage's schema (Dagster's own config check)
    from dagster._config import process_config

    bad = process_config(PooledPostgresStorage.config_type(), {**config, "pool_size": "many"})
    assert not bad.success and "pool_size" in str(bad.errors)


def test_the_cluster_instance_runs_only_the_daemons_the_code_location_uses() -> None:
    from dagster import instance_for_test

    config = yaml.safe_load(render_instance_yaml(feature_run_limit=2))
    # Dagster's own reading of the settings (its config schema and daemon choice), on a test instance
    keys = ("auto_materialize", "freshness", "run_coordinator", "run_monitoring", "run_retries")
    with instance_for_test(overrides={k: config[k] for k in keys}) as instance:
        daemons = set(instance.get_required_daemon_types())
    assert daemons == {
        "SENSOR",
        "BACKFILL",
        "SCHEDULER",
        "QUEUED_RUN_COORDINATOR",
        "MONITORING",
        "EVENT_LOG_CONSUMER",
    }
    with instance_for_test() as default:  # what the switched-off settings remove
        assert {"ASSET", "FRESHNESS_DAEMON"} <= set(default.get_required_daemon_types()) - daemons


def test_celery_settings_the_workers_and_executor_share() -> None:
    source = celery_config_source({"VAD_CELERY_VISIBILITY_TIMEOUT": "60"})
    assert source["task_acks_late"] and source["worker_prefetch_multiplier"] == 1
    assert source["task_reject_on_worker_lost"] is False  # a killed task fails; run retries decide
    assert source["broker_transport_options"] == {"visibility_timeout": 60}
    with pytest.raises(VADInputError, match="VISIBILITY"):
        celery_config_source({"VAD_CELERY_VISIBILITY_TIMEOUT": "soon"})
    assert gpu_step_tags({}) == {} and gpu_step_tags({"VAD_GPU_QUEUE": "gpu"}) == {QUEUE_TAG: "gpu"}


ROUTING = """
import json
from vad_pipeline.definitions import make_definitions
defs = make_definitions()
out = {}
for job in ("features_job", "train_and_score_job"):
    job_def = defs.resolve_job_def(job)
    out[job] = {"executor": job_def.executor_def.name, "tags": dict(job_def.tags),
                "queues": {n.name: n.definition.tags.get("dagster-celery/queue") for n in job_def.graph.nodes}}
from vad_pipeline.cluster import celery_app
out["worker"] = {"acks_late": celery_app.app.conf.task_acks_late, "broker": celery_app.app.conf.broker_url,
                 "tasks": sorted(t for t in celery_app.app.tasks if not t.startswith("celery."))}
print(json.dumps(out))
"""


def _load_code_location(env: dict[str, str]) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("VAD_PROFILE", "VAD_GPU_QUEUE")}
    done = subprocess.run(
        [sys.executable, "-c", ROUTING], env={**base, **env}, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gpu_steps_go_to_the_gpu_queue_when_a_gpu_worker_is_declared() -> None:
    """Routing by configuration: every process loading the code location with VAD_GPU_QUEUE routes alike."""
    gpu = _load_code_location({"VAD_PROFILE": "cluster", "VAD_GPU_QUEUE": "gpu", **CELERY_ENV})
    assert gpu["features_job"]["executor"] == gpu["train_and_score_job"]["executor"] == "vad_celery_executor"
    # Live scoring rides in the features run, on the default queue (scoring one video is light).
    assert gpu["features_job"]["queues"] == {"clip_features": "gpu", "live_scores": None, "live_alerts": None}
    queues = gpu["train_and_score_job"]["queues"]
    assert queues.pop("denoiser") == "gpu" and set(queues.values()) == {None}  # the rest: the default queue
    assert gpu["features_job"]["tags"]["vad/pool"] == "features"
    assert gpu["features_job"]["tags"]["dagster/max_retries"] == "2"
    assert gpu["train_and_score_job"]["tags"] == {"vad/pool": "training"}
    assert gpu["worker"] == {
        "acks_late": True,
        "broker": CELERY_ENV["VAD_CELERY_BROKER"],
        "tasks": ["execute_job", "execute_plan", "resume_job"],
    }
    cpu = _load_code_location({"VAD_PROFILE": "cluster", **CELERY_ENV})
    assert set(cpu["features_job"]["queues"].values()) == {None}
    assert set(cpu["train_and_score_job"]["queues"].values()) == {None}
    local = _load_code_location({"VAD_PROFILE": "local", **CELERY_ENV})
    assert local["features_job"]["executor"] == "in_process"  # the local profile runs steps in the run's process


def test_workers_share_the_cores() -> None:
    spec = ClusterSpec(cpu_workers=2, gpu_workers=1, cores=8).resolved()
    assert (spec["feature_runs"], spec["run_slots"]) == (6, 7)
    plan = worker_plan(SimpleNamespace(state={"spec": spec}))  # type: ignore[arg-type]
    assert [(w["name"], w["queue"], w["concurrency"], w["env"]["threads"]) for w in plan] == [
        ("runs", "vad-runs", 7, 1),
        ("cpu-0", "dagster", 1, 4),
        ("cpu-1", "dagster", 1, 4),
        ("gpu-0", "gpu", 1, 4),
    ]
    two = worker_plan(SimpleNamespace(state={"spec": ClusterSpec(cpu_workers=2, gpu_workers=0, cores=2).resolved()}))  # type: ignore[arg-type]
    assert [w["env"]["threads"] for w in two[1:]] == [1, 1]
    with pytest.raises(VADInputError, match="at least one worker"):
        ClusterSpec(cpu_workers=0, gpu_workers=0).resolved()


def test_an_unreachable_tracking_server_is_one_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = MLflowTracker(tracking_uri=uri, home=str(tmp_path))
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as info:
        with tracker.start_run("x"):
            pass
    assert time.monotonic() - start < 30
    assert str(info.value).startswith(f"MLflow tracking server {uri} is unreachable")


def test_graphql_queries_retry_a_server_error_and_name_the_server_when_it_persists() -> None:
    """After a PostgreSQL restart the webserver's first query fails on its dead pooled connection
    (HTTP 500) and the next one reconnects: read-only queries retry 5xx, a 4xx is not retried."""
    import http.server
    import threading

    from vad_pipeline.cluster.submit import DagsterClient

    answers: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            code = script.pop(0)
            answers.append(code)
            body = json.dumps({"data": {"ok": True}}).encode() if code == 200 else b"no"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = DagsterClient(f"http://127.0.0.1:{server.server_port}")
    try:
        script = [500, 200]
        assert client.graphql("{ ok }") == {"ok": True} and answers == [500, 200]
        script, answers[:] = [500, 502, 503], []
        with pytest.raises(RuntimeError, match=rf"Dagster GraphQL at {client.url}: HTTP 503"):
            client.graphql("{ ok }")
        assert answers == [500, 502, 503]
        script, answers[:] = [400, 200], []
        with pytest.raises(RuntimeError, match="HTTP 400"):
            client.graphql("{ ok }")
        assert answers == [400]
    finally:
        server.shutdown()
        server.server_close()


PRELOAD = """
import json, sys
from celery import signals
from vad_pipeline.cluster import celery_app
before = celery_app.CODE_LOCATION_MODULE in sys.modules
signals.worker_init.send(sender=None)  # what `celery worker` sends in its main process before the pool forks
print(json.dumps({"before": before, "after": celery_app.CODE_LOCATION_MODULE in sys.modules,
                  "module": celery_app.CODE_LOCATION_MODULE}))
"""


def test_workers_import_the_code_location_before_forking_their_pool() -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("VAD_PROFILE", "VAD_GPU_QUEUE")}
    done = subprocess.run(
        [sys.executable, "-c", PRELOAD],
        env={**base, "VAD_PROFILE": "cluster", **CELERY_ENV},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # the module the cluster's code server serves (workers.start_dagster: `dagster code-server -m ...`)
    assert out == {"before": False, "after": True, "module": "vad_pipeline.definitions"}
