"""Server processes of a one-machine cluster: free loopback ports, started in their own process
group, waited on with a deadline, stopped by exactly that group.

Nothing here knows what a server is for (`services.py` does); this is the part that must be exact:
every process gets a new session (`start_new_session`), so its process group id is its pid and
holds everything it forks (Celery pool processes, uvicorn workers, PostgreSQL backends), and
stopping signals that group, waits until no process is left in it, and escalates to SIGKILL.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vad_core.errors import VADInputError

Echo = Callable[[str], None]


class ClusterContext(Protocol):
    """What a server's start function reads of its cluster (`lifecycle.Cluster` is the one)."""

    root: Path
    repo: Path
    table: ProcessTable
    state: dict[str, Any]
    ports: dict[str, int]

    def log(self, name: str) -> Path: ...

    def base_env(self) -> dict[str, str]: ...

    def env(self) -> dict[str, str]: ...


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick); servers get one each, never a fixed one."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Process:
    """One started server: what ran, where it logs, how to reach it, and its process group."""

    name: str
    argv: list[str]
    pid: int
    pgid: int
    log: str
    port: int | None = None
    url: str | None = None
    stop_signal: int = int(signal.SIGTERM)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Process:
        return cls(**dict(data))


class ProcessTable:
    """The processes this cluster started, by name, with their `Popen` handles when started here."""

    def __init__(self) -> None:
        self.processes: dict[str, Process] = {}
        self._popen: dict[str, subprocess.Popen] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        port: int | None = None,
        url: str | None = None,
        user: str | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Process:
        """Start `argv` in a new session, output appended to `log`; `user` drops root to that user."""
        if name in self.processes and group_alive(self.processes[name].pgid):
            raise VADInputError(f"{name} is already running (pid {self.processes[name].pid})")
        log.parent.mkdir(parents=True, exist_ok=True)
        ids: dict[str, Any] = {}
        if user is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                **ids,
            )
        record = Process(name, list(argv), proc.pid, proc.pid, str(log), port, url, int(stop_signal))
        self.processes[name] = record
        self._popen[name] = proc
        return record

    def adopt(self, record: Process) -> None:
        """Track a process started by another `ProcessTable` (a `vad cluster down` in a new shell)."""
        self.processes[record.name] = record

    def exited(self, name: str) -> int | None:
        """The exit status when the process is known to have exited (only for processes started here)."""
        proc = self._popen.get(name)
        return None if proc is None else proc.poll()

    def wait_until(self, name: str, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready()` until true; fail early, with the log's tail, when the process exits first."""
        deadline = time.monotonic() + timeout
        record = self.processes[name]
        while True:
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - "not ready yet" comes in many shapes (refused, 503, ...)
                pass
            status = self.exited(name)
            if status is not None:
                raise RuntimeError(f"{name} exited with status {status} before {what}:\n{log_tail(record.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not {what} after {timeout:.0f} s:\n{log_tail(record.log)}")
            time.sleep(0.25)

    def signal(self, name: str) -> None:
        """Send the process group its stop signal without waiting (`stop` waits)."""
        record = self.processes.get(name)
        if record is not None and group_alive(record.pgid):
            _signal_group(record.pgid, record.stop_signal)

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        """Stop one process group: its stop signal, then SIGKILL after `timeout`; True when it is gone."""
        record = self.processes.get(name)
        if record is None:
            return True
        if group_alive(record.pgid):
            _signal_group(record.pgid, record.stop_signal)
            if not self._wait_gone(name, timeout):
                _signal_group(record.pgid, signal.SIGKILL)
                self._wait_gone(name, 10.0)
        self._reap(name)
        gone = not group_alive(record.pgid)
        if gone:
            self.processes.pop(name, None)
            self._popen.pop(name, None)
        return gone

    def _reap(self, name: str) -> None:
        proc = self._popen.get(name)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _wait_gone(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pgid = self.processes[name].pgid
        while time.monotonic() < deadline:
            self.exited(name)  # reap the leader when it is our child, so a zombie does not hold the group
            if not group_alive(pgid):
                return True
            time.sleep(0.1)
        return not group_alive(pgid)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(f"    {line}" for line in text[-lines:])


def run_checked(argv: Sequence[str], what: str, user: str | None = None, timeout: float = 300) -> str:
    """Run a set-up command to completion (initdb, apt-get); its output in the error when it fails."""
    ids: dict[str, Any] = {}
    if user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **ids)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv)}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


__all__ = [
    "ClusterContext",
    "Echo",
    "Process",
    "ProcessTable",
    "free_port",
    "group_alive",
    "log_tail",
    "port_open",
    "run_checked",
]
