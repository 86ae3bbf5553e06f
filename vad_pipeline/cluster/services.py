"""The servers of the cluster profile, started from packages on free 127.0.0.1 ports.

    PostgreSQL   Debian's `postgresql` (initdb + postgres, as the `postgres` user when run as root),
                 databases `dagster` (instance storage) and `mlflow` (the tracking server's store)
    Redis        Debian's `redis-server`: Celery broker (db 0) and result backend (db 1)
    S3 API       `moto_server` (PyPI moto[server]), bucket `vad`: tables under tables/, MLflow
                 artifacts under mlflow-artifacts/ (in memory: the local stand-in for S3 or MinIO)
    MLflow       `mlflow server` on the PostgreSQL store, artifacts proxied to the bucket

The Dagster processes and the Celery workers are in `workers.py`. Each `start_*` starts one server
through the cluster's `ProcessTable` and returns once it answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import urllib.request
from pathlib import Path

from vad_core.errors import VADInputError
from vad_pipeline.cluster.processes import ClusterContext, Process, run_checked

BUCKET = "vad"
PG_USER = "vad"
APT_PACKAGES = {"postgres": "postgresql", "redis-server": "redis-server"}


def venv_tool(name: str) -> str:
    """An executable installed beside this Python (the project's .venv/bin)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise VADInputError(f"{path} not found: run `make setup` (it installs the cluster extra)")
    return str(path)


def postgres_bin() -> Path | None:
    """The folder of `postgres`/`initdb`: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return candidates[-1] if candidates else None


def redis_bin() -> Path | None:
    found = shutil.which("redis-server")
    return Path(found) if found else None


def missing_packages() -> list[str]:
    """The Debian packages the cluster needs that are not installed."""
    missing = []
    if postgres_bin() is None:
        missing.append(APT_PACKAGES["postgres"])
    if redis_bin() is None:
        missing.append(APT_PACKAGES["redis-server"])
    return missing


def install_packages(echo: object = print) -> None:
    """apt-get install what is missing (root only); waits for another apt's lock instead of failing."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise VADInputError(f"missing {missing}: run `sudo apt-get install {' '.join(missing)}`")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-q", "-y"]
    env_note = f"installing {', '.join(missing)} with apt-get"
    if callable(echo):
        echo(f"  {env_note}")
    os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
    run_checked([*apt, "update"], "apt-get update", timeout=900)
    run_checked([*apt, "install", "--no-install-recommends", *missing], "apt-get install", timeout=900)


def get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


# --------------------------------------------------------------------------- PostgreSQL


def init_postgres(cluster: ClusterContext) -> None:
    """initdb a fresh data folder in a temp dir the `postgres` user owns (PostgreSQL refuses root)."""
    pg = postgres_bin()
    if pg is None:
        raise VADInputError("PostgreSQL is not installed: `make cluster-up` installs it (apt-get install postgresql)")
    base = Path(cluster.state["pg_dir"])
    (base / "sock").mkdir(exist_ok=True)
    pwfile = base / "pwfile"
    pwfile.write_text(cluster.state["pg_password"] + "\n")
    if os.geteuid() == 0:
        for path in (base, base / "sock", pwfile):
            shutil.chown(path, "postgres", "postgres")
    run_checked(
        [
            str(pg / "initdb"),
            "-D",
            str(base / "data"),
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        "initdb",
        user="postgres",
    )
    pwfile.unlink()


def start_postgres(cluster: ClusterContext) -> Process:
    pg = postgres_bin()
    assert pg is not None  # init_postgres checked
    base, port = Path(cluster.state["pg_dir"]), cluster.ports["postgres"]
    argv = [
        str(pg / "postgres"),
        "-D",
        str(base / "data"),
        "-p",
        str(port),
        "-k",
        str(base / "sock"),
        "-c",
        "listen_addresses=127.0.0.1",
    ]
    # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
    record = cluster.table.start(
        "postgres",
        argv,
        cluster.base_env(),
        cluster.log("postgres"),
        port=port,
        url=f"postgresql://127.0.0.1:{port}",
        user="postgres",
        stop_signal=signal.SIGINT,
    )
    cluster.table.wait_until(
        "postgres", lambda: _pg_query(cluster, "SELECT 1") is not None, 60, "accepting connections"
    )
    return record


def _pg_query(cluster: ClusterContext, sql: str, db: str = "postgres", autocommit: bool = False) -> list[tuple] | None:
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=cluster.ports["postgres"],
        user=PG_USER,
        password=cluster.state["pg_password"],
        dbname=db,
        connect_timeout=3,
    )
    try:
        conn.autocommit = autocommit
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def create_databases(cluster: ClusterContext, names: tuple[str, ...] = ("dagster", "mlflow")) -> None:
    existing = {row[0] for row in _pg_query(cluster, "SELECT datname FROM pg_database") or []}
    for name in names:
        if name not in existing:
            _pg_query(cluster, f'CREATE DATABASE "{name}"', autocommit=True)


# --------------------------------------------------------------------------- Redis, S3


def start_redis(cluster: ClusterContext) -> Process:
    binary = redis_bin()
    if binary is None:
        raise VADInputError(
            "redis-server is not installed: `make cluster-up` installs it (apt-get install redis-server)"
        )
    port, data = cluster.ports["redis"], cluster.root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--requirepass",
        cluster.state["redis_password"],
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data),
        "--daemonize",
        "no",
    ]
    record = cluster.table.start("redis", argv, cluster.base_env(), cluster.log("redis"), port=port)

    def ping() -> bool:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=port, password=cluster.state["redis_password"]).ping())

    cluster.table.wait_until("redis", ping, 30, "answering PING")
    return record


