"""`vad ui` (`make ui`): the Dagster UI (webserver + daemon, so the sensor and schedule run) and the MLflow UI.

Both listen on 127.0.0.1 (ports from VAD_DAGSTER_PORT / VAD_MLFLOW_PORT, default 3000 / 5000,
or the next free ones). Each server starts in its own session (process group): a `dagster dev`
in the background ignores SIGTERM unless it leads its own group, so Ctrl-C here signals each
group and waits, then kills what is left.
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
from pathlib import Path

from vad_pipeline.cli.instance import dagster_home
from vad_pipeline.resources.storage import VadStorage
from vad_pipeline.resources.tracking import MLflowTracker

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


def start_mlflow_ui(port: int, tracking_uri: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [_exe("mlflow"), "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
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


def run(args: argparse.Namespace) -> int:
    storage = VadStorage()
    logs = storage.root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {"DAGSTER_HOME": str(dagster_home(storage.root())), "VAD_HOME": str(storage.root())}
    tracker = MLflowTracker()
    d_port = free_port(int(os.environ.get("VAD_DAGSTER_PORT", 3000)))
    procs: dict[str, subprocess.Popen] = {"dagster": start_dagster_dev(d_port, env, logs / "dagster.log")}
    urls = {"dagster": f"http://127.0.0.1:{d_port}"}
    if tracker.owns_store():
        tracker.client().search_experiments()  # create the SQLite store before the UI opens it
        m_port = free_port(int(os.environ.get("VAD_MLFLOW_PORT", 5000)))
        procs["mlflow"] = start_mlflow_ui(m_port, tracker.resolved_uri(), logs / "mlflow.log")
        urls["mlflow"] = f"http://127.0.0.1:{m_port}"
    else:
        urls["mlflow"] = tracker.resolved_uri() + " (MLFLOW_TRACKING_URI: your own server)"

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(f"starting (logs in {logs}) ...", flush=True)
    ready = wait_http(urls["dagster"] + "/server_info", 300, procs["dagster"])
    if "mlflow" in procs:
        ready = wait_http(urls["mlflow"] + "/health", 120, procs["mlflow"]) and ready
    if ready:
        print(f"Dagster UI: {urls['dagster']}\nMLflow UI:  {urls['mlflow']}\nCtrl-C stops both.", flush=True)
    code = 0
    while not stopping:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            print(f"{', '.join(dead)} stopped unexpectedly; see {logs}", file=sys.stderr)
            code = 1
            break
        time.sleep(0.5)
    print("stopping ...", flush=True)
    stop_process_groups(list(procs.values()))
    print("stopped.")
    return code


__all__ = [
    "add_parser",
    "free_port",
    "run",
    "start_dagster_dev",
    "start_mlflow_ui",
    "stop_process_group",
    "stop_process_groups",
    "wait_http",
]
