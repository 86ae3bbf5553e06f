"""The Dagster processes and Celery workers of the cluster profile (the servers are in `services.py`).

Dagster      a code server, `dagster-daemon` (run queue, sensors, schedules, run retries, run
             monitoring) and `dagster-webserver` (the UI; runs are submitted through its GraphQL API),
             the daemon and the webserver sharing the one code server over gRPC
Celery       a run worker (queue vad-runs: runs launched by the CeleryRunLauncher, one pool process
             per run slot) and step workers (queue dagster; the GPU queue when GPU workers are
             declared), one pool process each with `VAD_TORCH_THREADS` = its share of the cores
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from vad_pipeline.cluster.processes import ClusterContext, Process
from vad_pipeline.cluster.profile import CPU_QUEUE, RUN_QUEUE
from vad_pipeline.cluster.services import get, venv_tool


def write_workspace(cluster: ClusterContext) -> Path:
    """The workspace of the daemon and the webserver: the one code server, over gRPC."""
    path = cluster.root / "workspace.yaml"
    path.write_text(
        "# Written by vad_pipeline.cluster: the daemon and the webserver share one code server.\n"
        "load_from:\n"
        "  - grpc_server:\n"
        "      host: 127.0.0.1\n"
        f"      port: {cluster.ports['code-server']}\n"
        "      location_name: vad_pipeline\n"
    )
    return path


def start_dagster(cluster: ClusterContext) -> list[Process]:
    """Code server, daemon and webserver (started together; `wait_dagster` waits for all three)."""
    env, workspace = cluster.env(), str(write_workspace(cluster))
    code_port, web_port = cluster.ports["code-server"], cluster.ports["webserver"]
    full = {**cluster.base_env(), **env}
    return [
        cluster.table.start(
            "code-server",
            [
                venv_tool("dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(code_port),
                "-m",
                "vad_pipeline.definitions",
                "--location-name",
                "vad_pipeline",
            ],
            full,
            cluster.log("code-server"),
            port=code_port,
            cwd=cluster.repo,
        ),
        cluster.table.start(
            "daemon",
            [venv_tool("dagster-daemon"), "run", "-w", workspace],
            full,
            cluster.log("daemon"),
            cwd=cluster.repo,
        ),
        cluster.table.start(
            "webserver",
            [venv_tool("dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace],
            full,
            cluster.log("webserver"),
            port=web_port,
            url=env["VAD_DAGSTER_URL"],
            cwd=cluster.repo,
        ),
    ]


def wait_dagster(cluster: ClusterContext, timeout: float = 300) -> None:
    from vad_pipeline.cluster.submit import DagsterClient

    client = DagsterClient(cluster.env()["VAD_DAGSTER_URL"])
    cluster.table.wait_until("webserver", lambda: bool(get(f"{client.url}/server_info")), timeout, "serving")
    cluster.table.wait_until("code-server", client.location_loaded, timeout, "loaded in the webserver")
    cluster.table.wait_until("daemon", client.daemon_healthy, timeout, "healthy (run queue)")


# --------------------------------------------------------------------------- Celery workers


def worker_plan(cluster: ClusterContext) -> list[dict[str, Any]]:
    """One entry per worker: name, queue, pool size and environment (threads: its share of the cores)."""
    spec = cluster.state["spec"]
    cores = max(1, int(spec["cores"]))
    cpu, gpu = int(spec["cpu_workers"]), int(spec["gpu_workers"])
    share = max(1, cores // max(1, cpu))
    plan = [{"name": "runs", "queue": RUN_QUEUE, "concurrency": int(spec["run_slots"]), "env": {"threads": 1}}]
    plan += [{"name": f"cpu-{i}", "queue": CPU_QUEUE, "concurrency": 1, "env": {"threads": share}} for i in range(cpu)]
    plan += [
        {"name": f"gpu-{i}", "queue": spec["gpu_queue"], "concurrency": 1, "env": {"threads": share, "gpu": i}}
        for i in range(gpu)
    ]
    return plan


def start_workers(cluster: ClusterContext) -> list[Process]:
    records = []
    for worker in worker_plan(cluster):
        threads = str(worker["env"]["threads"])
        env = {
            **cluster.base_env(),
            **cluster.env(),
            "VAD_TORCH_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
        if "gpu" in worker["env"]:
            env.update(VAD_DEVICE="cuda", CUDA_VISIBLE_DEVICES=str(worker["env"]["gpu"]))
        name = f"worker-{worker['name']}"
        argv = [
            venv_tool("celery"),
            "-A",
            "vad_pipeline.cluster.celery_app",
            "worker",
            "-Q",
            worker["queue"],
            "-c",
            str(worker["concurrency"]),
            "-n",
            f"vad-{worker['name']}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "-O",
            "fair",
        ]
        records.append(cluster.table.start(name, argv, env, cluster.log(name), cwd=cluster.repo))
        records[-1].extra.update(queue=worker["queue"], threads=int(threads), node=f"vad-{worker['name']}@{_host()}")
    return records


def _host() -> str:
    return socket.gethostname()


def wait_workers(cluster: ClusterContext, records: list[Process], timeout: float = 240) -> None:
    from celery import Celery

    app = Celery(broker=cluster.env()["VAD_CELERY_BROKER"])
    try:
        for record in records:

            def answers(node: str = record.extra["node"]) -> bool:
                return bool(app.control.ping(destination=[node], timeout=1.0))

            cluster.table.wait_until(record.name, answers, timeout, "answering")
    finally:
        app.close()


__all__ = ["start_dagster", "start_workers", "wait_dagster", "wait_workers", "worker_plan", "write_workspace"]
