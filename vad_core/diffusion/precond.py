"""EDM preconditioning and training loss (Karras et al. 2022, Table 1 / Eq. 7-8), kept apart from F.

D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)), with sigma_data
measured from the training features (method.md).
"""

from __future__ import annotations

import math
from typing import Any, overload

import numpy as np
import torch
from torch import nn

from vad_core.diffusion.network import MLPDenoiser
from vad_core.errors import VADInputError, check_features

Scalar = float | torch.Tensor


@overload
def edm_scalings(sigma: float, sigma_data: float) -> tuple[float, float, float, float]: ...


@overload
def edm_scalings(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]: ...


def edm_scalings(sigma: Scalar, sigma_data: float) -> tuple[Scalar, Scalar, Scalar, Scalar]:
    """EDM Table 1: (c_skip, c_out, c_in, c_noise) for `sigma` (float or tensor of any shape).

    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
    c_in = 1 / sqrt(sigma^2 + sigma_data^2), c_noise = ln(sigma) / 4.
    """
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total**0.5
    c_in = 1 / total**0.5
    c_noise = torch.log(sigma) / 4 if isinstance(sigma, torch.Tensor) else math.log(sigma) / 4
    return c_skip, c_out, c_in, c_noise


def measure_sigma_data(x: np.ndarray | torch.Tensor) -> float:
    """Standard deviation of all entries of the training matrix `(N, D)` (population std, float64)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = check_features(x, name="training features")
    sd = float(arr.std(dtype=np.float64))
    if not sd > 0:
        raise VADInputError("training features: every entry is the same value, sigma_data would be 0")
    return sd


class EDMPrecond(nn.Module):
    """The denoiser D(x; sigma) around an inner network F: `forward(x (N, D), sigma, tile=None) -> (N, D)`.

    `sigma` is a scalar (a float or 0-dim tensor: all rows share it, the samplers' case) or `(N,)` /
    `(N, 1)` per-row levels (training). sigma must be > 0; a scalar sigma of exactly 0 returns x,
    the limit D(x; 0) = x.
    """

    def __init__(self, inner: MLPDenoiser, sigma_data: float) -> None:
        super().__init__()
        sigma_data = float(sigma_data)
        if not (math.isfinite(sigma_data) and sigma_data > 0):
            raise VADInputError(f"sigma_data must be a positive finite number, got {sigma_data}")
        self.inner = inner
        self.sigma_data = sigma_data

    @property
    def dim(self) -> int:
        return self.inner.config.dim

    def forward(self, x: torch.Tensor, sigma: Scalar, tile: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise VADInputError(f"denoiser input x: expected shape (rows, {self.dim}), got {shape}")
        sigma_t = torch.as_tensor(sigma, device=x.device)
        if sigma_t.ndim == 0 or (sigma_t.numel() == 1 and x.shape[0] != 1):
            s = float(sigma_t)
            if not (math.isfinite(s) and s >= 0):
                raise VADInputError(f"sigma: must be a finite number >= 0, got {s}")
            if s == 0:
                return x.clone()
            c_skip, c_out, c_in, c_noise = edm_scalings(s, self.sigma_data)
            f: torch.Tensor = self.inner(x * c_in, torch.tensor(c_noise, device=x.device), tile)
            return torch.add(x * c_skip, f.to(x.dtype), alpha=c_out)
        if sigma_t.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise VADInputError(f"sigma: expected a scalar or shape ({x.shape[0]},), got {tuple(sigma_t.shape)}")
        sigma_t = sigma_t.reshape(-1, 1).to(x.dtype)
        skip_t, out_t, in_t, noise_t = edm_scalings(sigma_t, self.sigma_data)
        f = self.inner(x * in_t, noise_t.reshape(-1), tile)
        return skip_t * x + out_t * f.to(x.dtype)


def edm_loss(
    denoiser: EDMPrecond,
    x: torch.Tensor,
    P_mean: float,
    P_std: float,
    tile: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample EDM loss `(N,)` for clean rows `x (N, D)` (EDM Eq. 8 with lambda of Table 1).

    ln(sigma) ~ N(P_mean, P_std^2) per row, n ~ N(0, sigma^2 I); loss = mean over dims of
    (F(c_in (x + n); c_noise) - (x - c_skip (x + n)) / c_out)^2, which equals
    lambda(sigma) ||D(x + n; sigma) - x||^2 / D with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.
    Draw order (for reproduction): first `randn(N)` for sigma, then `randn(N, D)` for the noise.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != denoiser.dim or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise VADInputError(f"training batch x: expected shape (rows >= 1, {denoiser.dim}), got {shape}")
    n_rows = x.shape[0]
    rnd = torch.randn(n_rows, generator=generator, device=x.device, dtype=x.dtype)
    sigma = (rnd * P_std + P_mean).exp()[:, None]
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    c_skip, c_out, c_in, c_noise = edm_scalings(sigma, denoiser.sigma_data)
    x_noisy = torch.addcmul(x, noise, sigma)
    f: torch.Tensor = denoiser.inner(x_noisy * c_in, c_noise.reshape(-1), tile)
    target = torch.addcmul(x / c_out, x_noisy, -c_skip / c_out)  # (x - c_skip x_noisy) / c_out in two passes
    return row_mse(f.to(x.dtype), target)


class _RowMSE(torch.autograd.Function):
    """Per-row mean squared error `(N, D), (N, D) -> (N,)`, one full-size pass each way.

    `F.mse_loss(reduction="none").mean(1)` writes the squared errors, then in backward fills and
    divides the expanded row gradient and runs mse_loss_backward: five full-size passes against
    two here (difference, then its scaled copy).
    """

    @staticmethod
    def forward(ctx: Any, f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = f - target
        ctx.save_for_backward(diff)
        out: torch.Tensor = torch.linalg.vector_norm(diff, dim=1).square_().div_(diff.shape[1])
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (diff,) = ctx.saved_tensors
        d_f = diff * (grad * (2.0 / diff.shape[1]))[:, None]
        need_f, need_target = ctx.needs_input_grad
        return (d_f if need_f else None, -d_f if need_target else None)


def row_mse(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over dims of `(f - target)^2`: `(N, D), (N, D) -> (N,)`."""
    out: torch.Tensor = _RowMSE.apply(f, target)  # type: ignore[no-untyped-call]  # torch: unannotated
    return out


__all__ = ["EDMPrecond", "Scalar", "edm_loss", "edm_scalings", "measure_sigma_data", "row_mse"]
