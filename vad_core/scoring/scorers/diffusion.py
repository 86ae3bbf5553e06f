"""The EDM denoiser behind the same fit/score interface as the baselines: the project's main method.

fit() is `vad_core.diffusion.training.fit`; score() is `vad_core.diffusion.reconstruction.score_rows`.
Unlike the per-tile baselines this is one pooled model: tile indices, when given, go to the
denoiser (a learned tile-position embedding when its config has `n_tiles > 0`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from vad_core.diffusion.denoiser import TrainedDenoiser, load_checkpoint
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.diffusion.training import TrainConfig, TrainResult, fit, trained_denoiser
from vad_core.errors import VADInputError, check_features


class DiffusionScorer:
    """k-diffusion (EDM) denoiser; score = partial-diffusion reconstruction or denoising error."""

    name = "diffusion"

    def __init__(
        self,
        train_config: TrainConfig | None = None,
        score_config: ScoreConfig | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.train_config = train_config if train_config is not None else TrainConfig()
        self.score_config = score_config if score_config is not None else ScoreConfig()
        self.callback = callback
        self.result: TrainResult | None = None  # the fit() result: history, memorization AUC, ...
        self.denoiser: TrainedDenoiser | None = None  # what scoring uses

    @classmethod
    def from_checkpoint(
        cls,
        source: str | os.PathLike[str] | bytes,
        score_config: ScoreConfig | None = None,
        device: str | None = None,
    ) -> DiffusionScorer:
        """A fitted scorer from a checkpoint file or its bytes (`vad_core.diffusion.denoiser`)."""
        denoiser = load_checkpoint(source, device=device)
        scorer = cls(train_config=denoiser.train_config, score_config=score_config)
        scorer.denoiser = denoiser
        return scorer

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "train": self.train_config.to_dict(), "score": self.score_config.to_dict()}

    def fit(self, features: np.ndarray, tiles: np.ndarray | None = None) -> DiffusionScorer:
        """Train the denoiser on `features` `(N, D)` (tile indices `(N,)` optional)."""
        x = check_features(features)
        self.result = fit(x, self.train_config, callback=self.callback, tiles=tiles)
        self.denoiser = trained_denoiser(self.result)
        return self

    def score(
        self, features: np.ndarray, tiles: np.ndarray | None = None, row_keys: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores `(N,)` float64; `row_keys` `(N,)` int64 seed each row's noise (see reconstruction)."""
        if self.denoiser is None:
            raise VADInputError("diffusion: score() called before fit()")
        scores = score_rows(self.denoiser, features, self.score_config, tiles=tiles, row_keys=row_keys)
        return np.asarray(scores, dtype=np.float64)


__all__ = ["DiffusionScorer"]
