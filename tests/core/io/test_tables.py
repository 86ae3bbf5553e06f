"""Tables through the store: atomic writes keep the usual file mode, metadata and vectors round-trip."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vad_core.errors import VADInputError
from vad_core.io.feature_tables import read_feature_matrix
from vad_core.io.store import LocalTableStore
from vad_core.io.tables import atomic_write_bytes, feature_matrix, to_arrow_table


def test_parquet_round_trip_with_metadata_and_plain_file_mode(tmp_path: Path) -> None:
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    df = pd.DataFrame({"video_id": list("abcd"), "feature": list(matrix)})
    store = LocalTableStore(tmp_path)
    old = os.umask(0o022)
    try:
        store.write_table("t.parquet", df, {"backbone": "i3d"})
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    back, meta = store.read_frame("t.parquet")
    assert meta == {"backbone": "i3d"}
    assert list(back["video_id"]) == list("abcd")
    np.testing.assert_array_equal(read_feature_matrix(store, "t.parquet"), matrix)
    np.testing.assert_array_equal(feature_matrix(back), matrix)
    assert to_arrow_table(df).schema.field("feature").type.list_size == 3  # fixed-size list<float32>[3]
    # mkstemp alone would leave 0600: other users (the Dagster UI, a reviewer) could not read it.
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_unreadable_parquet_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(VADInputError, match="junk.parquet"):
        LocalTableStore(tmp_path).read_frame("junk.parquet")
