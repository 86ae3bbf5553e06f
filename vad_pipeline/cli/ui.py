"""`vad ui` (`make ui`): the Dagster UI (webserver + daemon, so the sensor and schedule run) and the MLflow UI.

Both listen on 127.0.0.1 (ports from VAD_DAGSTER_PORT / VAD_MLFLOW_PORT, default 3000 / 5000,
or the next free ones). Each server starts in its own session (process group): a `dagster dev`
in the background ignores SIGTERM unless it leads its own group, so Ctrl-C here signals each
group and waits, then kills what is left.

What each server is told, and why:
- both get `VAD_DAGSTER_UI_URL` and `VAD_MLFLOW_UI_URL` (the ports chosen here), so the links
  between them (Dagster metadata -> MLflow run, MLflow description -> Dagster run) are right;
- MLflow telemetry off (`MLFLOW_DISABLE_TELEMETRY`) in both; Dagster's is off in dagster.yaml;
- the MLflow UI runs one web worker (its default, 4, is four copies of the server in memory for
  one local user) and no job runner (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`: the GenAI job
  queue starts a runner and seven huey consumers, none of which this project uses);
- the MLflow address printed opens the experiment in the model-training view, not GenAI.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vad_pipeline.cli.instance import dagster_home
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.resources.tracking import MLflowTracker, disable_mlflow_telemetry
from vad_pipeline.ui_links import DEFAULT_DAGSTER_PORT, DEFAULT_MLFLOW_PORT, mlflow_experiment_url

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` when it is free, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def _exe(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


# The MLflow UI's environment: the GenAI job queue off (telemetry: `disable_mlflow_telemetry`).
MLFLOW_UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_dagster_dev(port: int, env: Mapping[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """`dagster dev -w workspace.yaml` on 127.0.0.1:`port`, leading its own process group."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [_exe("dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_mlflow_ui(
    port: int, tracking_uri: str, log: Path | None = None, env: Mapping[str, str] | None = None, workers: int = 1
) -> subprocess.Popen:
    """`mlflow ui` on 127.0.0.1:`port` over `tracking_uri`, leading its own process group (see `MLFLOW_UI_ENV`)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [
            _exe("mlflow"),
            "ui",
            "--backend-store-uri",
            tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=REPO,
        env=disable_mlflow_telemetry({**os.environ, **MLFLOW_UI_ENV, **(env or {})}),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process_groups(procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGINT every process's group at once (what Ctrl-C would do), then SIGTERM, then SIGKILL.

    The groups may outlive their leaders (a webserver or daemon child), so each group gets a
    final SIGKILL whatever happened before.
    """
    for sig, wait in ((signal.SIGINT, timeout * 0.6), (signal.SIGTERM, timeout * 0.4)):
        live = [p for p in procs if p.poll() is None]
        for proc in live:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def stop_process_group(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """`stop_process_groups` for one process; returns its exit code."""
    stop_process_groups([proc], timeout)
    return proc.returncode


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll `url` until it answers 200, the process exits, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    return False


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`vad ui`."""
    parser = commands.add_parser(
        "ui",
        help="start the Dagster UI (with the daemon) and the MLflow UI on 127.0.0.1",
        description=__doc__.splitlines()[0],
    )
    parser.set_defaults(run=run)


@dataclass
class UiServers:
    """The servers `start_uis` started: `procs` by name, the addresses people open, the logs folder."""

    procs: dict[str, subprocess.Popen]
    urls: dict[str, str]
    logs: Path

    def wait_ready(self, timeout: float = 300) -> bool:
        """True once the Dagster webserver and the MLflow UI (when started here) both answer."""
        ready = wait_http(self.urls["dagster"] + "/server_info", timeout, self.procs["dagster"])
        if "mlflow" in self.procs:
            ready = wait_http(self.urls["mlflow_base"] + "/health", timeout, self.procs["mlflow"]) and ready
        return ready

    def stop(self, timeout: float = 30.0) -> None:
        stop_process_groups(list(self.procs.values()), timeout)


def start_uis(
    storage: VadStorage,
    tracker: MLflowTracker,
    dagster_port: int | None = None,
    mlflow_port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> UiServers:
    """Start `dagster dev` over the project's code location and instance, and the MLflow UI over the
    project's own store (a user's tracking server is linked, not started); logs in `<home>/logs`."""
    logs = storage.root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    d_port = dagster_port or free_port(int(os.environ.get("VAD_DAGSTER_PORT", DEFAULT_DAGSTER_PORT)))
    urls = {"dagster": f"http://127.0.0.1:{d_port}"}
    procs: dict[str, subprocess.Popen] = {}
    m_port = None
    if tracker.owns_store():
        m_port = mlflow_port or free_port(int(os.environ.get("VAD_MLFLOW_PORT", DEFAULT_MLFLOW_PORT)))
        base = f"http://127.0.0.1:{m_port}"
    else:
        base = tracker.resolved_ui_url()
    urls["mlflow_base"] = base
    links = {"VAD_DAGSTER_UI_URL": urls["dagster"], "VAD_MLFLOW_UI_URL": base, "VAD_HOME": str(storage.root())}
    shared = disable_mlflow_telemetry({**(env or {}), **links})
    dagster_env = {**shared, "DAGSTER_HOME": str(dagster_home(storage.root()))}
    # Dagster first: it is the slower to start and needs nothing from MLflow, so importing MLflow here
    # (the client below) overlaps with its start instead of delaying it.
    procs["dagster"] = start_dagster_dev(d_port, dagster_env, logs / "dagster.log")
    try:
        client = tracker.client()  # creates the SQLite store and the experiment before the UI opens them
        urls["mlflow"] = mlflow_experiment_url(base, tracker.experiment_id(client))
        if m_port is not None:
            procs["mlflow"] = start_mlflow_ui(m_port, tracker.resolved_uri(), logs / "mlflow.log", env=shared)
    except BaseException:
        stop_process_groups(list(procs.values()))  # no Dagster left running without its MLflow
        raise
    return UiServers(procs, urls, logs)


def run(args: argparse.Namespace) -> int:
    storage = VadStorage()
    tracker = MLflowTracker()
    servers = start_uis(storage, tracker)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(f"starting (logs in {servers.logs}) ...", flush=True)
    mlflow_note = "" if "mlflow" in servers.procs else "  (MLFLOW_TRACKING_URI: your own server)"
    if servers.wait_ready():
        print(
            f"Dagster UI: {servers.urls['dagster']}\nMLflow UI:  {servers.urls['mlflow']}{mlflow_note}\n"
            "Ctrl-C stops both.",
            flush=True,
        )
    code = 0
    while not stopping:
        dead = [n for n, p in servers.procs.items() if p.poll() is not None]
        if dead:
            print(f"{', '.join(dead)} stopped unexpectedly; see {servers.logs}", file=sys.stderr)
            code = 1
            break
        time.sleep(0.5)
    print("stopping ...", flush=True)
    servers.stop()
    print("stopped.")
    return code


__all__ = [
    "MLFLOW_UI_ENV",
    "UiServers",
    "add_parser",
    "free_port",
    "run",
    "start_dagster_dev",
    "start_mlflow_ui",
    "start_uis",
    "stop_process_group",
    "stop_process_groups",
    "wait_http",
]