def start_s3(cluster: ClusterContext) -> Process:
    port = cluster.ports["s3"]
    argv = [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    record = cluster.table.start("s3", argv, cluster.base_env(), cluster.log("s3"), port=port, url=url)
    cluster.table.wait_until("s3", lambda: bool(get(f"{url}/moto-api/")), 60, "serving the S3 API")
    return record


def create_bucket(cluster: ClusterContext) -> None:
    import pyarrow.fs as pafs

    env = cluster.env()
    fs = pafs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=env["AWS_ENDPOINT_URL"].split("://", 1)[1],
        scheme="http",
        region=env["AWS_REGION"],
        allow_bucket_creation=True,
    )
    if fs.get_file_info(BUCKET).type == pafs.FileType.NotFound:
        fs.create_dir(BUCKET)


# --------------------------------------------------------------------------- MLflow


def start_mlflow(cluster: ClusterContext) -> Process:
    port, env = cluster.ports["mlflow"], cluster.env()
    pg = f"postgresql+psycopg2://{PG_USER}:{cluster.state['pg_password']}@127.0.0.1:{cluster.ports['postgres']}/mlflow"
    argv = [
        venv_tool("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        # psycopg2, named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3.
        "--backend-store-uri",
        pg,
        "--serve-artifacts",
        "--artifacts-destination",
        f"s3://{BUCKET}/mlflow-artifacts",
    ]
    server_env = {
        **cluster.base_env(),
        **env,
        "MLFLOW_S3_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
        # MLflow 3's server-side jobs (GenAI evaluation, trace roll-ups) start a job runner and eight
        # huey consumer processes that poll their queues; the pipeline only tracks runs and registers
        # models. benchmarks/cluster.py's per-process-group accounting, 2-worker phase of 22 videos:
        # the server's group took 3.5-4.0 CPU s per 270-280 s with them, 0.55 s without (about 1.2%
        # of a core given back to the extraction on a 2-core machine).
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    url = env["MLFLOW_TRACKING_URI"]
    record = cluster.table.start("mlflow", argv, server_env, cluster.log("mlflow"), port=port, url=url)
    cluster.table.wait_until("mlflow", lambda: get(f"{url}/health").strip() == b"OK", 240, "healthy")
    return record


__all__ = [
    "APT_PACKAGES",
    "BUCKET",
    "PG_USER",
    "create_bucket",
    "create_databases",
    "get",
    "init_postgres",
    "install_packages",
    "missing_packages",
    "postgres_bin",
    "redis_bin",
    "start_mlflow",
    "start_postgres",
    "start_redis",
    "start_s3",
    "venv_tool",
]
