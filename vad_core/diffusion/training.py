"""Train the EDM denoiser on unlabelled feature rows: `fit` and its schedules (fit only).

Recipe (method.md, k-diffusion): AdamW; k-diffusion's inverse-decay LR schedule with
exponential warm-up (`InverseLR`: lr = base * (1 - warmup^(step+1)) * (1 + step/inv_gamma)^-power);
an EMA of the weights whose decay warms up (`EMAWarmup`: 1 - (1 + step/inv_gamma)^-power,
clipped to [min, max]); sigma ~ LogNormal(P_mean, P_std); bf16 autocast on GPU.

Against memorization (findings.md): a random `val_fraction` of the rows is held back; the EMA
model's loss on it, with the same noise at every evaluation, drives early stopping, and the best
EMA weights are restored. With `TrainConfig.stop_on = "videos"` early stopping watches whole
held-back videos instead (`fit(groups=...)`; about `val_fraction` of the rows, never trained on),
and the random rows still measure memorization. The diagnostic `memorization_auc` is the ROC AUC separating held-back
from training rows by the one-step denoising score (0.5 = the model treats them alike).

Budget on small datasets: an epoch is one pass over the training rows *or* `min_steps_per_epoch`
optimiser steps, whichever is more. Ped2 has ~900 tile rows, one batch of 8192 would make
50 epochs 50 steps, too few to train; with the floor, 50 epochs are at least 2000 steps and
early-stopping patience keeps a meaning in steps. Large datasets are unaffected.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from vad_core._malloc import reuse_large_allocations
from vad_core.devices import resolve_device
from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.denoiser import TrainedDenoiser, cpu_state_dict
from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser
from vad_core.diffusion.precond import EDMPrecond, edm_loss, measure_sigma_data
from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.errors import VADInputError, check_features
from vad_core.io.hashing import fingerprint_array


def lr_factor(step: int, config: TrainConfig) -> float:
    """k-diffusion InverseLR multiplier at optimiser step `step` (0-based)."""
    warmup = 1.0 - config.lr_warmup ** (step + 1)
    return float(warmup * (1.0 + step / config.lr_inv_gamma) ** -config.lr_power)


def ema_decay(step: int, config: TrainConfig) -> float:
    """k-diffusion EMAWarmup value after `step` updates (0 at the first: EMA = the weights)."""
    value = float(1.0 - (1.0 + step / config.ema_inv_gamma) ** -config.ema_power)
    return min(config.ema_max, max(config.ema_min, value))


@torch.no_grad()
def ema_update(model: torch.nn.Module, ema: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers copied."""
    ema_params: list[torch.Tensor] = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


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
    val_indices: np.ndarray  # (n_val,) row indices held back at random (early stopping, memorization)
    # (n_stop,) rows of the whole videos held back for early stopping (stop_on "videos"; empty otherwise)
    stop_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def denoiser(self) -> TrainedDenoiser:
        return trained_denoiser(self)

    @property
    def fit_indices(self) -> np.ndarray:
        """`(n_train,)` sorted indices of `fit`'s rows the optimiser saw: neither held back at random nor in a
        video held back for stopping (the memorization diagnostic's training side)."""
        n = self.n_train + self.n_val + self.stop_indices.size
        return np.delete(np.arange(n, dtype=np.int64), np.concatenate([self.val_indices, self.stop_indices]))


