"""The Celery app the cluster's workers run: `celery -A vad_pipeline.cluster.celery_app worker -Q ...`.

It is dagster-celery's app (the same three tasks: `execute_plan` runs steps, `execute_job` and
`resume_job` run whole runs for the `CeleryRunLauncher`), configured from the cluster variables
exactly as the executor and the run launcher configure theirs (`profile.celery_app_args`), plus two
things of ours:

- each worker process runs torch with `VAD_TORCH_THREADS` threads, its share of the machine's
  cores, so N workers on a machine do not each start one thread per core;
- a run task waits for its step tasks inside `celery.result.allow_join_result()`. dagster-celery's
  run task orchestrates the run with the Celery executor, which waits on the step tasks' results,
  and Celery refuses a wait inside a task unless told it is safe (dagster-io/dagster#29660: without
  this, every run the `CeleryRunLauncher` starts fails). It is safe here because runs and steps are
  on different queues served by different workers: a run never waits for a slot it holds itself;
- the worker's main process imports the code location (`worker_init`) before it forks its pool, so
  the pool processes that run and step tasks start warm.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from celery import Celery, signals
from celery.result import allow_join_result
from dagster_celery.config import TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from vad_pipeline.cluster.profile import celery_app_args

CODE_LOCATION_MODULE = "vad_pipeline.definitions"  # what the code server loads (`dagster code-server -m`)


def torch_threads() -> int | None:
    """`VAD_TORCH_THREADS` as a positive int, or None when unset."""
    value = os.environ.get("VAD_TORCH_THREADS")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"VAD_TORCH_THREADS={value!r}: expected a positive integer")
    return int(value)


def apply_torch_threads() -> None:
    """Set torch's intra-op threads to this worker's share (no-op when `VAD_TORCH_THREADS` is unset)."""
    threads = torch_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@signals.worker_init.connect
def _preload_code_location(**_: object) -> None:
    # In the worker's main process, before its prefork pool starts: every pool process is forked
    # with Dagster, torch and the code location already imported, so no run or step pays a cold
    # import (a fresh run-worker process took 15-22 s of a loaded 2-core machine on its first run).
    # Imports only: no torch op runs here, so no OpenMP thread pool exists to break in the fork.
    importlib.import_module(CODE_LOCATION_MODULE)


@signals.worker_process_init.connect
def _worker_process_init(**_: object) -> None:
    # Prefork pool processes: set the threads in each process that executes tasks.
    apply_torch_threads()


app = make_app(celery_app_args())
execute_plan = create_task(app)

# dagster-celery's run tasks, registered on a private app only to reach their functions; the
# worker serves them under their own names, wrapped (see the module doc).
_dagster_tasks = Celery("vad-dagster-run-tasks", set_as_current=False)
# (shared=False: Celery would otherwise register a task on every app, ours included.)
# (dagster_celery annotates **task_kwargs as dicts; they are Celery's task options, booleans included.)
_execute_job = create_execute_job_task(_dagster_tasks, shared=False)  # type: ignore[arg-type]
_resume_job = create_resume_job_task(_dagster_tasks, shared=False)  # type: ignore[arg-type]


@app.task(bind=True, name=TASK_EXECUTE_JOB_NAME, track_started=True, shared=False)
def execute_job(self: Any, execute_job_args_packed: Any) -> int:
    with allow_join_result():
        return int(_execute_job.run(execute_job_args_packed))


@app.task(bind=True, name=TASK_RESUME_JOB_NAME, track_started=True, shared=False)
def resume_job(self: Any, resume_job_args_packed: Any) -> int:
    with allow_join_result():
        return int(_resume_job.run(resume_job_args_packed))


apply_torch_threads()  # the solo pool executes in this process


__all__ = [
    "CODE_LOCATION_MODULE",
    "app",
    "apply_torch_threads",
    "execute_job",
    "execute_plan",
    "resume_job",
    "torch_threads",
]
