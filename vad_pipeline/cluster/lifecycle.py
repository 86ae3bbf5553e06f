"""A cluster on one machine: bring every server up, record it, write its variables, take it down exactly.

    cluster = Cluster(root)                 # root: <VAD_HOME>/cluster by default
    cluster.up(ClusterSpec(cpu_workers=2))  # servers started, waited for; cluster.json + cluster.env written
    cluster.env()                           # the cluster profile's variables (profile.CLUSTER_VARIABLES)
    cluster.stop("postgres"); cluster.start("postgres")   # one server, same port and data (fault tests)
    cluster.down()                          # every recorded process group stopped; [] when none is left

`cluster.json` records each server's argv, pid, process group, port, URL and log, written after
every start, so `down` (from any shell) stops exactly those groups even after a failed `up`.
PostgreSQL's data folder is a temp folder owned by its server user; `down` removes it (the local
S3 server keeps objects in memory, so the cluster's state lives as long as the cluster).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vad_core.errors import VADInputError
from vad_pipeline.cluster import services, workers
from vad_pipeline.cluster.processes import Process, ProcessTable, free_port, group_alive
from vad_pipeline.cluster.profile import render_instance_yaml
from vad_pipeline.specs import default_home

Echo = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]
PORTS = ("postgres", "redis", "s3", "mlflow", "code-server", "webserver")
# Order of `down` is the reverse: workers first (they hold tasks), PostgreSQL last.
ORDER = ("postgres", "redis", "s3", "mlflow", "code-server", "daemon", "webserver")


@dataclass(frozen=True)
class ClusterSpec:
    """How big the cluster is.

    cpu_workers: Celery step workers on the CPU queue, each with cores // cpu_workers torch threads.
    gpu_workers: step workers on the GPU queue (one device each); default: one per CUDA device.
    feature_runs: feature runs in flight at once (default 2 per step worker: the next run's step
                  is already queued when a worker finishes, so workers do not idle between videos).
    cores: the cores the CPU workers share (default: the ones this process may use).
    """

    cpu_workers: int = 2
    gpu_workers: int | None = None
    feature_runs: int | None = None
    cores: int | None = None
    gpu_queue: str = "gpu"

    def resolved(self) -> dict[str, Any]:
        if self.cpu_workers < 0 or (self.gpu_workers or 0) < 0 or self.cpu_workers + (self.gpu_workers or 0) < 1:
            raise VADInputError(f"a cluster needs at least one worker (cpu {self.cpu_workers}, gpu {self.gpu_workers})")
        gpus = self.gpu_workers if self.gpu_workers is not None else _cuda_devices()
        workers = self.cpu_workers + gpus
        feature_runs = self.feature_runs or 2 * workers
        return {
            **asdict(self),
            "gpu_workers": gpus,
            "feature_runs": feature_runs,
            "run_slots": feature_runs + 1,  # every feature run plus the training run
            "cores": self.cores or len(os.sched_getaffinity(0)),
        }


def _cuda_devices() -> int:
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA is "no GPU workers"
        return 0


class Cluster:
    """The servers of one cluster folder (see the module doc)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else default_home() / "cluster"
        self.root = self.root.expanduser().resolve()
        self.repo = REPO
        self.table = ProcessTable()
        self.state: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        if self.state_file.exists():
            self._load()

    # -- files -----------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def env_file(self) -> Path:
        return self.root / "cluster.env"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _load(self) -> None:
        data = json.loads(self.state_file.read_text())
        self.state, self.ports = data["state"], {k: int(v) for k, v in data["ports"].items()}
        for record in data["processes"]:
            self.table.adopt(Process.from_dict(record))

    def save(self) -> None:
        data = {
            "state": self.state,
            "ports": self.ports,
            "processes": [p.to_dict() for p in self.table.processes.values()],
        }
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.chmod(tmp, 0o600)  # it holds the generated passwords
        tmp.replace(self.state_file)

    # -- variables -------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """The environment every server starts from: this one, unbuffered, without a stale profile."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAD_PG_", "VAD_CELERY_"))}
        env.update(PYTHONUNBUFFERED="1", VAD_HOME=str(default_home()))
        return env

    def env(self) -> dict[str, str]:
        """The cluster profile's variables (profile.CLUSTER_VARIABLES) for this cluster."""
        if not self.ports:
            raise VADInputError(f"no cluster at {self.root}: run `make cluster-up` first")
        p, s = self.ports, self.state
        redis = f"redis://:{s['redis_password']}@127.0.0.1:{p['redis']}"
        env = {
            "VAD_PROFILE": "cluster",
            "VAD_HOME": s["vad_home"],
            "DAGSTER_HOME": str(self.root / "dagster_home"),
            "VAD_PG_HOST": "127.0.0.1",
            "VAD_PG_PORT": str(p["postgres"]),
            "VAD_PG_USER": services.PG_USER,
            "VAD_PG_PASSWORD": s["pg_password"],
            "VAD_PG_DAGSTER_DB": "dagster",
            "VAD_CELERY_BROKER": f"{redis}/0",
            "VAD_CELERY_BACKEND": f"{redis}/1",
            "VAD_STORE": f"s3://{services.BUCKET}/tables",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{p['s3']}",
            "AWS_ACCESS_KEY_ID": "vad",
            "AWS_SECRET_ACCESS_KEY": s["s3_secret"],
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance-metadata service
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{p['mlflow']}",
            # Bounded client retries: a stopped tracking server fails a run in seconds, not minutes.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
            "VAD_DAGSTER_URL": f"http://127.0.0.1:{p['webserver']}",
        }
        if s["spec"]["gpu_workers"]:
            env["VAD_GPU_QUEUE"] = s["spec"]["gpu_queue"]
        return env

    def write_env_file(self) -> None:
        lines = ["# The cluster profile's variables: source this file (make cluster-up wrote it)."]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        self.env_file.write_text("\n".join(lines) + "\n")
        os.chmod(self.env_file, 0o600)

    def urls(self) -> dict[str, str]:
        return {p.name: p.url for p in self.table.processes.values() if p.url}

    # -- up / down -------------------------------------------------------------------------

    def running(self) -> list[str]:
        return [name for name, p in self.table.processes.items() if group_alive(p.pgid)]

    def up(self, spec: ClusterSpec | None = None, echo: Echo = print) -> None:
        """Start every server (installing PostgreSQL/Redis with apt when missing) and wait for each."""
        if self.running():
            raise VADInputError(
                f"a cluster is already up at {self.root} ({', '.join(self.running())}): make cluster-down"
            )
        self._forget()
        start = time.monotonic()
        services.install_packages(echo)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in PORTS}
        pg_dir = tempfile.mkdtemp(prefix="vad-pg-")
        self.state = {
            "spec": (spec or ClusterSpec()).resolved(),
            "vad_home": str(default_home()),
            "pg_dir": pg_dir,
            "pg_password": secrets.token_hex(16),
            "redis_password": secrets.token_hex(16),
            "s3_secret": secrets.token_hex(16),
            "started": time.time(),
        }
        self.save()
        try:
            home = self.root / "dagster_home"
            home.mkdir(parents=True, exist_ok=True)
            (home / "dagster.yaml").write_text(render_instance_yaml(self.state["spec"]["feature_runs"]))
            self.write_env_file()
            services.init_postgres(self)
            self._started(services.start_postgres(self), echo)
            services.create_databases(self)
            self._started(services.start_redis(self), echo)
            self._started(services.start_s3(self), echo)
            services.create_bucket(self)
            self._started(services.start_mlflow(self), echo)
            workers.start_dagster(self)
            self.save()
            workers.wait_dagster(self)
            for name in ("code-server", "daemon", "webserver"):
                self._started(self.table.processes[name], echo)
            celery = workers.start_workers(self)
            self.save()
            workers.wait_workers(self, celery)
            for record in celery:
                self._started(record, echo, f"queue {record.extra['queue']}, {record.extra['threads']} torch threads")
        except BaseException:
            echo("  start failed: stopping what was started")
            self.down(echo=lambda _line: None)
            raise
        echo(f"  cluster up in {time.monotonic() - start:.0f} s; variables in {self.env_file}")

    def _started(self, record: Process, echo: Echo, note: str = "") -> None:
        self.save()
        where = record.url or (f"127.0.0.1:{record.port}" if record.port else "")
        echo(f"  {record.name:<14} pid {record.pid:<7} {where} {note}".rstrip())

    def start(self, name: str) -> None:
        """Start one recorded server again on its port (after `stop(name)`): postgres, mlflow, s3, redis."""
        starters = {
            "postgres": services.start_postgres,
            "mlflow": services.start_mlflow,
            "s3": services.start_s3,
            "redis": services.start_redis,
        }
        if name not in starters:
            raise VADInputError(f"cannot restart {name!r} on its own (known: {sorted(starters)})")
        starters[name](self)
        self.save()

    def stop(self, name: str, timeout: float = 20.0) -> None:
        """Stop one recorded server (its whole process group)."""
        if not self.table.stop(name, timeout):
            raise RuntimeError(f"{name}: processes of group {self.table.processes[name].pgid} survived SIGKILL")
        self.save()

    def down(self, echo: Echo = print) -> list[str]:
        """Stop every recorded process group (workers first); returns the names of groups still alive."""
        names = list(self.table.processes)
        order = [n for n in names if n.startswith("worker-")] + [n for n in reversed(ORDER) if n in names]
        order += [n for n in names if n not in order]
        # Everything but the stores gets its stop signal at once (they shut down in parallel);
        # PostgreSQL, Redis and the S3 server go last, once their clients are gone.
        for name in order:
            if name not in ("postgres", "redis", "s3"):
                self.table.signal(name)
        left = []
        for name in order:
            pgid = self.table.processes[name].pgid
            if self.table.stop(name, timeout=20.0):
                echo(f"  stopped {name} (process group {pgid})")
            else:
                left.append(name)
        if left:
            self.save()
            return left
        if self.state.get("pg_dir"):
            shutil.rmtree(self.state["pg_dir"], ignore_errors=True)
        self._forget()
        return []

    def _forget(self) -> None:
        for path in (self.state_file, self.env_file):
            path.unlink(missing_ok=True)
        self.state, self.ports = {}, {}


__all__ = ["Cluster", "ClusterSpec"]
