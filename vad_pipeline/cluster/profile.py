"""The deployment profile: `VAD_PROFILE=local` (default) or `cluster`, and what the cluster one changes.

local:   SQLite Dagster instance, the multiprocess executor, tables under VAD_HOME, MLflow in SQLite.
cluster: Dagster instance storage in PostgreSQL with the run queue (`dagster.yaml` beside this file),
         runs launched as Celery tasks and their steps executed by Celery workers on a Redis broker,
         tables in an object store (`VAD_STORE=s3://...`), an MLflow tracking server.

Both profiles run the same code location; only the instance, the executor and the variables
differ. Every setting of the cluster profile is an environment variable (`CLUSTER_VARIABLES`), so
`make cluster-up` (cluster.env) and a Kubernetes deployment (docs/deploy.md) configure it alike.

Queues: runs go to `RUN_QUEUE`, steps to Celery's `dagster` queue, and the steps that want a GPU
(feature extraction, training) to `VAD_GPU_QUEUE` when that variable names one, i.e. when a GPU
worker pool exists. The queue is a step tag (`dagster-celery/queue`) set where the assets are
defined, so every process that loads the code location with the same variables routes alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from vad_core.errors import VADInputError

PROFILE_VARIABLE = "VAD_PROFILE"
PROFILES = ("local", "cluster")

RUN_QUEUE = "vad-runs"  # run workers: orchestrate runs (light, several per worker)
CPU_QUEUE = "dagster"  # dagster-celery's default step queue
QUEUE_TAG = "dagster-celery/queue"
POOL_TAG = "vad/pool"  # the run queue's tag limits (dagster.yaml): features | training

# name -> what it holds; docs/deploy.md sets the same names on Kubernetes.
CLUSTER_VARIABLES = {
    "VAD_PROFILE": "cluster",
    "DAGSTER_HOME": "folder of the cluster dagster.yaml (rendered by render_instance_yaml)",
    "VAD_PG_HOST": "PostgreSQL host of the Dagster instance",
    "VAD_PG_PORT": "its port",
    "VAD_PG_USER": "its user",
    "VAD_PG_PASSWORD": "its password",
    "VAD_PG_DAGSTER_DB": "the Dagster database",
    "VAD_CELERY_BROKER": "Celery broker URL (redis://...)",
    "VAD_CELERY_BACKEND": "Celery result backend URL (redis://...)",
    "VAD_GPU_QUEUE": "the GPU workers' queue; unset when there are none (then everything runs on CPU workers)",
    "VAD_TORCH_THREADS": "torch threads of one worker process (its share of the cores)",
    "VAD_STORE": "where tables, checkpoints and reports live (s3://bucket/prefix)",
    "AWS_ENDPOINT_URL": "the S3 API's URL (unset for AWS S3)",
    "AWS_ACCESS_KEY_ID": "object store credentials",
    "AWS_SECRET_ACCESS_KEY": "object store credentials",
    "AWS_REGION": "the bucket's region",
    "MLFLOW_TRACKING_URI": "the MLflow tracking server (http://...)",
    "VAD_DAGSTER_URL": "the Dagster webserver (runs are submitted through its GraphQL API)",
}


def active_profile(env: Mapping[str, str] | None = None) -> str:
    """`VAD_PROFILE` ("local" when unset); `VADInputError` naming the value otherwise."""
    env = os.environ if env is None else env
    value = (env.get(PROFILE_VARIABLE) or "local").strip().lower()
    if value not in PROFILES:
        raise VADInputError(f"{PROFILE_VARIABLE}={env.get(PROFILE_VARIABLE)!r}: expected one of {list(PROFILES)}")
    return value


def is_cluster(env: Mapping[str, str] | None = None) -> bool:
    return active_profile(env) == "cluster"


def require(names: list[str] | tuple[str, ...], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of `names`; one `VADInputError` naming every missing variable."""
    env = os.environ if env is None else env
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise VADInputError(
            f"VAD_PROFILE=cluster needs {', '.join(missing)} (make cluster-up writes them to cluster.env)"
        )
    return {n: env[n] for n in names}


