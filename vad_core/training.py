"""Train the EDM denoiser on unlabelled feature rows; checkpoints that load with weights_only=True.

Recipe (method.md, k-diffusion): AdamW; k-diffusion's inverse-decay LR schedule with
exponential warm-up (`InverseLR`: lr = base * (1 - warmup^(step+1)) * (1 + step/inv_gamma)^-power);
an EMA of the weights whose decay warms up (`EMAWarmup`: 1 - (1 + step/inv_gamma)^-power,
clipped to [min, max]); sigma ~ LogNormal(P_mean, P_std); bf16 autocast on GPU.

Against memorization (findings.md): a random `val_fraction` of the rows is held back; the EMA
model's loss on it, with the same noise at every evaluation, drives early stopping, and the best
EMA weights are restored. The diagnostic `memorization_auc` is the ROC AUC separating held-back
from training rows by the one-step denoising score (0.5 = the model treats them alike).

Budget on small datasets: an epoch is one pass over the training rows *or* `min_steps_per_epoch`
optimiser steps, whichever is more. Ped2 has ~900 tile rows, one batch of 8192 would make
50 epochs 50 steps, too few to train; with the floor, 50 epochs are at least 2000 steps and
early-stopping patience keeps a meaning in steps. Large datasets are unaffected.
"""
from __future__ import annotations

import copy
import io
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vad_core._malloc import reuse_large_allocations
from vad_core.devices import resolve_device
from vad_core.diffusion import EDMPrecond, edm_loss, measure_sigma_data
from vad_core.errors import VADInputError, check_features
from vad_core.model import DenoiserConfig, MLPDenoiser
from vad_core.preprocessing import MODES, FeatureScaler
from vad_core.io.hashing import fingerprint_array
from vad_core.io.tables import atomic_write_bytes

