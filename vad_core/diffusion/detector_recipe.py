"""`DetectorRecipe`: how a detector is fitted and scored (the fields of `recipes.fit_detector`'s stages).

A frozen dataclass checked when built, so that a bad field is an error naming it before any fit
starts; `vad_core.diffusion.recipes` holds the named presets and the fitting stages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vad_core.diffusion.label_free import TRIM_RULES
from vad_core.diffusion.reconstruction import ScoreConfig
from vad_core.errors import VADInputError

SIGMA_RULES = ("rows", "videos")


@dataclass(frozen=True)
class DetectorRecipe:
    """How a detector is fitted and scored (the stages: `vad_core.diffusion.recipes`)."""

    name: str = "robust"
    screen_folds: int = 5  # K of the out-of-fold screen; 0 = no screen and no trim
    trim_share: float | None = None  # share dropped per tile; None = label-free (`trim_rule` on log OOF scores)
    max_share: float = 0.3  # cap of the label-free share
    trim_rule: str = "otsu"  # label-free share: "otsu" or "mixture" (label_free.TRIM_RULES)
    screen_sigma: float = 8.0  # sigma (sigma_data units) of the screen's out-of-fold scores
    # screens with their own fold assignment and seeds, averaged: a row's screen score is the mean of the R models
    # that never saw its video (the screen's seed, not the members', drove 69-85% of the default's seed spread)
    screen_repeats: int = 1
    # candidate multiples of train_config.hidden: the screen fits each width and keeps the one whose out-of-fold
    # errors have the lowest median (a label-free network size, issue 9 item 4); () = train_config.hidden as given
    width_scales: tuple[float, ...] = ()
    # coarse to fine: round r > 1 refits the screen (same folds and seeds) on the rows round r - 1 kept and re-scores
    # every row out-of-fold, so that anomalies a model restored because similar ones sat in its training folds stand
    # out; 1 = one screen
    screen_rounds: int = 1
    refit_folds: int = 1  # K of the deployed members; 1 = each trained on every kept row
    refit_seeds: int = 5  # seed replicates of the deployed members
    score_type: str = "denoising"  # or "reconstruction" (the paper's partial diffusion)
    sigma: float | None = None  # denoising sigma (sigma_data units); None = label_free_sigma
    sigma_rule: str = "rows"  # label_free_sigma leaves out the row ("rows") or its whole video ("videos")
    start_step: int = 9  # reconstruction only
    target_neighbours: float = 5.0  # label_free_sigma's target
    n_draws: int = 64  # noise draws per row and member (16 left ~2.5 AUC points of draw noise on Ped2)
    sigma_scales: tuple[float, ...] = (1.0,)  # denoising: geometric mean of errors at sigma * each (ScoreConfig)
    score_seed: int = 0
    fold_seed: int = 0

    def __post_init__(self) -> None:
        if self.screen_folds == 1 or self.screen_folds < 0:
            raise VADInputError(f"DetectorRecipe.screen_folds must be 0 or >= 2, got {self.screen_folds}")
        for field in ("refit_folds", "refit_seeds", "n_draws", "screen_repeats", "screen_rounds"):
            if getattr(self, field) < 1:
                raise VADInputError(f"DetectorRecipe.{field} must be >= 1, got {getattr(self, field)}")
        if self.trim_rule not in TRIM_RULES:
            raise VADInputError(f"DetectorRecipe.trim_rule must be one of {TRIM_RULES}, got {self.trim_rule!r}")
        if self.sigma_rule not in SIGMA_RULES:
            raise VADInputError(f"DetectorRecipe.sigma_rule must be one of {SIGMA_RULES}, got {self.sigma_rule!r}")
        if self.trim_share is not None and not 0.0 <= self.trim_share < 1.0:
            raise VADInputError(f"DetectorRecipe.trim_share must lie in [0, 1), got {self.trim_share}")
        object.__setattr__(self, "sigma_scales", tuple(float(v) for v in self.sigma_scales))
        object.__setattr__(self, "width_scales", tuple(float(v) for v in self.width_scales))
        if any(not w > 0 for w in self.width_scales) or len(set(self.width_scales)) != len(self.width_scales):
            raise VADInputError(f"DetectorRecipe.width_scales must be distinct and > 0, got {self.width_scales}")
        if self.width_scales and self.screen_folds == 0:
            raise VADInputError("DetectorRecipe.width_scales needs a screen (screen_folds >= 2) to compare widths")
        self.score_config(self.sigma or 1.0)  # ScoreConfig's own checks (e.g. sigma_scales), at construction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def score_config(self, sigma: float) -> ScoreConfig:
        return ScoreConfig(
            score_type=self.score_type,
            sigma=float(sigma),
            start_step=self.start_step,
            n_draws=self.n_draws,
            seed=self.score_seed,
            sigma_scales=self.sigma_scales,
        )


__all__ = ["DetectorRecipe", "SIGMA_RULES"]
