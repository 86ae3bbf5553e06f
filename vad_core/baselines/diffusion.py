"""The EDM denoiser behind the same fit/score interface as the baselines.

fit() is `vad_core.training.fit`; score() is `vad_core.scoring.score_rows`. Unlike the
per-tile baselines this is one pooled model: tile indices, when given, go to the denoiser
(a learned tile-position embedding when its config has `n_tiles > 0`). The training and
scoring modules are imported on first use, so the light baselines load without them.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from vad_core.errors import VADInputError, check_features


class DiffusionScorer:
    """k-diffusion (EDM) denoiser; score = partial-diffusion reconstruction or denoising error."""

    name = "diffusion"

    def __init__(
        self,
        train_config: Any | None = None,
        score_config: Any | None = None,
        callback: Callable[[dict], Any] | None = None,
    ) -> None:
        from vad_core.scoring import ScoreConfig
        from vad_core.training import TrainConfig

        self.train_config = train_config if train_config is not None else TrainConfig()
        self.score_config = score_config if score_config is not None else ScoreConfig()
        self.callback = callback
        self.result: Any | None = None  # the TrainResult of fit(): history, memorization AUC, ...
        self.denoiser: Any | None = None  # the TrainedDenoiser that scoring uses

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, score_config: Any | None = None, device: str | None = None
    ) -> "DiffusionScorer":
        """A fitted scorer from a checkpoint written by `training.save_checkpoint`."""
        from vad_core.training import load_checkpoint

        denoiser = load_checkpoint(path, device=device)
        scorer = cls(train_config=getattr(denoiser, "train_config", None), score_config=score_config)
        scorer.denoiser = denoiser
        return scorer

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "train": self.train_config.to_dict(), "score": self.score_config.to_dict()}

    def fit(self, features: np.ndarray, tiles: np.ndarray | None = None) -> "DiffusionScorer":
        """Train the denoiser on `features` `(N, D)` (tile indices `(N,)` optional)."""
        from vad_core.training import fit, trained_denoiser

        x = check_features(features)
        self.result = fit(x, self.train_config, callback=self.callback, tiles=tiles)
        self.denoiser = trained_denoiser(self.result)
        return self

    def score(
        self, features: np.ndarray, tiles: np.ndarray | None = None, row_keys: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores `(N,)` float64; `row_keys` `(N,)` int64 seed each row's noise (see scoring)."""
        from vad_core.scoring import score_rows

        if self.denoiser is None:
            raise VADInputError("diffusion: score() called before fit()")
        scores = score_rows(self.denoiser, features, self.score_config, tiles=tiles, row_keys=row_keys)
        return np.asarray(scores, dtype=np.float64)
