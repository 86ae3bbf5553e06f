"""scikit-learn baselines on the same features: kNN distance, PCA reconstruction, IsolationForest.

On Ped2 I3D tile features, kNN (k = 5) and PCA-16 per tile position reach about 95 and 94
frame AUC (findings.md), the bars the diffusion model is measured against.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from vad_core.errors import VADInputError
from vad_core.scoring.scorers.base import PerTileScorer


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise VADInputError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


class KNNScorer(PerTileScorer):
    """Distance to the k nearest training rows (Euclidean); `reduction` "mean" or "kth".

    Unsupervised fitting uses the very rows it then scores, where each row would find itself
    at distance 0. With `exclude_self` (default) a scored matrix identical to the fitted one
    (same bytes, per tile position) is scored leave-one-out: each row's own entry is dropped
    and its k nearest *other* rows are used. A different matrix is scored against all rows.
    """

    name = "knn"

    def __init__(self, k: int = 5, reduction: Literal["mean", "kth"] = "mean", exclude_self: bool = True) -> None:
        super().__init__()
        self.k = _positive_int(k, "k")
        if reduction not in ("mean", "kth"):
            raise VADInputError(f"reduction: must be 'mean' or 'kth', got {reduction!r}")
        self.reduction = reduction
        self.exclude_self = bool(exclude_self)

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "reduction": self.reduction, "exclude_self": self.exclude_self}

    def _fit_one(self, x: np.ndarray) -> NearestNeighbors:
        need = self.k + 1 if self.exclude_self else self.k
        if x.shape[0] < need:
            raise VADInputError(f"features: {x.shape[0]} rows, kNN with k={self.k} needs at least {need}")
        return NearestNeighbors(n_neighbors=self.k).fit(x)

    def _score_one(self, model: NearestNeighbors, x: np.ndarray, same: bool) -> np.ndarray:
        # kneighbors(None) is scikit-learn's leave-one-out query: a fitted point is not its own neighbour.
        dist, _ = model.kneighbors(None if (same and self.exclude_self) else x, n_neighbors=self.k)
        d64: np.ndarray = np.asarray(dist, dtype=np.float64)
        return d64.mean(axis=1) if self.reduction == "mean" else d64[:, -1]


class PCAScorer(PerTileScorer):
    """Mean squared residual of a row after projection on the top `n_components` principal axes.

    PCA centres the features. Per-dimension standardization is off by default: pooled CNN
    features have many near-constant dimensions whose noise, scaled up to unit variance, would
    dominate the residual; `standardize=True` divides each dimension by its training std first.
    """

    name = "pca"

    def __init__(self, n_components: int = 16, standardize: bool = False) -> None:
        super().__init__()
        self.n_components = _positive_int(n_components, "n_components")
        self.standardize = bool(standardize)

    def params(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "standardize": self.standardize}

    def _fit_one(self, x: np.ndarray) -> tuple[PCA, np.ndarray]:
        if self.n_components >= min(x.shape):
            raise VADInputError(
                f"features: n_components={self.n_components} must be below min(rows, dims) = {min(x.shape)} "
                "(otherwise every row reconstructs exactly)"
            )
        x64 = x.astype(np.float64)
        scale = x64.std(axis=0) if self.standardize else np.ones(x.shape[1])
        scale = np.where(scale > 0, scale, 1.0)  # a constant dimension carries no residual anyway
        pca = PCA(n_components=self.n_components, random_state=0).fit(x64 / scale)
        return pca, scale

    def _score_one(self, model: tuple[PCA, np.ndarray], x: np.ndarray, same: bool) -> np.ndarray:
        pca, scale = model
        z = x.astype(np.float64) / scale
        residual: np.ndarray = z - pca.inverse_transform(pca.transform(z))
        mse: np.ndarray = np.mean(residual * residual, axis=1)
        return mse


class IsolationForestScorer(PerTileScorer):
    """scikit-learn IsolationForest; score = minus `score_samples` (shorter paths = higher)."""

    name = "iforest"

    def __init__(self, n_estimators: int = 200, max_samples: int | float | str = "auto", seed: int = 0) -> None:
        super().__init__()
        self.n_estimators = _positive_int(n_estimators, "n_estimators")
        self.max_samples = max_samples
        self.seed = int(seed)

    def params(self) -> dict[str, Any]:
        return {"n_estimators": self.n_estimators, "max_samples": self.max_samples, "seed": self.seed}

    def _fit_one(self, x: np.ndarray) -> IsolationForest:
        return IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=self.seed
        ).fit(x)

    def _score_one(self, model: IsolationForest, x: np.ndarray, same: bool) -> np.ndarray:
        scores: np.ndarray = -np.asarray(model.score_samples(x), dtype=np.float64)
        return scores


__all__ = ["IsolationForestScorer", "KNNScorer", "PCAScorer"]
