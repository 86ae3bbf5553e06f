"""The scorer interface shared by the diffusion model and the baselines, and per-tile fitting.

A feature row is one (clip, tile) (design.md). Tiles cut at fixed positions see different
scenery, so a per-tile-position scorer fits one sub-model per tile index and scores each row
with the sub-model of its own tile position (method.md: "each scored against the same tile
position of the other clips").
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vad_core.errors import VADInputError, check_features

POOLED = -1  # key of the single sub-model of a scorer fitted without tiles


@runtime_checkable
class AnomalyScorer(Protocol):
    """fit on unlabelled features `(N, D)`, then score rows: higher = more anomalous."""

    name: str

    def fit(self, features: np.ndarray, tiles: np.ndarray | None = None) -> AnomalyScorer: ...

    def score(self, features: np.ndarray, tiles: np.ndarray | None = None) -> np.ndarray: ...


def check_tiles(tiles: object, n_rows: int, name: str = "tiles") -> np.ndarray:
    """Validate tile indices: `(N,)` non-negative integers, one per feature row."""
    arr = np.asarray(tiles)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise VADInputError(f"{name}: expected shape ({n_rows},) (one per feature row), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_float = np.asarray(arr, dtype=np.float64) if arr.dtype.kind in "fb" else None
        if as_float is None or not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise VADInputError(f"{name}: must hold integer tile indices (dtype {arr.dtype})")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise VADInputError(f"{name}: tile indices must be >= 0 (found {int(arr.min())})")
    return arr


class PerTileScorer(ABC):
    """Base of scorers that fit one independent sub-model per tile position.

    Subclasses implement `_fit_one(x (n, D)) -> model` and `_score_one(model, x (m, D), same)`,
    where `same` says `x` is exactly the matrix that sub-model was fitted on (a fingerprint
    match), which leave-one-out scorers use.
    """

    name: str = "scorer"

    def __init__(self) -> None:
        self._models: dict[int, Any] = {}
        self._fit_keys: dict[int, bytes] = {}
        self._dim: int | None = None
        self._tiled: bool | None = None

    @abstractmethod
    def _fit_one(self, x: np.ndarray) -> Any: ...

    @abstractmethod
    def _score_one(self, model: Any, x: np.ndarray, same: bool) -> np.ndarray: ...

    def params(self) -> dict[str, Any]:
        """Constructor arguments, for logging."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}

    @property
    def tiles_seen(self) -> list[int]:
        """Tile indices with a sub-model (empty for a pooled scorer)."""
        return sorted(k for k in self._models if k != POOLED)

    def _groups(self, x: np.ndarray, tiles: object | None) -> dict[int, np.ndarray]:
        if tiles is None:
            return {POOLED: np.arange(x.shape[0])}
        t = check_tiles(tiles, x.shape[0])
        return {int(k): np.flatnonzero(t == k) for k in np.unique(t)}

    def fit(self, features: np.ndarray, tiles: np.ndarray | None = None) -> PerTileScorer:
        """Fit on `features` `(N, D)`; with `tiles` `(N,)`, one sub-model per tile index."""
        x = check_features(features)
        models, keys = {}, {}
        for key, rows in self._groups(x, tiles).items():
            part = np.ascontiguousarray(x[rows])
            try:
                models[key] = self._fit_one(part)
            except VADInputError as exc:
                where = f"{self.name}" if key == POOLED else f"{self.name}: tile {key}"
                raise VADInputError(f"{where}: {exc}") from None
            keys[key] = _fingerprint(part)
        self._models, self._fit_keys = models, keys
        self._dim, self._tiled = x.shape[1], tiles is not None
        return self

    def score(self, features: np.ndarray, tiles: np.ndarray | None = None) -> np.ndarray:
        """Anomaly scores `(N,)` float64 of `features` `(N, D)`; higher = more anomalous."""
        if self._tiled is None:
            raise VADInputError(f"{self.name}: score() called before fit()")
        x = check_features(features, dim=self._dim)
        if self._tiled and tiles is None:
            raise VADInputError(f"{self.name}: was fitted per tile position; pass tiles to score()")
        if not self._tiled and tiles is not None:
            raise VADInputError(f"{self.name}: was fitted without tiles; pass tiles=None to score()")
        out = np.empty(x.shape[0], dtype=np.float64)
        for key, rows in self._groups(x, tiles).items():
            if key not in self._models:
                raise VADInputError(
                    f"{self.name}: tiles: tile index {key} was not seen in fit (fitted tiles: {self.tiles_seen})"
                )
            part = np.ascontiguousarray(x[rows])
            out[rows] = self._score_one(self._models[key], part, _fingerprint(part) == self._fit_keys[key])
        return out


def _fingerprint(x: np.ndarray) -> bytes:
    # Exact identity of a matrix: shape plus a hash of its bytes (blake2b: fast on big tables).
    h = hashlib.blake2b(digest_size=16)
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).data.cast("B"))
    return h.digest()


__all__ = ["POOLED", "AnomalyScorer", "PerTileScorer", "check_tiles"]
