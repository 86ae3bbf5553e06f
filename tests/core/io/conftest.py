"""A real S3 API for the object-store tests: `moto_server` (PyPI `moto[server]`) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from vad_core.io.object_store import S3Settings

# Never let the AWS SDK look for an instance-metadata service: every test passes its keys.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    """One moto_server process (its own process group) and the settings that reach it."""

    process: subprocess.Popen
    endpoint: str

    def settings(self, **overrides: object) -> S3Settings:
        base = {"endpoint": self.endpoint, "access_key": "test", "secret_key": "test", "max_attempts": 2}
        return S3Settings(**{**base, **overrides})  # type: ignore[arg-type]

    def create_bucket(self, name: str) -> None:
        """Create `name` if it does not exist (the store itself never creates buckets)."""
        fs = self.settings().filesystem()
        if fs.get_file_info(name).type == pafs.FileType.NotFound:
            pafs.S3FileSystem(
                access_key="test",
                secret_key="test",
                endpoint_override=self.endpoint.split("://")[1],
                scheme="http",
                region="us-east-1",
                allow_bucket_creation=True,
            ).create_dir(name)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel, nothing answers."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    exe = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start on {endpoint}: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    server = MotoServer(proc, endpoint)
    try:
        yield server
    finally:
        server.resume()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
