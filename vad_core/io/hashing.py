"""Content hashes: the one sha256-of-a-file helper, streamed hashing, and array fingerprints.

Every checksum in the project goes through here: weights files (verified against published
digests), video and frame-folder fingerprints, imported `.npy` features, the demo footage's
record, and the feature tables the retraining schedule compares.
"""

from __future__ import annotations

import hashlib
import os
from typing import IO, Any, Protocol

import numpy as np

CHUNK = 1 << 22  # 4 MiB reads: large enough to run at memory speed, small enough to stay cheap


class Digest(Protocol):
    """What `hashlib` objects offer (`hashlib._Hash` is private)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def update_from_stream(digest: Digest, stream: IO[bytes] | Any, chunk: int = CHUNK) -> Digest:
    """Feed a readable binary stream (a file, a pyarrow `NativeFile`) into `digest` in chunks."""
    while block := stream.read(chunk):
        digest.update(bytes(block) if not isinstance(block, bytes) else block)
    return digest


def update_from_file(digest: Digest, path: str | os.PathLike[str], chunk: int = CHUNK) -> Digest:
    """Feed the bytes of the file at `path` into `digest`; returns `digest`."""
    with open(path, "rb") as fh:
        return update_from_stream(digest, fh, chunk)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights files are tens of MB)."""
    return update_from_file(hashlib.sha256(), path).hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes in memory (a checkpoint before it is written)."""
    return hashlib.sha256(data).hexdigest()


def fingerprint_array(x: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and bytes: changes whenever the data changes."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256()
    h.update(f"{x.shape}|{x.dtype.str}|".encode())
    h.update(x.data.cast("B"))
    return h.hexdigest()


__all__ = ["fingerprint_array", "sha256_bytes", "sha256_file", "update_from_file", "update_from_stream"]
