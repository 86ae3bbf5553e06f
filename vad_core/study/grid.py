"""The study's grid: what is trained (settings, two phases) and how each model is scored."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd

from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.reconstruction import SCORE_TYPES, ScoreConfig
from vad_core.diffusion.training import TrainResult
from vad_core.errors import VADInputError
from vad_core.scoring.scorers import BASELINES

# A short budget with early stopping on the 10% held-back rows: the whole default grid fits in
# under 30 minutes on 2 CPU cores for Ped2-sized data (~700 rows).
STUDY_TRAIN = TrainConfig(epochs=30, min_steps_per_epoch=20, lr=1e-3, patience=5)


@dataclass(frozen=True)
class StudyConfig:
    """The grid. Phase 1: P_means x P_stds x embeddings at widths[0], scalers[0], seeds[0];
    phase 2: each further width, scaler and seed around each embedding's label-free model."""

    P_means: tuple[float, ...] = (-2.4, -1.2, 0.0)
    P_stds: tuple[float, ...] = (0.6, 1.2, 1.8)
    embeddings: tuple[str, ...] = ("film", "concat")
    widths: tuple[tuple[int, ...], ...] = ((64, 32, 16), (256, 128, 64), (1024, 512, 256))
    scalers: tuple[str, ...] = ("global", "per_dim")
    seeds: tuple[int, ...] = (0, 1, 2)
    tile_embedding: bool = True  # one pooled model with a learned tile-position embedding
    train: TrainConfig = STUDY_TRAIN  # base; P_mean, P_std, embedding, hidden, scaler, seed, n_tiles set per setting
    score_types: tuple[str, ...] = ("reconstruction", "denoising")
    n_steps: int = 10
    start_steps: tuple[int, ...] = tuple(range(10))
    sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # denoising score, units of sigma_data
    n_draws: int = 8
    sampler: str = "lms"
    score_seed: int = 0
    ks: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 1.0)
    smoothing_sigma: float | None = 8.0  # frames; None = no smoothed column
    threshold_batch_size: int = 8192
    reference_sigma: float = 2.0  # held-out denoising error at this sigma (units of sigma_data)
    target_neighbours: float = 5.0  # label-free denoising sigma: posterior spread over about this many rows
    reliability_rows: int = 2048
    max_memorization_auc: float = 0.6
    baselines: tuple[str, ...] = BASELINES
    baseline_kwargs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # (name, ((arg, value), ...))

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(tuple(int(h) for h in w) for w in self.widths))
        for name in ("P_means", "P_stds", "embeddings", "widths", "scalers", "seeds", "score_types", "ks"):
            if len(getattr(self, name)) == 0:
                raise VADInputError(f"StudyConfig.{name}: must not be empty")
        bad = [s for s in self.score_types if s not in SCORE_TYPES]
        if bad:
            raise VADInputError(f"StudyConfig.score_types: unknown {bad} (known: {SCORE_TYPES})")
        if any(not 0 <= t < self.n_steps for t in self.start_steps):
            raise VADInputError(f"StudyConfig.start_steps: must lie in [0, {self.n_steps})")
        if "reconstruction" in self.score_types and not self.start_steps:
            raise VADInputError("StudyConfig.start_steps: needed for the reconstruction score")
        if "denoising" in self.score_types and not self.sigmas:
            raise VADInputError("StudyConfig.sigmas: needed for the denoising score")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d

    def baseline_args(self, name: str) -> dict[str, Any]:
        return dict(dict(self.baseline_kwargs).get(name, ()))


@dataclass(frozen=True)
class TrainSetting:
    """One trained model of the study."""

    P_mean: float
    P_std: float
    embedding: str
    hidden: tuple[int, ...]
    scaler: str
    seed: int
    phase: str = "grid"  # grid | width | scaler | seed

    @property
    def setting_id(self) -> str:
        h = "-".join(str(w) for w in self.hidden)
        return f"{self.embedding}_pm{self.P_mean:g}_ps{self.P_std:g}_h{h}_{self.scaler}_s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["setting_id"] = self.setting_id
        return d

    def train_config(self, base: TrainConfig, n_tiles: int) -> TrainConfig:
        return replace(
            base,
            P_mean=self.P_mean,
            P_std=self.P_std,
            embedding=self.embedding,
            hidden=self.hidden,
            scaler=self.scaler,
            seed=self.seed,
            n_tiles=n_tiles,
        )


@dataclass
class TrainedSetting:
    """What the callback gets per trained model: the setting, the fit result and its table rows."""

    data_name: str
    setting: TrainSetting
    train_config: TrainConfig
    result: TrainResult
    summary: dict[str, Any]  # one row of StudyResult.models
    rows: pd.DataFrame  # this model's rows of the results table (k-expanded)


@dataclass
class StudyResult:
    table: pd.DataFrame  # one row per (model or baseline, scoring variant, k); `oracle`/`label_free` flags
    models: pd.DataFrame  # one row per trained model
    seconds: float
    config: StudyConfig
    data_names: list[str] = field(default_factory=list)


def variant_name(sc: ScoreConfig) -> str:
    """Short label of a scoring variant: `t=9` (reconstruction) or `sigma=2` (denoising)."""
    return f"t={sc.start_step}" if sc.score_type == "reconstruction" else f"sigma={sc.sigma:g}"


def score_variants(config: StudyConfig) -> list[ScoreConfig]:
    """Every scoring the study applies to each trained model."""
    out = []
    for st in config.score_types:
        if st == "reconstruction":
            out += [
                ScoreConfig(
                    score_type=st,
                    n_steps=config.n_steps,
                    start_step=t,
                    sampler=config.sampler,
                    n_draws=config.n_draws,
                    seed=config.score_seed,
                )
                for t in config.start_steps
            ]
        else:
            out += [
                ScoreConfig(
                    score_type=st, n_steps=config.n_steps, sigma=s, n_draws=config.n_draws, seed=config.score_seed
                )
                for s in config.sigmas
            ]
    return out


__all__ = [
    "STUDY_TRAIN",
    "StudyConfig",
    "StudyResult",
    "TrainSetting",
    "TrainedSetting",
    "score_variants",
    "variant_name",
]
