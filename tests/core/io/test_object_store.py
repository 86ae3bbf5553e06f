"""The S3 store against a real S3 API (moto_server): atomic objects, killed writers, unreachable endpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.core.io.conftest import MotoServer, free_port
from vad_core.errors import StorageUnavailableError, VADInputError
from vad_core.io.object_store import S3Settings, S3TableStore, parse_s3_uri
from vad_core.io.store import open_store


def test_settings_come_from_the_aws_variables() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "VAD_S3_REQUEST_TIMEOUT": "4",
        "VAD_S3_MAX_ATTEMPTS": "5",
    }
    s = S3Settings.from_env(env)
    assert (s.endpoint, s.access_key, s.secret_key, s.region) == ("http://127.0.0.1:9", "k", "s", "eu-west-1")
    assert (s.request_timeout, s.connect_timeout, s.max_attempts) == (4.0, 3.0, 5)
    assert S3Settings.from_env({}).describe() == "AWS S3 (us-east-1)"
    with pytest.raises(VADInputError, match="VAD_S3_MAX_ATTEMPTS"):
        S3Settings.from_env({"VAD_S3_MAX_ATTEMPTS": "0"})
    with pytest.raises(VADInputError, match="VAD_S3_CONNECT_TIMEOUT"):
        S3Settings.from_env({"VAD_S3_CONNECT_TIMEOUT": "soon"})


def test_uris() -> None:
    assert parse_s3_uri("s3://vad/tables/x") == ("vad", "tables/x")
    assert parse_s3_uri("s3://vad") == ("vad", "")
    for bad in ("s3://", "vad/tables", "gs://vad/x", "s3://vad/../x"):
        with pytest.raises(VADInputError):
            parse_s3_uri(bad)


def test_open_store_reads_the_environment(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    moto_server.create_bucket("envbucket")
    for name, value in {
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }.items():
        monkeypatch.setenv(name, value)
    store = open_store("s3://envbucket/tables")
    assert isinstance(store, S3TableStore)
    store.write_json("demo/a.json", {"x": 1})
    assert store.location("demo/a.json") == "s3://envbucket/tables/demo/a.json"
    # written under the prefix, and nothing else: no folder marker objects
    assert _object_keys(moto_server, "envbucket") == ["tables/demo/a.json"]


def test_a_missing_bucket_is_named(moto_server: MotoServer) -> None:
    store = S3TableStore("s3://no-such-bucket/x", moto_server.settings())
    with pytest.raises(VADInputError, match=r"no-such-bucket"):
        store.write_bytes("a.bin", b"1")


def test_an_unreachable_endpoint_fails_fast_with_one_line_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = S3Settings(endpoint=endpoint, access_key="k", secret_key="s", max_attempts=2)
    store = S3TableStore("s3://vad/tables", settings)
    for call in (
        lambda: store.write_bytes("demo/a.bin", b"1"),
        lambda: store.read_bytes("demo/a.bin"),
        lambda: store.exists("demo/a.bin"),
        lambda: store.list("demo"),
    ):
        start = time.monotonic()
        with pytest.raises(StorageUnavailableError) as info:
            call()
        assert time.monotonic() - start < 20
        message = str(info.value)
        assert endpoint in message and "unreachable" in message and "\n" not in message
        assert "s3://vad/tables" in message


def test_a_frozen_server_times_out_and_nothing_is_half_written(moto_server: MotoServer) -> None:
    moto_server.create_bucket("frozen")
    store = S3TableStore("s3://frozen/t", moto_server.settings(request_timeout=2.0, max_attempts=2))
    store.write_bytes("v.bin", b"old")
    moto_server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(StorageUnavailableError, match=moto_server.endpoint):
            store.write_bytes("v.bin", os.urandom(12 << 20))  # a multipart upload
        assert time.monotonic() - start < 30
    finally:
        moto_server.resume()
    assert store.read_bytes("v.bin") == b"old"
    assert store.list() == ["v.bin"]


WRITER = textwrap.dedent(
    """
    import os, sys
    from vad_core.io.object_store import S3Settings, S3TableStore
    store = S3TableStore("s3://killed/t", S3Settings(endpoint=sys.argv[1], access_key="test", secret_key="test"))
    data = os.urandom(96 << 20)
    print("writing", flush=True)
    store.write_bytes("v.bin", data)
    print("done", flush=True)
    """
)


def test_a_writer_killed_mid_upload_leaves_the_old_object(moto_server: MotoServer) -> None:
    """kill -9 while the object's parts are uploading: the key keeps its old value, no part is visible."""
    moto_server.create_bucket("killed")
    store = S3TableStore("s3://killed/t", moto_server.settings())
    store.write_bytes("v.bin", b"old")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, moto_server.endpoint], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 60
        # wait until the upload is under way: moto holds its parts (a multipart upload in progress)
        while not _uploads_in_progress(moto_server, "killed"):
            assert proc.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline, "no multipart upload started within 60 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert store.read_bytes("v.bin") == b"old"
    assert store.list() == ["v.bin"]
    assert _object_keys(moto_server, "killed") == ["t/v.bin"]


def _client(server: MotoServer):  # noqa: ANN202 - boto3's client types are generated
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def _object_keys(server: MotoServer, bucket: str) -> list[str]:
    """Every object in the bucket, as S3 itself lists them (no file-system view)."""
    return sorted(o["Key"] for o in _client(server).list_objects_v2(Bucket=bucket).get("Contents", []))


def _uploads_in_progress(server: MotoServer, bucket: str) -> bool:
    return bool(_client(server).list_multipart_uploads(Bucket=bucket).get("Uploads"))
