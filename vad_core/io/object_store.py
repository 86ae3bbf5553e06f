"""Object storage: S3 and S3-compatible servers (MinIO, Ceph, moto) as a `TableStore`.

    store = open_store("s3://vad/tables")        # endpoint and credentials from the environment
    store = s3_store("s3://vad/tables", S3Settings(endpoint="http://127.0.0.1:9000", access_key=..., secret_key=...))

The store is `FileSystemStore` on `pyarrow.fs.S3FileSystem`, rooted at `bucket/prefix`, with
`atomic_rename=False`: an object PUT (or a multipart upload, which S3 publishes only when it is
completed) is atomic on its own, so a reader sees the old object or the new one, never a part of
it, and a writer killed half way leaves nothing visible. A rename there would be a copy and a
delete, neither atomic nor cheap.

Failures are bounded and named: every request has a connect and a request (stall) timeout and
at most `max_attempts` tries, and an endpoint that cannot be reached raises
`StorageUnavailableError` with one line that names the endpoint, the operation and the key.
Objects are read whole, in one GET, so a network failure is raised here, where it can be named,
and not in the middle of a Parquet reader (the tables are megabytes; a GET per column chunk
would be slower as well).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from vad_core.errors import StorageUnavailableError, VADInputError
from vad_core.io.store import STORE_SCHEMES, FileSystemStore, TableStore, check_key, join_key

T = TypeVar("T")

# What the AWS SDK (through pyarrow) says when the network, not the request, failed.
_NETWORK = re.compile(r"NETWORK_CONNECTION|curlCode|Could not connect|Timeout was reached|Connection refused", re.I)
_DETAIL = re.compile(r"(curlCode: \d+, [^;]+)")


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise VADInputError(f"{name}={value!r}: expected a number of seconds") from None


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3 API. `from_env()` reads the variables the AWS SDKs themselves use.

    endpoint:        "http://host:port" of an S3-compatible server; None = AWS S3 (`AWS_ENDPOINT_URL`).
    region:          the bucket's region (`AWS_REGION`, `AWS_DEFAULT_REGION`; default us-east-1).
    access_key, secret_key, session_token: explicit credentials (`AWS_ACCESS_KEY_ID`, ...);
                     None = the SDK's default chain (config files, web identity, instance roles).
    connect_timeout: seconds to open a connection (`VAD_S3_CONNECT_TIMEOUT`, default 3).
    request_timeout: seconds a request may stall without a byte moving (`VAD_S3_REQUEST_TIMEOUT`, default 10):
                     a stall limit, not a total, so large uploads are not cut.
    max_attempts:    tries per request, the first included (`VAD_S3_MAX_ATTEMPTS`, default 3); with the
                     timeouts this bounds how long an unreachable endpoint can hold a caller (about 30 s).
    """

    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    connect_timeout: float = 3.0
    request_timeout: float = 10.0
    max_attempts: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if env is None else env
        attempts = env.get("VAD_S3_MAX_ATTEMPTS") or "3"
        if not attempts.isdigit() or int(attempts) < 1:
            raise VADInputError(f"VAD_S3_MAX_ATTEMPTS={attempts!r}: expected a positive integer")
        return cls(
            endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            connect_timeout=_env_float(env, "VAD_S3_CONNECT_TIMEOUT", 3.0),
            request_timeout=_env_float(env, "VAD_S3_REQUEST_TIMEOUT", 10.0),
            max_attempts=int(attempts),
        )

    def describe(self) -> str:
        """The endpoint for messages: the server's URL, or AWS S3 in the region."""
        return self.endpoint or f"AWS S3 ({self.region})"

    def filesystem(self) -> pafs.S3FileSystem:
        """The pyarrow file system these settings describe."""
        kwargs: dict[str, Any] = {}
        if self.endpoint:
            parts = urlsplit(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}")
            if not parts.hostname:
                raise VADInputError(f"S3 endpoint {self.endpoint!r}: expected a URL like http://127.0.0.1:9000")
            kwargs["endpoint_override"] = parts.netloc
            kwargs["scheme"] = parts.scheme or "https"
        if self.access_key or self.secret_key:
            kwargs.update(access_key=self.access_key, secret_key=self.secret_key, session_token=self.session_token)
        return pafs.S3FileSystem(
            region=self.region,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=self.max_attempts),
            **kwargs,
        )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); `VADInputError` for anything else."""
    scheme, sep, rest = str(uri).partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not sep or not bucket:
        raise VADInputError(f"object store location {uri!r}: expected s3://bucket[/prefix]")
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    return bucket, prefix


class S3TableStore(FileSystemStore):
    """A `TableStore` under `s3://bucket/prefix` (see the module doc); `location` is the object's s3:// URI."""

    def __init__(self, uri: str, settings: S3Settings | None = None) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.settings = settings or S3Settings.from_env()
        super().__init__(self.settings.filesystem(), join_key(self.bucket, self.prefix), atomic_rename=False)

    def _guard(self, op: str, key: str, call: Callable[[], T]) -> T:
        """Run one storage call; name the endpoint when the network failed, the object when S3 refused."""
        try:
            return call()
        except FileNotFoundError:
            raise
        except OSError as exc:
            text = str(exc).replace("\n", " ")
            where = self.location(key) if key else f"s3://{join_key(self.bucket, self.prefix)}"
            if _NETWORK.search(text):
                detail = _DETAIL.search(text)
                reason = detail.group(1).strip() if detail else text[:160]
                raise StorageUnavailableError(
                    f"object store {self.settings.describe()} is unreachable ({reason}; "
                    f"{self.settings.max_attempts} attempts) while {op} {where}"
                ) from None
            raise VADInputError(f"object store {self.settings.describe()}: {op} {where} failed: {text[:300]}") from None

    def _ensure_parent(self, key: str) -> None:
        """Nothing to do: an object store has no folders (pyarrow would write marker objects)."""

    def open_input(self, key: str) -> pa.NativeFile:
        key = check_key(key)

        def fetch() -> pa.Buffer:
            with self.filesystem.open_input_stream(key) as fh:
                return fh.read_buffer()

        return pa.BufferReader(self._guard("reading", key, fetch))

    def write_bytes(self, key: str, data: bytes | pa.Buffer) -> None:
        key = check_key(key)
        self._guard("writing", key, lambda: super(S3TableStore, self).write_bytes(key, data))

    def exists(self, key: str) -> bool:
        return self._guard("looking up", key, lambda: super(S3TableStore, self).exists(key))

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        return self._guard("listing", prefix, lambda: super(S3TableStore, self).list(prefix, suffix))

    def delete(self, key: str) -> None:
        self._guard("deleting", key, lambda: super(S3TableStore, self).delete(key))

    def location(self, key: str) -> str:
        return "s3://" + join_key(self.bucket, self.prefix, check_key(key))


def s3_store(uri: str, settings: S3Settings | None = None) -> TableStore:
    """The `TableStore` under `s3://bucket/prefix` (settings: `S3Settings.from_env()` when None)."""
    return S3TableStore(uri, settings)


STORE_SCHEMES["s3"] = lambda rest: s3_store(f"s3://{rest}")


__all__ = ["S3Settings", "S3TableStore", "parse_s3_uri", "s3_store"]