def trained_denoiser(result: TrainResult) -> TrainedDenoiser:
    """The scoring view of a `TrainResult` (shares the EMA model, no copy)."""
    return TrainedDenoiser(
        model=result.ema_model,
        scaler=result.scaler,
        sigma_data=result.sigma_data,
        model_config=result.model_config,
        train_config=result.config,
        fingerprint=result.fingerprint,
        history=result.history,
        memorization_auc=result.memorization_auc,
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


def split_videos(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of whole videos held back: videos in a seeded order until >= `fraction` of the rows.

    At least one video is held back and at least one is left to train on.
    """
    g = np.asarray(groups).astype(str)
    names = np.unique(g)
    if names.size < 2:
        raise VADInputError(f"groups: {names.size} video(s); stop_on='videos' needs at least 2")
    target = fraction * g.size
    held: list[str] = []
    count = 0
    for v in names[np.random.default_rng(seed + 3).permutation(names.size)][:-1]:
        held.append(str(v))
        count += int((g == v).sum())
        if count >= target:
            break
    return np.flatnonzero(np.isin(g, held)).astype(np.int64)


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
    groups: np.ndarray | None = None,
) -> TrainResult:
    """Train on unlabelled rows `(N, D)` (tiles `(N,)` if `config.n_tiles > 0`); see the module docstring.

    `groups (N,)`: the video of each row, needed when `config.stop_on == "videos"`.
    """
    # On CPU, keep freed activations in the heap for the next step instead of unmapping and
    # page-faulting them in again (vad_core._malloc); restored and trimmed on return.
    with reuse_large_allocations(resolve_device(config.device).type == "cpu"):
        return _fit(features, config, callback, tiles, groups)


def _fit(
    features: np.ndarray,
    config: TrainConfig,
    callback: Callable[[dict[str, Any]], Any] | None,
    tiles: np.ndarray | None,
    groups: np.ndarray | None = None,
) -> TrainResult:
    x = check_features(features, name="features")
    n, dim = x.shape
    tile_arr = _check_tiles(tiles, n, config.n_tiles)
    fingerprint = fingerprint_array(x)
    device = resolve_device(config.device)
    stop_idx = np.zeros(0, dtype=np.int64)
    if config.stop_on == "videos":
        if groups is None or np.asarray(groups).shape != (n,):
            raise VADInputError(f"groups: stop_on='videos' needs the video of each of the {n} rows")
        stop_idx = split_videos(np.asarray(groups), config.val_fraction, config.seed)
    rest = np.setdiff1d(np.arange(n), stop_idx)
    # the random split of the remaining rows, as without held-back videos (same seed, indices mapped back)
    train_pos, val_pos = _split(rest.size, config.val_fraction, config.seed)
    train_idx, val_idx = rest[train_pos], rest[val_pos]

    scaler = FeatureScaler(config.scaler).fit(x[train_idx])
    x_train_np = scaler.transform(x[train_idx])
    sigma_data = measure_sigma_data(x_train_np)
    x_train = torch.from_numpy(x_train_np).to(device)
    x_val = torch.from_numpy(scaler.transform(x[val_idx])).to(device) if val_idx.size else None

    def to_t(idx: np.ndarray) -> torch.Tensor | None:
        return None if tile_arr is None else torch.from_numpy(tile_arr[idx]).to(device)

    t_train, t_val = to_t(train_idx), to_t(val_idx)
    # the held-back videos (stop_on "videos"); without them early stopping watches the random rows
    x_stop = torch.from_numpy(scaler.transform(x[stop_idx])).to(device) if stop_idx.size else None
    t_stop = to_t(stop_idx)

    model_config = config.model_config(dim)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = EDMPrecond(MLPDenoiser(model_config), sigma_data).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    # The fused kernel updates a whole tensor per call; torch's CPU default is a per-tensor loop
    # of ~10 elementwise ops each, whose many small parallel regions cost more than the update.
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    noise_gen = torch.Generator(device=device).manual_seed(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed + 1)

    n_train = train_idx.size
    batch = min(config.batch_size, n_train)
    steps_per_epoch = max(math.ceil(n_train / batch), config.min_steps_per_epoch)
    queue = torch.empty(0, dtype=torch.long)  # row order stream, reshuffled whenever it runs dry
    history: list[dict[str, Any]] = []
    # (val_loss, epoch, model state, ema state)
    best: tuple[float, int, dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None] = (math.inf, 0, None, None)
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
                loss = (
                    edm_loss(
                        model,
                        x_train[idx],
                        config.P_mean,
                        config.P_std,
                        tile=None if t_train is None else t_train[idx],
                        generator=noise_gen,
                    )
                    .float()
                    .mean()
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
            opt.step()
            decay = ema_decay(step, config)
            ema_update(model, ema, decay)
            loss_sum += loss.detach()
            step += 1
        train_loss = float(loss_sum) / steps_per_epoch
        if not math.isfinite(train_loss):
            raise RuntimeError(f"training diverged at epoch {epoch} (loss {train_loss}); lower TrainConfig.lr")
        val_loss = _val_loss(ema, x_val, t_val, config) if x_val is not None else None
        stop_loss = val_loss if x_stop is None else _val_loss(ema, x_stop, t_stop, config)
        record = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "stop_loss": stop_loss,
            "lr": config.lr * lr_factor(step - 1, config),
            "ema_decay": decay,
        }
        history.append(record)
        if stop_loss is not None and stop_loss < best[0]:
            best = (stop_loss, epoch, cpu_state_dict(model), cpu_state_dict(ema))
        if callback is not None:
            callback(
                {
                    "event": "epoch",
                    "epochs": config.epochs,
                    "best_epoch": best[1],
                    "elapsed_s": time.perf_counter() - start,
                    **record,
                }
            )
        if stop_loss is not None and config.patience and epoch - best[1] >= config.patience:
            break
    best_epoch = history[-1]["epoch"]
    if best[2] is not None and best[3] is not None:
        model.load_state_dict(best[2])
        ema.load_state_dict(best[3])
        best_epoch = best[1]
    model.eval()

    result = TrainResult(
        model=model,
        ema_model=ema,
        scaler=scaler,
        sigma_data=sigma_data,
        history=history,
        memorization_auc=None,
        fingerprint=fingerprint,
        config=config,
        model_config=model_config,
        best_epoch=best_epoch,
        n_train=int(n_train),
        n_val=int(val_idx.size),
        val_indices=val_idx,
        stop_indices=stop_idx,
    )
    result.memorization_auc = memorization_auc(result.denoiser, x, train_idx, val_idx, tile_arr, config)
    if callback is not None:
        callback(
            {
                "event": "done",
                "epochs_run": len(history),
                "best_epoch": best_epoch,
                "memorization_auc": result.memorization_auc,
                "elapsed_s": time.perf_counter() - start,
            }
        )
    return result


def memorization_auc(
    denoiser: TrainedDenoiser,
    x: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    tiles: np.ndarray | None,
    config: TrainConfig,
) -> float | None:
    """ROC AUC of held-back (positive) vs training rows by one-step denoising score; None without held-back rows.

    0.5: the model scores unseen rows like the rows it was fitted on; towards 1: it has
    memorized its training rows. At most `config.memorization_rows` rows of each side are scored.
    """
    if val_idx.size == 0:
        return None
    rng = np.random.default_rng(config.seed + 2)
    k = config.memorization_rows
    tr = np.sort(rng.choice(train_idx, size=min(k, train_idx.size), replace=False))
    va = np.sort(rng.choice(val_idx, size=min(k, val_idx.size), replace=False))
    rows = np.concatenate([tr, va])
    score_config = ScoreConfig(score_type="denoising", n_draws=4, seed=config.seed)
    scores = score_rows(
        denoiser, x[rows], score_config, tiles=None if tiles is None else tiles[rows], row_keys=rows.astype(np.int64)
    )
    labels = np.concatenate([np.zeros(tr.size), np.ones(va.size)])
    return float(roc_auc_score(labels, scores))


__all__ = [
    "TrainConfig",
    "TrainResult",
    "ema_decay",
    "ema_update",
    "fit",
    "lr_factor",
    "memorization_auc",
    "split_videos",
    "trained_denoiser",
]
