"""Parquet helpers: atomic writes keep the usual file mode, metadata and vectors round-trip."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vad_core.errors import VADInputError
from vad_core.io.tables import atomic_write_bytes, read_feature_matrix, read_parquet, write_parquet_atomic


def test_parquet_round_trip_with_metadata_and_plain_file_mode(tmp_path: Path) -> None:
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    df = pd.DataFrame({"video_id": list("abcd"), "feature": list(matrix)})
    path = tmp_path / "t.parquet"
    old = os.umask(0o022)
    try:
        write_parquet_atomic(df, path, {"backbone": "i3d"})
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    back, meta = read_parquet(path)
    assert meta == {"backbone": "i3d"}
    assert list(back["video_id"]) == list("abcd")
    np.testing.assert_array_equal(read_feature_matrix(path), matrix)
    # mkstemp alone would leave 0600: other users (the Dagster UI, a reviewer) could not read it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_unreadable_parquet_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(VADInputError, match="junk.parquet"):
        read_parquet(bad)
