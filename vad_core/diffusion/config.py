"""The training recipe as one frozen config (method.md, k-diffusion defaults).

`TrainConfig` travels with every checkpoint (`to_dict` / `from_dict`), so the scoring side can
read the noise range a model was trained on without importing the training loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from vad_core.diffusion.network import DenoiserConfig
from vad_core.diffusion.preprocessing import MODES
from vad_core.errors import VADInputError

PRECISIONS = ("auto", "fp32", "bf16")
STOP_ON = ("rows", "videos")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `fit` needs; defaults from method.md and k-diffusion's config defaults."""

    epochs: int = 50
    batch_size: int = 8192
    min_steps_per_epoch: int = 40
    lr: float = 2e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.95, 0.999)  # k-diffusion's AdamW betas and eps
    eps: float = 1e-6
    lr_inv_gamma: float = 20000.0  # InverseLR
    lr_power: float = 1.0
    lr_warmup: float = 0.99
    ema_inv_gamma: float = 1.0  # EMAWarmup
    ema_power: float = 0.6667
    ema_max: float = 0.9999
    ema_min: float = 0.0
    P_mean: float = -1.2
    P_std: float = 1.2
    val_fraction: float = 0.1
    # What early stopping watches: "rows" = the random held-back rows (also the memorization diagnostic's);
    # "videos" = whole videos (about val_fraction of the rows, `fit(groups=...)`) held back besides them: clips
    # of one video are near-duplicates, so random rows cannot show a model fitting its own videos.
    stop_on: str = "rows"
    patience: int = 10  # epochs without a lower validation loss before stopping; 0 = never stop early
    val_draws: int = 4  # noise draws per held-back row in the validation loss
    seed: int = 0
    device: str | None = None  # None = CUDA, then MPS, then CPU
    precision: str = "auto"  # auto = bf16 autocast on a bf16-capable GPU, float32 elsewhere
    scaler: str = "global"
    hidden: tuple[int, ...] = (1024, 512, 256)
    embedding: str = "film"
    fourier_features: int = 128
    emb_dim: int = 128  # width of the noise-embedding mapping MLP
    n_tiles: int = 0  # > 0: learned tile-position embedding; fit() then needs tiles in [0, n_tiles)
    memorization_rows: int = 4096  # rows of each side scored for the memorization AUC

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        positive_ints = ("epochs", "batch_size", "min_steps_per_epoch", "val_draws", "memorization_rows")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise VADInputError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (0.0 <= self.val_fraction < 1.0):
            raise VADInputError(f"TrainConfig.val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.stop_on not in STOP_ON:
            raise VADInputError(f"TrainConfig.stop_on must be one of {STOP_ON}, got {self.stop_on!r}")
        if self.stop_on == "videos" and self.val_fraction <= 0:
            raise VADInputError("TrainConfig.stop_on='videos' needs val_fraction > 0 (the share of videos held back)")
        if self.patience < 0:
            raise VADInputError(f"TrainConfig.patience must be >= 0, got {self.patience}")
        for name in ("lr", "P_std", "lr_inv_gamma", "ema_inv_gamma"):
            if not getattr(self, name) > 0:
                raise VADInputError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if not (0.0 <= self.lr_warmup < 1.0 and 0.0 <= self.ema_min <= self.ema_max < 1.0):
            raise VADInputError("TrainConfig: need 0 <= lr_warmup < 1 and 0 <= ema_min <= ema_max < 1")
        if self.precision not in PRECISIONS:
            raise VADInputError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.scaler not in MODES:
            raise VADInputError(f"TrainConfig.scaler must be one of {MODES}, got {self.scaler!r}")
        if self.n_tiles < 0:
            raise VADInputError(f"TrainConfig.n_tiles must be >= 0, got {self.n_tiles}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"], d["betas"] = list(self.hidden), list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys (from another version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def model_config(self, dim: int) -> DenoiserConfig:
        return DenoiserConfig(
            dim=dim,
            hidden=self.hidden,
            embedding=self.embedding,
            fourier_features=self.fourier_features,
            emb_dim=self.emb_dim,
            n_tiles=self.n_tiles,
            seed=self.seed,
        )


__all__ = ["PRECISIONS", "STOP_ON", "TrainConfig"]
