"""Per-row anomaly scores from a trained denoiser: reconstruction and denoising errors.

Two score types, both computed on the scaled features (the space the model was trained in):

- "reconstruction" (the paper's): partial diffusion. With sigma_0 > ... > sigma_{N-1} > 0 the
  N-step Karras schedule over `sigma_range(P_mean, P_std)` and a trailing 0, start at step t:
  x_t = x + sigma_t eps, run the reverse sampler over sigma_t, ..., 0, score = mean over
  dimensions of (x_hat - x)^2.
- "denoising": the one-step denoising error mean_d (D(x + sigma eps; sigma) - x)^2 at
  sigma = `config.sigma` * sigma_data (findings.md: far better on real footage). With
  `sigma_scales` (s_1, ..., s_J) the score is the geometric mean of the errors at
  `config.sigma` * s_j: each level's error scale cancels out of the ranking (a level's errors
  grow with sigma), so no per-level normalising constant has to be fitted or stored.

Both are averaged over `n_draws` noise draws. Each row's noise is a pure function of
(seed, row key, draw) (`vad_core.diffusion.noise`), and the denoiser has no batch statistics, so a row's
score does not depend on the rows it is batched with. Rows are processed `batch_rows` at a time
(a numpy memmap is read slice by slice), so memory stays bounded for any number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from vad_core.diffusion.denoiser import TrainedDenoiser
from vad_core.diffusion.noise import row_noise
from vad_core.diffusion.sampling import Model, get_sigmas_karras, sample_euler, sample_heun, sample_lms, sigma_range
from vad_core.errors import VADInputError, check_features

SCORE_TYPES = ("denoising", "reconstruction")
SAMPLERS = ("lms", "euler", "heun")
_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ScoreConfig:
    """How to score rows. `P_mean`/`P_std` None: take the trained model's (its sampling range)."""

    score_type: str = "denoising"
    n_steps: int = 10
    start_step: int = 9
    sampler: str = "lms"
    sigma: float = 2.0  # denoising score's noise level, in units of sigma_data
    n_draws: int = 8
    seed: int = 0
    batch_rows: int = 16384
    P_mean: float | None = None
    P_std: float | None = None
    lms_order: int = 4
    precision: str = "fp32"  # "bf16": autocast the denoiser (CPU with AVX-512 bf16, or GPU)
    sigma_scales: tuple[float, ...] = (1.0,)  # denoising: geometric mean of the errors at sigma * each scale

    def __post_init__(self) -> None:
        if self.score_type not in SCORE_TYPES:
            raise VADInputError(f"ScoreConfig.score_type must be one of {SCORE_TYPES}, got {self.score_type!r}")
        if self.sampler not in SAMPLERS:
            raise VADInputError(f"ScoreConfig.sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.precision not in _PRECISIONS:
            raise VADInputError(f"ScoreConfig.precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.n_steps < 1 or not (0 <= self.start_step < self.n_steps):
            raise VADInputError(
                f"ScoreConfig: need n_steps >= 1 and 0 <= start_step < n_steps, got {self.n_steps}, {self.start_step}"
            )
        for name in ("n_draws", "batch_rows", "lms_order"):
            if int(getattr(self, name)) < 1:
                raise VADInputError(f"ScoreConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.sigma > 0:
            raise VADInputError(f"ScoreConfig.sigma must be > 0 (units of sigma_data), got {self.sigma}")
        if self.P_std is not None and not self.P_std > 0:
            raise VADInputError(f"ScoreConfig.P_std must be > 0, got {self.P_std}")
        # a checkpoint's JSON/pickle round trip hands back a list: keep the field hashable and typed
        scales = tuple(float(v) for v in self.sigma_scales)
        object.__setattr__(self, "sigma_scales", scales)
        if not scales or min(scales) <= 0 or len(set(scales)) != len(scales):
            raise VADInputError(f"ScoreConfig.sigma_scales must be distinct positive numbers, got {list(scales)}")
        if scales != (1.0,) and self.score_type != "denoising":
            raise VADInputError(f"ScoreConfig.sigma_scales {list(scales)} applies to the denoising score only")

    @property
    def blended(self) -> bool:
        """Whether the score combines several noise levels (`sigma_scales` other than (1,))."""
        return self.sigma_scales != (1.0,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_rows(features: Any, denoiser: TrainedDenoiser, name: str) -> Any:
    """Shape checks without reading the data (a memmap stays on disk)."""
    if not hasattr(features, "shape") or not hasattr(features, "__getitem__"):
        features = np.asarray(features)
    shape = tuple(features.shape)
    if len(shape) != 2:
        raise VADInputError(f"{name}: expected a 2-D array (rows, dims), got shape {shape}")
    if shape[0] == 0:
        raise VADInputError(f"{name}: is empty (0 rows)")
    if shape[1] != denoiser.dim:
        raise VADInputError(f"{name}: have {shape[1]} dimensions, but {denoiser.describe()} expects {denoiser.dim}")
    return features


def _check_index(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise VADInputError(f"{name}: expected shape ({n},) (one per feature row), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise VADInputError(f"{name}: must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class _Scorer:
    """Per-call state: device, schedule, sampler; `__call__` scores one batch of rows."""

    def __init__(self, denoiser: TrainedDenoiser, config: ScoreConfig) -> None:
        self.denoiser, self.config = denoiser, config
        self.device = denoiser.device
        tc = denoiser.train_config
        p_mean = tc.P_mean if config.P_mean is None else config.P_mean
        p_std = tc.P_std if config.P_std is None else config.P_std
        sigmas = get_sigmas_karras(config.n_steps, *sigma_range(p_mean, p_std), device=self.device)
        self.sigmas = sigmas[config.start_step :]  # sigma_t, ..., sigma_{N-1}, 0
        samplers: dict[str, Callable[[Model, torch.Tensor, torch.Tensor], torch.Tensor]] = {
            "lms": partial(sample_lms, order=config.lms_order),
            "euler": sample_euler,
            "heun": sample_heun,
        }
        self.sampler = samplers[config.sampler]
        self.sigma = config.sigma * denoiser.sigma_data

    @torch.no_grad()
    def __call__(self, x: np.ndarray, tiles: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
        """Scores `(B,)` float64 of raw rows `x (B, D)`."""
        if x.shape[0] == 1:
            # oneDNN takes a GEMV path for a single row whose rounding differs from its GEMM
            # (measured: ~1e-8 relative); scoring the row twice keeps scores batch-independent.
            pair = None if tiles is None else np.repeat(tiles, 2)
            return self(np.repeat(x, 2, axis=0), pair, np.repeat(keys, 2))[:1]
        d, cfg = self.denoiser, self.config
        xs = torch.from_numpy(d.scaler.transform(x)).to(self.device)
        t = None if tiles is None or d.n_tiles == 0 else torch.from_numpy(tiles).to(self.device)
        acc = torch.zeros(x.shape[0], dtype=torch.float64, device=self.device)
        buf = np.empty(x.shape, dtype=np.float32)

        def model(z: torch.Tensor, s: float | torch.Tensor) -> torch.Tensor:
            return d.denoise(z, s, t)

        if cfg.score_type == "denoising" and x.shape[0] < cfg.batch_rows // 2:
            return self._stacked(xs, t, keys, acc)
        for draw in range(cfg.n_draws):
            eps = torch.from_numpy(row_noise(cfg.seed, keys, draw, x.shape[1], out=buf)).to(self.device)
            sigma = self.sigma if cfg.score_type == "denoising" else float(self.sigmas[0])
            x_noisy = eps.mul_(sigma).add_(xs)  # in place: eps is this draw's scratch buffer
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                if cfg.score_type == "denoising":
                    x_hat = model(x_noisy, self.sigma)
                else:
                    x_hat = self.sampler(model, x_noisy, self.sigmas)
            # float32 row sums (D terms) are ample for an MSE; the draws accumulate in float64
            acc += x_hat.float().sub_(xs).square_().sum(dim=1).double()
        scores: np.ndarray = (acc / (cfg.n_draws * x.shape[1])).cpu().numpy()
        return scores

    def _stacked(self, xs: torch.Tensor, t: torch.Tensor | None, keys: np.ndarray, acc: torch.Tensor) -> np.ndarray:
        """The denoising score of a few rows (one live clip's) with several draws in one forward pass:
        per draw a pass over 3 rows costs what one over hundreds does, so a clip's 64 draws x members
        were all overhead. Up to `batch_rows` rows per pass; each draw's noise, its rows' arithmetic and
        the order the draws are summed in are the one-draw-at-a-time path's."""
        d, cfg = self.denoiser, self.config
        b, dim = xs.shape
        per = max(1, min(cfg.n_draws, cfg.batch_rows // b))
        for first in range(0, cfg.n_draws, per):
            draws = range(first, min(cfg.n_draws, first + per))
            k = len(draws)
            eps = np.concatenate([row_noise(cfg.seed, keys, draw, dim) for draw in draws])
            base = xs.repeat(k, 1)
            x_noisy = torch.from_numpy(eps).to(self.device).mul_(self.sigma).add_(base)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                x_hat = d.denoise(x_noisy, self.sigma, None if t is None else t.repeat(k))
            err = x_hat.float().sub_(base).square_().sum(dim=1).double().view(k, b)
            for j in range(k):
                acc += err[j]
        scores: np.ndarray = (acc / (cfg.n_draws * dim)).cpu().numpy()
        return scores


def score_rows(
    denoiser: TrainedDenoiser,
    features: np.ndarray,
    config: ScoreConfig = ScoreConfig(),
    tiles: np.ndarray | None = None,
    row_keys: np.ndarray | None = None,
    name: str = "features",
) -> np.ndarray:
    """Anomaly scores `(N,)` float64 of rows `(N, D)` (array or memmap), `batch_rows` at a time.

    `tiles (N,)` feed the tile embedding when the model has one; `row_keys (N,)` int64 seed each
    row's noise (default: the row index; `vad_core.scoring.rows.row_keys_for` gives keys stable across tables).
    """
    features = _check_rows(features, denoiser, name)
    n = features.shape[0]
    tiles_arr = None if tiles is None else _check_index(tiles, n, "tiles")
    if denoiser.n_tiles > 0:
        if tiles_arr is None:
            raise VADInputError(f"tiles: required, {denoiser.describe()} has a tile embedding")
        if tiles_arr.min() < 0 or tiles_arr.max() >= denoiser.n_tiles:
            raise VADInputError(
                f"tiles: indices must lie in [0, {denoiser.n_tiles}), got [{tiles_arr.min()}, {tiles_arr.max()}]"
            )
    keys = np.arange(n, dtype=np.int64) if row_keys is None else _check_index(row_keys, n, "row_keys")
    # One scorer per noise level (a single-level config is its own only level); each batch of rows
    # is read and checked once and scored at every level, so a memmap is not read J times.
    levels = (
        [replace(config, sigma=config.sigma * f, sigma_scales=(1.0,)) for f in config.sigma_scales]
        if config.blended
        else [config]
    )
    scorers = [_Scorer(denoiser, c) for c in levels]
    out = np.empty((len(scorers), n), dtype=np.float64)  # (J, N) errors
    for s in range(0, n, config.batch_rows):
        e = min(n, s + config.batch_rows)
        chunk = features[s:e]
        try:
            x = check_features(chunk, name=f"{name} rows {s}:{e}")
        except VADInputError:
            bad = np.flatnonzero(~np.isfinite(np.asarray(chunk, dtype=np.float32)).all(axis=1))
            if bad.size:  # name the row in the caller's numbering, not the slice's
                raise VADInputError(
                    f"{name}: non-finite values in {bad.size} row(s) of rows {s}:{e} (first bad row: {s + bad[0]})"
                ) from None
            raise
        for j, scorer in enumerate(scorers):
            out[j, s:e] = scorer(x, None if tiles_arr is None else tiles_arr[s:e], keys[s:e])
    if not config.blended:
        single: np.ndarray = out[0]
        return single
    # mean squared errors are > 0 unless the model is exact; the floor keeps log finite then
    blended: np.ndarray = np.exp(np.log(np.maximum(out, np.finfo(np.float64).tiny)).mean(axis=0))
    return blended


def score_stream(
    denoiser: TrainedDenoiser, chunks: Iterable[Any], config: ScoreConfig = ScoreConfig()
) -> Iterator[np.ndarray]:
    """Score an iterable of chunks lazily, yielding `(n_i,)` float64 per chunk.

    A chunk is a feature array `(n_i, D)` or a tuple `(features, tiles, row_keys)` (tiles and
    row_keys may be None; default keys continue the running row index across chunks).
    """
    offset = 0
    for i, chunk in enumerate(chunks):
        feats, tiles, keys = (chunk, None, None) if not isinstance(chunk, tuple) else (tuple(chunk) + (None, None))[:3]
        feats = _check_rows(feats, denoiser, f"chunk {i}")
        n = feats.shape[0]
        if keys is None:
            keys = np.arange(offset, offset + n, dtype=np.int64)
        yield score_rows(denoiser, feats, config, tiles=tiles, row_keys=keys, name=f"chunk {i}")
        offset += n


__all__ = ["SAMPLERS", "SCORE_TYPES", "ScoreConfig", "score_rows", "score_stream"]