CHECKPOINT_FORMAT = "vad_core.denoiser/1"
_PRECISIONS = ("auto", "fp32", "bf16")


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
        if self.patience < 0:
            raise VADInputError(f"TrainConfig.patience must be >= 0, got {self.patience}")
        for name in ("lr", "P_std", "lr_inv_gamma", "ema_inv_gamma"):
            if not getattr(self, name) > 0:
                raise VADInputError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if not (0.0 <= self.lr_warmup < 1.0 and 0.0 <= self.ema_min <= self.ema_max < 1.0):
            raise VADInputError("TrainConfig: need 0 <= lr_warmup < 1 and 0 <= ema_min <= ema_max < 1")
        if self.precision not in _PRECISIONS:
            raise VADInputError(f"TrainConfig.precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.scaler not in MODES:
            raise VADInputError(f"TrainConfig.scaler must be one of {MODES}, got {self.scaler!r}")
        if self.n_tiles < 0:
            raise VADInputError(f"TrainConfig.n_tiles must be >= 0, got {self.n_tiles}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"], d["betas"] = list(self.hidden), list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys (from another version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def model_config(self, dim: int) -> DenoiserConfig:
        return DenoiserConfig(
            dim=dim, hidden=self.hidden, embedding=self.embedding, fourier_features=self.fourier_features,
            emb_dim=self.emb_dim, n_tiles=self.n_tiles, seed=self.seed,
        )


def lr_factor(step: int, config: TrainConfig) -> float:
    """k-diffusion InverseLR multiplier at optimiser step `step` (0-based)."""
    warmup = 1.0 - config.lr_warmup ** (step + 1)
    return warmup * (1.0 + step / config.lr_inv_gamma) ** -config.lr_power


def ema_decay(step: int, config: TrainConfig) -> float:
    """k-diffusion EMAWarmup value after `step` updates (0 at the first: EMA = the weights)."""
    value = 1.0 - (1.0 + step / config.ema_inv_gamma) ** -config.ema_power
    return min(config.ema_max, max(config.ema_min, value))


@torch.no_grad()
def ema_update(model: torch.nn.Module, ema: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers copied."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@dataclass
class TrainedDenoiser:
    """What scoring needs: the EMA denoiser (eval mode), the scaler and the provenance."""

    model: EDMPrecond
    scaler: FeatureScaler
    sigma_data: float
    model_config: DenoiserConfig
    train_config: TrainConfig
    fingerprint: str
    history: list[dict[str, Any]] = field(default_factory=list)
    memorization_auc: float | None = None
    source: str | None = None  # checkpoint path, for error messages

    @property
    def dim(self) -> int:
        return self.model_config.dim

    @property
    def n_tiles(self) -> int:
        return self.model_config.n_tiles

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> str:
        where = f"checkpoint {self.source}" if self.source else "the trained denoiser"
        return f"{where} (trained on {self.dim}-dimensional features, fingerprint {self.fingerprint[:12]})"

    @torch.no_grad()
    def denoise(self, x_scaled: torch.Tensor, sigma: float | torch.Tensor, tiles: torch.Tensor | None = None) -> torch.Tensor:
        """D(x; sigma) for scaled rows `(N, D)`; sigma a scalar or `(N,)`; tiles `(N,)` used iff n_tiles > 0."""
        return self.model(x_scaled, sigma, tiles if self.n_tiles > 0 else None)

    def to(self, device: str | torch.device) -> "TrainedDenoiser":
        self.model.to(resolve_device(str(device)))
        return self


@dataclass
class TrainResult:
    """Output of `fit`: raw and EMA denoisers (both `EDMPrecond`, restored to the best epoch) and records."""

    model: EDMPrecond
    ema_model: EDMPrecond
    scaler: FeatureScaler
    sigma_data: float
    history: list[dict[str, Any]]
    memorization_auc: float | None
    fingerprint: str
    config: TrainConfig
    model_config: DenoiserConfig
    best_epoch: int
    n_train: int
    n_val: int
    val_indices: np.ndarray  # (n_val,) row indices held back

    @property
    def denoiser(self) -> TrainedDenoiser:
        return trained_denoiser(self)


def trained_denoiser(result: TrainResult) -> TrainedDenoiser:
    """The scoring view of a `TrainResult` (shares the EMA model, no copy)."""
    return TrainedDenoiser(
        model=result.ema_model, scaler=result.scaler, sigma_data=result.sigma_data,
        model_config=result.model_config, train_config=result.config, fingerprint=result.fingerprint,
        history=result.history, memorization_auc=result.memorization_auc,
    )


def _check_tiles(tiles: Any, n_rows: int, n_tiles: int) -> np.ndarray | None:
    """Tile indices `(N,)` int64 in [0, n_tiles) when the model embeds tiles; ignored otherwise."""
    if n_tiles == 0:
        return None
    if tiles is None:
        raise VADInputError(f"tiles: required because TrainConfig.n_tiles = {n_tiles} (tile-position embedding)")
    arr = np.asarray(tiles)
    if arr.shape != (n_rows,) or not np.issubdtype(arr.dtype, np.integer):
        raise VADInputError(f"tiles: expected integer shape ({n_rows},), got {arr.dtype} {arr.shape}")
    if arr.min() < 0 or arr.max() >= n_tiles:
        raise VADInputError(f"tiles: indices must lie in [0, {n_tiles}), got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0 and n >= 4:
        n_val = max(1, n_val)
    if n - n_val < 2:
        raise VADInputError(f"features: {n} rows leave {n - n_val} for training; need at least 2")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    if precision == "auto":
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
    else:
        use = precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


@torch.no_grad()
def _val_loss(model: EDMPrecond, x_val: torch.Tensor, t_val: torch.Tensor | None, config: TrainConfig) -> float:
    """Mean EDM loss on held-back rows; the generator is reseeded so every evaluation sees the same noise."""
    gen = torch.Generator(device=x_val.device).manual_seed(config.seed + 7919)
    total = 0.0
    for _ in range(config.val_draws):
        for s in range(0, x_val.shape[0], config.batch_size):
            xb = x_val[s : s + config.batch_size]
            tb = None if t_val is None else t_val[s : s + config.batch_size]
            with _autocast(x_val.device, config.precision):
                total += float(edm_loss(model, xb, config.P_mean, config.P_std, tile=tb, generator=gen).float().sum())
    return total / (config.val_draws * x_val.shape[0])


def fit(
    features: np.ndarray,
    config: TrainConfig = TrainConfig(),
    callback: Callable[[dict[str, Any]], Any] | None = None,
    tiles: np.ndarray | None = None,
) -> TrainResult:
    """Train on unlabelled rows `(N, D)` (tiles `(N,)` if `config.n_tiles > 0`); see the module docstring."""
    # On CPU, keep freed activations in the heap for the next step instead of unmapping and
    # page-faulting them in again (vad_core/_malloc.py); restored and trimmed on return.
    with reuse_large_allocations(resolve_device(config.device).type == "cpu"):
        return _fit(features, config, callback, tiles)


def _fit(
    features: np.ndarray,
    config: TrainConfig,
    callback: Callable[[dict[str, Any]], Any] | None,
    tiles: np.ndarray | None,
) -> TrainResult:
    x = check_features(features, name="features")
    n, dim = x.shape
    tile_arr = _check_tiles(tiles, n, config.n_tiles)
    fingerprint = fingerprint_array(x)
    device = resolve_device(config.device)
    train_idx, val_idx = _split(n, config.val_fraction, config.seed)

    scaler = FeatureScaler(config.scaler).fit(x[train_idx])
    x_train_np = scaler.transform(x[train_idx])
    sigma_data = measure_sigma_data(x_train_np)
    x_train = torch.from_numpy(x_train_np).to(device)
    x_val = torch.from_numpy(scaler.transform(x[val_idx])).to(device) if val_idx.size else None
    to_t = lambda idx: None if tile_arr is None else torch.from_numpy(tile_arr[idx]).to(device)  # noqa: E731
    t_train, t_val = to_t(train_idx), to_t(val_idx)

    model_config = config.model_config(dim)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = EDMPrecond(MLPDenoiser(model_config), sigma_data).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    # The fused kernel updates a whole tensor per call; torch's CPU default is a per-tensor loop
    # of ~10 elementwise ops each, whose many small parallel regions cost more than the update.
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps,
                            weight_decay=config.weight_decay, fused=device.type in ("cpu", "cuda"))
    noise_gen = torch.Generator(device=device).manual_seed(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed + 1)

    n_train = train_idx.size
    batch = min(config.batch_size, n_train)
    steps_per_epoch = max(math.ceil(n_train / batch), config.min_steps_per_epoch)
    queue = torch.empty(0, dtype=torch.long)  # row order stream, reshuffled whenever it runs dry
    history: list[dict[str, Any]] = []
    best = (math.inf, 0, None, None)  # (val_loss, epoch, model state, ema state)
    step, start = 0, time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        for _ in range(steps_per_epoch):
            while queue.numel() < batch:
                queue = torch.cat([queue, torch.randperm(n_train, generator=order_gen)])
            idx, queue = queue[:batch].to(device), queue[batch:]
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_factor(step, config)
            with _autocast(device, config.precision):
                loss = edm_loss(model, x_train[idx], config.P_mean, config.P_std,
                                tile=None if t_train is None else t_train[idx], generator=noise_gen).float().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            decay = ema_decay(step, config)
            ema_update(model, ema, decay)
            loss_sum += loss.detach()
            step += 1
        train_loss = float(loss_sum) / steps_per_epoch
        if not math.isfinite(train_loss):
            raise RuntimeError(f"training diverged at epoch {epoch} (loss {train_loss}); lower TrainConfig.lr")
        val_loss = _val_loss(ema, x_val, t_val, config) if x_val is not None else None
        record = {"epoch": epoch, "step": step, "train_loss": train_loss, "val_loss": val_loss,
                  "lr": config.lr * lr_factor(step - 1, config), "ema_decay": decay}
        history.append(record)
        if val_loss is not None and val_loss < best[0]:
            best = (val_loss, epoch, _cpu_state(model), _cpu_state(ema))
        if callback is not None:
            callback({"event": "epoch", "epochs": config.epochs, "best_epoch": best[1],
                      "elapsed_s": time.perf_counter() - start, **record})
        if val_loss is not None and config.patience and epoch - best[1] >= config.patience:
            break
    best_epoch = history[-1]["epoch"]
    if best[2] is not None:
        model.load_state_dict(best[2])
        ema.load_state_dict(best[3])
        best_epoch = best[1]
    model.eval()

    result = TrainResult(
        model=model, ema_model=ema, scaler=scaler, sigma_data=sigma_data, history=history,
        memorization_auc=None, fingerprint=fingerprint, config=config, model_config=model_config,
        best_epoch=best_epoch, n_train=int(n_train), n_val=int(val_idx.size), val_indices=val_idx,
    )
    result.memorization_auc = memorization_auc(result.denoiser, x, train_idx, val_idx, tile_arr, config)
    if callback is not None:
        callback({"event": "done", "epochs_run": len(history), "best_epoch": best_epoch,
                  "memorization_auc": result.memorization_auc, "elapsed_s": time.perf_counter() - start})
    return result


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def memorization_auc(
    denoiser: TrainedDenoiser, x: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
    tiles: np.ndarray | None, config: TrainConfig,
) -> float | None:
    """ROC AUC of held-back (positive) vs training rows by one-step denoising score; None without held-back rows.

    0.5: the model scores unseen rows like the rows it was fitted on; towards 1: it has
    memorized its training rows. At most `config.memorization_rows` rows of each side are scored.
    """
    from sklearn.metrics import roc_auc_score

    from vad_core.scoring import ScoreConfig, score_rows

    if val_idx.size == 0:
        return None
    rng = np.random.default_rng(config.seed + 2)
    k = config.memorization_rows
    tr = np.sort(rng.choice(train_idx, size=min(k, train_idx.size), replace=False))
    va = np.sort(rng.choice(val_idx, size=min(k, val_idx.size), replace=False))
    rows = np.concatenate([tr, va])
    score_config = ScoreConfig(score_type="denoising", n_draws=4, seed=config.seed)
    scores = score_rows(denoiser, x[rows], score_config, tiles=None if tiles is None else tiles[rows],
                        row_keys=rows.astype(np.int64))
    labels = np.concatenate([np.zeros(tr.size), np.ones(va.size)])
    return float(roc_auc_score(labels, scores))


# -- checkpoints ---------------------------------------------------------------------------

def save_checkpoint(result: TrainResult | TrainedDenoiser, path: str | os.PathLike) -> Path:
    """Write a checkpoint atomically (temp file + os.replace): state dicts, configs, sigma_data, scaler, history."""
    if isinstance(result, TrainResult):
        ema, raw, best_epoch = result.ema_model, result.model, result.best_epoch
        train_config, history, mem = result.config, result.history, result.memorization_auc
    else:
        ema, raw, best_epoch = result.model, None, None
        train_config, history, mem = result.train_config, result.history, result.memorization_auc
    payload = {
        "format": CHECKPOINT_FORMAT,
        "dim": result.model_config.dim,
        "model_config": result.model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "sigma_data": float(result.sigma_data),
        "fingerprint": result.fingerprint,
        "scaler": result.scaler.state_dict(),
        "ema_state_dict": _cpu_state(ema),
        "model_state_dict": None if raw is None else _cpu_state(raw),
        "history": [dict(h) for h in history],
        "memorization_auc": mem,
        "best_epoch": best_epoch,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike, device: str | None = None) -> TrainedDenoiser:
    """Load a checkpoint written by `save_checkpoint` (`torch.load(weights_only=True)`) onto `device`."""
    path = Path(path)
    if not path.is_file():
        raise VADInputError(f"checkpoint {path}: file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling/zip errors: report the file, not torch's internals
        raise VADInputError(f"checkpoint {path}: not a readable denoiser checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise VADInputError(f"checkpoint {path}: format {found!r} is not {CHECKPOINT_FORMAT!r}")
    try:
        model_config = DenoiserConfig(**payload["model_config"])
        train_config = TrainConfig.from_dict(payload["train_config"])
        scaler = FeatureScaler.from_state_dict(payload["scaler"])
        sigma_data = float(payload["sigma_data"])
        model = EDMPrecond(MLPDenoiser(model_config), sigma_data)
        model.load_state_dict(payload["ema_state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise VADInputError(f"checkpoint {path}: incomplete or inconsistent ({type(exc).__name__}: {exc})") from None
    if scaler.dim != model_config.dim:
        raise VADInputError(f"checkpoint {path}: scaler has {scaler.dim} dims, model {model_config.dim}")
    model.to(resolve_device(device)).eval().requires_grad_(False)
    return TrainedDenoiser(
        model=model, scaler=scaler, sigma_data=sigma_data, model_config=model_config, train_config=train_config,
        fingerprint=str(payload["fingerprint"]), history=list(payload.get("history") or []),
        memorization_auc=payload.get("memorization_auc"), source=str(path),
    )
