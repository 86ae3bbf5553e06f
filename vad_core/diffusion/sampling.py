"""Noise schedules and probability-flow ODE samplers (k-diffusion style: plain functions, any `model(x, sigma)`).

The ODE is dx/dsigma = (x - D(x; sigma)) / sigma (EDM Eq. 3 with sigma(t) = t). Every sampler
calls `model(x, sigma)` with `sigma` a 0-dim tensor shared by all rows, never at sigma = 0: the
last step to sigma = 0 is an Euler step, which lands exactly on D(x; sigma_{N-1}).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from numpy.polynomial import Polynomial

from vad_core.errors import VADInputError

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def get_sigmas_karras(
    n: int,
    sigma_min: float,
    sigma_max: float,
    rho: float = 7.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Karras et al. (2022) Eq. 5 schedule `(n + 1,)`: sigma_max ... sigma_min, then a trailing 0.

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.
    """
    if int(n) != n or n < 1:
        raise VADInputError(f"get_sigmas_karras: n must be a positive integer, got {n}")
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise VADInputError(f"get_sigmas_karras: need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise VADInputError(f"get_sigmas_karras: rho must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, int(n), dtype=torch.float64)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device=device, dtype=dtype)


def sigma_range(P_mean: float, P_std: float, width: float = 5.0) -> tuple[float, float]:
    """(sigma_min, sigma_max) = exp(P_mean -/+ width P_std): the sampling range tied to the training law."""
    if not P_std > 0 or not width > 0:
        raise VADInputError(f"sigma_range: P_std and width must be > 0, got {P_std}, {width}")
    return math.exp(P_mean - width * P_std), math.exp(P_mean + width * P_std)


def _check_sigmas(sigmas: torch.Tensor) -> list[float]:
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 1:
        raise VADInputError(f"sigmas: expected a 1-D tensor of noise levels, got {getattr(sigmas, 'shape', sigmas)}")
    s = [float(v) for v in sigmas.tolist()]
    if not all(math.isfinite(v) and v >= 0 for v in s) or any(v == 0 for v in s[:-1]):
        raise VADInputError("sigmas: must be finite, >= 0, and only the last may be 0")
    return s


def _to_d(x: torch.Tensor, denoised: torch.Tensor, sigma: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """dx/dsigma = (x - D) / sigma, written into `out` when given (no allocation)."""
    d = torch.sub(x, denoised, out=out) if out is not None else x - denoised
    return d.mul_(1.0 / sigma)


@torch.no_grad()
def sample_euler(model: Model, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler's method on the probability-flow ODE from sigmas[0] to sigmas[-1] (EDM Alg. 1 without the correction)."""
    s = _check_sigmas(sigmas)
    x = x.clone()
    for i in range(len(s) - 1):
        denoised = model(x, sigmas[i])
        # x + (s_next - s) (x - D) / s == lerp(x, D, 1 - s_next / s): one in-place pass, exact D at s_next = 0.
        x.lerp_(denoised.to(x.dtype), 1.0 - s[i + 1] / s[i])
    return x


@torch.no_grad()
def sample_heun(model: Model, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Heun's second-order method (EDM Alg. 1, S_churn = 0); Euler on the final step to sigma = 0."""
    s = _check_sigmas(sigmas)
    x = x.clone()
    for i in range(len(s) - 1):
        denoised = model(x, sigmas[i])
        if s[i + 1] == 0:
            x.lerp_(denoised.to(x.dtype), 1.0)
            continue
        dt = s[i + 1] - s[i]
        d = _to_d(x, denoised, s[i])
        x_2 = torch.add(x, d, alpha=dt)
        d_2 = _to_d(x_2, model(x_2, sigmas[i + 1]), s[i + 1])
        x.add_(d, alpha=dt / 2).add_(d_2, alpha=dt / 2)
    return x


def lms_coefficients(sigmas: torch.Tensor | np.ndarray | list[float], order: int = 4) -> list[np.ndarray]:
    """Exact linear-multistep coefficients for a schedule: entry i `(min(i+1, order),)`, element j weighs d_{i-j}.

    c_ij = integral over [sigma_i, sigma_{i+1}] of the Lagrange basis polynomial of node sigma_{i-j}
    on the nodes sigma_i, ..., sigma_{i-m+1}; integrated in closed form (polynomial antiderivative,
    float64, in the variable sigma - sigma_i for conditioning) and cached per schedule.
    """
    if int(order) != order or order < 1:
        raise VADInputError(f"lms_coefficients: order must be a positive integer, got {order}")
    vals = sigmas.tolist() if isinstance(sigmas, (torch.Tensor, np.ndarray)) else list(sigmas)
    return [c.copy() for c in _lms_coefficients(tuple(float(v) for v in vals), int(order))]


@lru_cache(maxsize=64)
def _lms_coefficients(sigmas: tuple[float, ...], order: int) -> tuple[np.ndarray, ...]:
    t = np.asarray(sigmas, dtype=np.float64)
    out = []
    for i in range(len(t) - 1):
        m = min(i + 1, order)
        nodes = t[i - np.arange(m)] - t[i]
        h = t[i + 1] - t[i]
        coeffs = np.empty(m)
        for j in range(m):
            basis = Polynomial([1.0])
            for k in range(m):
                if k != j:
                    basis = basis * Polynomial([-nodes[k], 1.0]) / (nodes[j] - nodes[k])
            coeffs[j] = basis.integ()(h)  # antiderivative vanishing at 0 (= sigma_i)
        out.append(coeffs)
    return tuple(out)


@torch.no_grad()
def sample_lms(model: Model, x: torch.Tensor, sigmas: torch.Tensor, order: int = 4) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma, variable step) of `order` on the probability-flow ODE."""
    s = _check_sigmas(sigmas)
    coeffs = lms_coefficients(s, order)
    x = x.clone()
    ds: list[torch.Tensor] = []  # newest last; the oldest buffer is reused once `order` are held
    for i in range(len(s) - 1):
        denoised = model(x, sigmas[i])
        buf = ds.pop(0) if len(ds) == order else None
        ds.append(_to_d(x, denoised.to(x.dtype), s[i], out=buf))
        for c, d in zip(coeffs[i], reversed(ds), strict=False):
            x.add_(d, alpha=float(c))
    return x


__all__ = ["Model", "get_sigmas_karras", "lms_coefficients", "sample_euler", "sample_heun", "sample_lms", "sigma_range"]
