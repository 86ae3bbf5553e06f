"""Synthetic clip features for the training/scoring tests, and one small trained model shared by them.

A Gaussian mixture in D = 32 (three unit-variance components, centres ~ N(0, 2^2 I)), rows laid
out as clips x 3 tiles like the real tables; in 3% of the clips one tile is replaced by a planted
point at distance 12 from its component's centre, where normal rows lie at ~5.7 +- 0.7, so it is
off the data's support (kNN distance separates them perfectly).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from vad_core.diffusion.training import TrainConfig, TrainResult, fit

DIM = 32
N_TILES = 3


@dataclass(frozen=True)
class Mixture:
    features: np.ndarray  # (N, D) float32
    rows: pd.DataFrame  # video_id, clip, start_frame, end_frame, tile (one per feature row)
    clip_labels: np.ndarray  # (n_clips,) 1 = clip holds a planted point, in (video_id, clip) order
    planted_rows: np.ndarray  # indices of the planted rows


def mixture(seed: int = 0, n_clips: int = 300, frac: float = 0.03, radius: float = 12.0) -> Mixture:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, (3, DIM))
    n = n_clips * N_TILES
    comp = rng.integers(0, 3, n)
    x = centres[comp] + rng.normal(0.0, 1.0, (n, DIM))
    clips = np.repeat(np.arange(n_clips), N_TILES)
    tiles = np.tile(np.arange(N_TILES), n_clips)
    anomalous = rng.choice(n_clips, max(1, int(round(frac * n_clips))), replace=False)
    planted = anomalous * N_TILES + rng.integers(0, N_TILES, anomalous.size)
    direction = rng.normal(size=(planted.size, DIM))
    x[planted] = centres[comp[planted]] + radius * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    rows = pd.DataFrame(
        {
            "video_id": [f"video_{c // 50:02d}" for c in clips],
            "clip": clips % 50,
            "start_frame": (clips % 50) * 16,
            "end_frame": (clips % 50) * 16 + 16,
            "tile": tiles,
        }
    )
    labels = np.zeros(n_clips, dtype=np.int64)
    labels[anomalous] = 1  # clip c is (video_{c//50}, c%50): already in sorted (video_id, clip) order
    return Mixture(x.astype(np.float32), rows, labels, np.sort(planted))


# Small and fast: 10 epochs x 20 steps of 256 rows (a few seconds on 2 cores).
SMALL = TrainConfig(
    epochs=10,
    batch_size=256,
    min_steps_per_epoch=20,
    lr=2e-3,
    hidden=(128, 64, 32),
    emb_dim=32,
    fourier_features=32,
    seed=0,
    device="cpu",
)
# Tiny: for tests that need trained (non-trivial) weights, not a good model.
TINY = TrainConfig(
    epochs=2,
    batch_size=64,
    min_steps_per_epoch=5,
    lr=2e-3,
    hidden=(32, 16),
    emb_dim=16,
    fourier_features=16,
    seed=0,
    device="cpu",
    memorization_rows=256,
)


@cache
def trained(kind: str = "small") -> tuple[Mixture, TrainResult]:
    """The mixture and a model fitted on it, computed once per test session."""
    data = mixture()
    return data, fit(data.features, SMALL if kind == "small" else TINY)
