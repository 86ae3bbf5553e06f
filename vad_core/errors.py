"""Errors that name the bad input, and the validation helpers that raise them."""

from __future__ import annotations

import numpy as np


class VADInputError(ValueError):
    """A user-supplied input (file, array, argument) is unusable; the message says which and why."""


class StorageUnavailableError(VADInputError):
    """The configured store (an object store's endpoint) cannot be reached; the message names it.

    A `VADInputError`, so that everything that reports bad input in one line (the `vad` command,
    Dagster step failures) reports this the same way: the endpoint is configuration the user gave.
    """


def check_features(x: object, name: str = "features", dim: int | None = None) -> np.ndarray:
    """Validate a feature matrix and return it as float32 `(N, D)` without copying when possible.

    Raises `VADInputError` for non-arrays, wrong rank, empty input, a dimension other than
    `dim`, or non-finite values (the message counts them and names the first bad row).
    """
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise VADInputError(f"{name}: cannot be read as a float32 array ({exc})") from None
    if arr.ndim != 2:
        raise VADInputError(f"{name}: expected a 2-D array (rows, dims), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise VADInputError(f"{name}: is empty (0 rows)")
    if arr.shape[1] == 0:
        raise VADInputError(f"{name}: has 0 feature dimensions")
    if dim is not None and arr.shape[1] != dim:
        raise VADInputError(f"{name}: has {arr.shape[1]} dimensions, expected {dim}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise VADInputError(
            f"{name}: {int((~finite).sum())} non-finite values in {bad_rows.size} rows "
            f"(first bad row: {int(bad_rows[0])})"
        )
    return arr


__all__ = ["StorageUnavailableError", "VADInputError", "check_features"]
