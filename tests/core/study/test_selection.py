"""Label-free sigma choice: the ideal leave-one-out denoiser's neighbour count, in the model's space."""

from __future__ import annotations

import numpy as np

from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.study.selection import choose_sigma, label_free_sigma, posterior_neighbours


def _clusters(
    n_clusters: int = 8, size: int = 6, dim: int = 16, spread: float = 1e-3, gap: float = 100.0
) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_clusters, dim)) * gap
    return (np.repeat(centres, size, axis=0) + rng.normal(size=(n_clusters * size, dim)) * spread).astype(np.float32)


def test_neighbour_count_of_tight_far_clusters_is_the_other_cluster_members() -> None:
    x = _clusters(size=6).astype(np.float64)
    # sigma far above the within-cluster spread, far below the gap: the leave-one-out posterior
    # spreads evenly over the 5 other members of the row's cluster -> n_eff = 1 / (5 * (1/5)^2) = 5.
    assert abs(posterior_neighbours(x, [1.0])[0] - 5.0) < 1e-3
    # sigma far below the spread: one nearest twin carries all the weight.
    assert abs(posterior_neighbours(x, [1e-5])[0] - 1.0) < 1e-3


def test_label_free_sigma_uses_the_denoisers_scale() -> None:
    x = _clusters(size=6)
    scaler = FeatureScaler("global").fit(x)
    sigma_data = float(np.asarray(scaler.transform(x)).std())
    candidates = (1e-6, 1e-2, 1e3)
    sigma, counts = label_free_sigma(scaler, sigma_data, x, candidates=candidates, target=5.0)
    expected = posterior_neighbours(np.asarray(scaler.transform(x), np.float64) / sigma_data, candidates)
    assert counts == {f"sigma={s:g}": float(c) for s, c in zip(candidates, expected, strict=False)}
    assert sigma == choose_sigma(expected, candidates, 5.0) == 1e-2