# --------------------------------------------------------------------------- Celery


def celery_config_source(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Celery settings shared by the executor, the run launcher and the workers (they must agree)."""
    env = os.environ if env is None else env
    visibility = env.get("VAD_CELERY_VISIBILITY_TIMEOUT") or "21600"
    if not visibility.isdigit():
        raise VADInputError(f"VAD_CELERY_VISIBILITY_TIMEOUT={visibility!r}: expected seconds")
    return {
        # A worker takes one task at a time and acknowledges it when done: an idle worker is never
        # starved by a busy one that prefetched (fan-out of long steps), and a task whose worker
        # vanished entirely is delivered again after the visibility timeout.
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        # A pool process killed mid-task (kill -9, OOM) fails the task (WorkerLostError) instead of
        # requeueing it forever: the run fails and the run-retry policy (dagster/max_retries) decides.
        "task_reject_on_worker_lost": False,
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        # Must exceed the longest step (one video's extraction): an unacknowledged task older than
        # this is handed to another worker (default 6 h).
        "broker_transport_options": {"visibility_timeout": int(visibility)},
        "result_expires": 7 * 24 * 3600,
    }


def celery_app_args(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Broker, backend and settings of the Celery app, exactly as the Dagster executor builds them."""
    from dagster_celery.executor import CeleryExecutor

    values = require(["VAD_CELERY_BROKER", "VAD_CELERY_BACKEND"], env)
    executor = CeleryExecutor.for_cli(
        broker=values["VAD_CELERY_BROKER"],
        backend=values["VAD_CELERY_BACKEND"],
        config_source=celery_config_source(env),
    )
    return executor.app_args()


def gpu_queue(env: Mapping[str, str] | None = None) -> str | None:
    """The GPU workers' queue (`VAD_GPU_QUEUE`), or None when no GPU worker pool exists."""
    env = os.environ if env is None else env
    return (env.get("VAD_GPU_QUEUE") or "").strip() or None


def gpu_step_tags(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Op tags of a step that wants a GPU: route it to the GPU queue when there is one, else none."""
    queue = gpu_queue(env)
    return {QUEUE_TAG: queue} if queue else {}


def profile_executor(env: Mapping[str, str] | None = None) -> Any:
    """The executor of the code location: None (Dagster's multiprocess default) or the Celery executor."""
    if not is_cluster(env):
        return None
    from dagster_celery import celery_executor

    # Broker and backend stay {"env": ...} so that the run's stored config carries no secrets.
    return celery_executor.configured(
        {
            "broker": {"env": "VAD_CELERY_BROKER"},
            "backend": {"env": "VAD_CELERY_BACKEND"},
            "config_source": celery_config_source(env),
        },
        name="vad_celery_executor",
    )


# --------------------------------------------------------------------------- Dagster instance


def render_instance_yaml(feature_run_limit: int, max_concurrent_runs: int | None = None) -> str:
    """The cluster profile's dagster.yaml with its run limits filled in (servers stay `env:` references)."""
    if feature_run_limit < 1:
        raise VADInputError(f"feature run limit must be >= 1, got {feature_run_limit}")
    total = max_concurrent_runs if max_concurrent_runs is not None else feature_run_limit + 1
    template = resources.files("vad_pipeline.cluster").joinpath("dagster.yaml").read_text()
    return template.format(
        feature_run_limit=int(feature_run_limit),
        max_concurrent_runs=int(total),
        run_queue=RUN_QUEUE,
        celery_config_source=json.dumps(celery_config_source()),
    )


__all__ = [
    "CLUSTER_VARIABLES",
    "CPU_QUEUE",
    "POOL_TAG",
    "PROFILES",
    "PROFILE_VARIABLE",
    "QUEUE_TAG",
    "RUN_QUEUE",
    "active_profile",
    "celery_app_args",
    "celery_config_source",
    "gpu_queue",
    "gpu_step_tags",
    "is_cluster",
    "profile_executor",
    "render_instance_yaml",
    "require",
]
