"""The one sha256 helper agrees with hashlib on whole bytes, across chunk boundaries and streams."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from vad_core.io.hashing import fingerprint_array, sha256_file, update_from_file, update_from_stream


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, size=(1 << 22) + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    # a small chunk size must give the same digest as one read
    assert update_from_file(hashlib.sha256(), path, chunk=1000).hexdigest() == hashlib.sha256(data).hexdigest()


def test_streamed_hash_continues_an_existing_digest() -> None:
    h = hashlib.sha256(b"prefix|")
    update_from_stream(h, io.BytesIO(b"abc" * 1000), chunk=7)
    assert h.hexdigest() == hashlib.sha256(b"prefix|" + b"abc" * 1000).hexdigest()


def test_fingerprint_array_sees_shape_dtype_and_values() -> None:
    x = np.arange(6, dtype=np.float32)
    assert fingerprint_array(x) == fingerprint_array(x.copy())
    assert fingerprint_array(x) != fingerprint_array(x.reshape(2, 3))
    assert fingerprint_array(x) != fingerprint_array(x.astype(np.float64))
    y = x.copy()
    y[3] += 1
    assert fingerprint_array(x) != fingerprint_array(y)
