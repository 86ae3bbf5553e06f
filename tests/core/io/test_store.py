"""The storage interface: every implementation honours the same contract; writes replace atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from vad_core.errors import VADInputError
from vad_core.io.object_store import S3TableStore
from vad_core.io.store import FileSystemStore, LocalTableStore, MemoryTableStore, TableStore, check_key, open_store


@pytest.fixture(params=["local", "memory", "filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TableStore:
    if request.param == "s3":  # a real S3 API (moto_server, tests/core/io/conftest.py), a fresh prefix per test
        server = request.getfixturevalue("moto_server")
        server.create_bucket("contract")
        return S3TableStore(f"s3://contract/{tmp_path.name}", server.settings())
    if request.param == "local":
        return LocalTableStore(tmp_path / "home")
    if request.param == "memory":
        return MemoryTableStore()
    # any pyarrow file system: here a local folder through the generic base, without rename
    (tmp_path / "fs").mkdir()
    return FileSystemStore(pafs.LocalFileSystem(), (tmp_path / "fs").as_posix(), atomic_rename=False)


def test_tables_json_bytes_list_exists_delete(store: TableStore) -> None:
    df = pd.DataFrame({"video_id": ["a", "b"], "score": [0.5, 1.5], "feature": [np.ones(3, np.float32)] * 2})
    assert store.write_table("demo/scores/t.parquet", df, {"dataset": "demo"}) == "demo/scores/t.parquet"
    back, meta = store.read_frame("demo/scores/t.parquet")
    assert meta == {"dataset": "demo"} and back["score"].tolist() == [0.5, 1.5]
    assert store.read_metadata("demo/scores/t.parquet") == {"dataset": "demo"}
    assert store.read_table("demo/scores/t.parquet", columns=["score"]).column_names == ["score"]
    store.write_json("demo/info.json", {"auc": 0.75, "nan": math.nan, "path": Path("/x"), "n": np.int64(3)})
    assert store.read_json("demo/info.json") == {"auc": 0.75, "nan": None, "path": "/x", "n": 3}
    assert store.read_json("demo/missing.json") is None
    store.write_bytes("demo/report/plots/roc.png", b"\x89PNG")
    store.write_bytes("other/x.bin", b"1")
    assert store.list("demo") == ["demo/info.json", "demo/report/plots/roc.png", "demo/scores/t.parquet"]
    assert store.list("demo", suffix=".parquet") == ["demo/scores/t.parquet"]
    assert store.list() == ["demo/info.json", "demo/report/plots/roc.png", "demo/scores/t.parquet", "other/x.bin"]
    assert store.list("nothing/here") == []
    assert store.exists("other/x.bin") and not store.exists("other")  # a folder-like prefix is not a value
    store.write_bytes("other/x.bin", b"2")  # replace
    assert store.read_bytes("other/x.bin") == b"2"
    assert store.sha256("other/x.bin") == "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
    store.delete("other/x.bin")
    store.delete("other/x.bin")  # deleting a missing key is fine
    assert not store.exists("other/x.bin")
    with pytest.raises(VADInputError, match="not found"):
        store.read_bytes("other/x.bin")
    with pytest.raises(VADInputError, match="Parquet"):
        store.read_frame("demo/report/plots/roc.png")


def test_keys_are_relative_paths_without_escapes() -> None:
    assert check_key("a/b.parquet") == "a/b.parquet"
    for bad in ("", "/abs", "a/../b", "a//b", "./a"):
        with pytest.raises(VADInputError, match="storage key"):
            check_key(bad)
    with pytest.raises(VADInputError, match="storage key"):
        MemoryTableStore().write_bytes("../escape", b"x")


def test_local_writes_leave_no_temporaries_and_locations_are_paths(tmp_path: Path) -> None:
    store = LocalTableStore(tmp_path)
    for i in range(3):
        store.write_bytes("d/x.json", str(i).encode())
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["x.json"]
    assert store.location("d/x.json") == str(tmp_path / "d" / "x.json")
    # a temporary of a write in flight (hidden name) is never listed as a value
    (tmp_path / "d" / ".x.json.abc.tmp").write_bytes(b"partial")
    assert store.list("d") == ["d/x.json"]


def test_a_failed_write_keeps_the_old_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalTableStore(tmp_path)
    store.write_bytes("v.bin", b"old")

    def boom(tmp_key: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "_after_write", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write_bytes("v.bin", b"new")
    assert store.read_bytes("v.bin") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["v.bin"]


def test_open_store_by_location(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path), LocalTableStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalTableStore)
    assert isinstance(open_store("memory://"), MemoryTableStore)
    with pytest.raises(VADInputError, match=r"no store for s4://"):
        open_store("s4://bucket/prefix")


def test_the_interface_is_abstract() -> None:
    class Half(TableStore):
        def exists(self, key: str) -> bool:
            return False

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]
