"""Schedules and samplers against closed forms: the Gaussian-data ODE and exact Lagrange integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from vad_core.diffusion.sampling import (
    get_sigmas_karras,
    lms_coefficients,
    sample_euler,
    sample_heun,
    sample_lms,
    sigma_range,
)
from vad_core.errors import VADInputError

MU, S = 0.7, 1.3  # data ~ N(MU, S^2 I)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The ideal denoiser of N(MU, S^2 I): E[x0 | x] = MU + S^2 / (S^2 + sigma^2) (x - MU)."""
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def ode_solution(x0: torch.Tensor, sigma0: float, sigma: float) -> torch.Tensor:
    """Closed-form probability-flow ODE solution for that denoiser."""
    return MU + (x0 - MU) * math.sqrt(S**2 + sigma**2) / math.sqrt(S**2 + sigma0**2)


def test_karras_schedule_endpoints_and_shape() -> None:
    sig = get_sigmas_karras(10, 0.002, 80.0)
    assert sig.shape == (11,) and sig.dtype == torch.float32
    assert sig[0].item() == pytest.approx(80.0, rel=1e-6)
    assert sig[-2].item() == pytest.approx(0.002, rel=1e-6)
    assert sig[-1].item() == 0.0
    assert bool((sig[1:] < sig[:-1]).all())


def test_karras_schedule_middle_value_by_hand() -> None:
    # sigma_max^(1/7) = 2, sigma_min^(1/7) = 1: the middle of 3 steps is 1.5^7.
    sig = get_sigmas_karras(3, 1.0, 128.0, rho=7.0, dtype=torch.float64)
    np.testing.assert_allclose(sig.numpy(), [128.0, 1.5**7, 1.0, 0.0], rtol=1e-12)


def test_sigma_range_matches_k_diffusion_family() -> None:
    lo, hi = sigma_range(-1.2, 1.2)
    assert lo == pytest.approx(math.exp(-7.2)) and hi == pytest.approx(math.exp(4.8))


def _lagrange_integral(nodes: list[float], j: int, a: float, b: float) -> float:
    def basis(t: float) -> float:
        return math.prod((t - nodes[k]) / (nodes[j] - nodes[k]) for k in range(len(nodes)) if k != j)

    return quad(basis, a, b, epsrel=1e-13, epsabs=1e-13)[0]


@pytest.mark.parametrize("order", [1, 2, 4])
def test_lms_coefficients_match_quadrature(order: int) -> None:
    sig = get_sigmas_karras(8, 0.02, 80.0, dtype=torch.float64).numpy()
    coeffs = lms_coefficients(sig, order)
    assert len(coeffs) == len(sig) - 1
    for i, c in enumerate(coeffs):
        m = min(i + 1, order)
        assert c.shape == (m,)
        nodes = [sig[i - k] for k in range(m)]
        expected = [_lagrange_integral(nodes, j, sig[i], sig[i + 1]) for j in range(m)]
        np.testing.assert_allclose(c, expected, rtol=1e-9, atol=1e-12)
        # The basis sums to 1, so the coefficients sum to the step length.
        assert c.sum() == pytest.approx(sig[i + 1] - sig[i], rel=1e-10)


def _final_error(sampler, n: int, **kw) -> float:
    torch.manual_seed(0)
    sig = get_sigmas_karras(n, 1e-3, 20.0, dtype=torch.float64)
    x0 = MU + 20.0 * torch.randn(64, 8, dtype=torch.float64)
    out = sampler(gaussian_denoiser, x0, sig, **kw)
    exact = ode_solution(x0, 20.0, 0.0)
    return float((out - exact).abs().max() / (exact - MU).abs().max())


@pytest.mark.parametrize(
    ("sampler", "rate", "bound"), [(sample_euler, 1.8, 0.06), (sample_heun, 3.5, 0.01), (sample_lms, 3.5, 0.005)]
)
def test_samplers_converge_to_closed_form_ode(sampler, rate: float, bound: float) -> None:
    errors = [_final_error(sampler, n) for n in (10, 20, 40)]
    # Doubling the steps divides the error by about 2 (first order) or 4+ (second order and up).
    assert all(b < a / rate for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < bound, errors


def test_higher_order_samplers_beat_euler() -> None:
    for n in (20, 40):
        euler = _final_error(sample_euler, n)
        assert _final_error(sample_heun, n) < euler / 3
        assert _final_error(sample_lms, n) < euler / 3


def test_lms_order_one_is_euler() -> None:
    a = _final_error(sample_lms, 10, order=1)
    assert a == pytest.approx(_final_error(sample_euler, 10), rel=1e-9)


def test_partial_trajectory_matches_ode_at_intermediate_sigma() -> None:
    # Stop at a non-zero sigma (no trailing zero): the state must follow the closed form there.
    sig = get_sigmas_karras(30, 1.0, 10.0, dtype=torch.float64)[:-1]
    x0 = MU + 10.0 * torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = ode_solution(x0, 10.0, 1.0)
    for sampler in (sample_heun, sample_lms):
        out = sampler(gaussian_denoiser, x0, sig)
        assert float((out - exact).abs().max() / (exact - MU).abs().max()) < 1e-3


def test_samplers_do_not_modify_their_input() -> None:
    sig = get_sigmas_karras(4, 0.1, 5.0, dtype=torch.float64)
    x0 = torch.randn(3, 2, dtype=torch.float64)
    before = x0.clone()
    for sampler in (sample_euler, sample_heun, sample_lms):
        sampler(gaussian_denoiser, x0, sig)
        assert torch.equal(x0, before)


def test_last_step_to_zero_lands_on_the_denoised_point() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    sig = torch.tensor([0.5, 0.0], dtype=torch.float64)
    expected = gaussian_denoiser(x, sig[0])
    for sampler in (sample_euler, sample_heun, sample_lms):
        torch.testing.assert_close(sampler(gaussian_denoiser, x, sig), expected, rtol=0, atol=1e-15)


def test_bad_schedules_are_named() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(VADInputError, match="sigmas"):
        sample_lms(gaussian_denoiser, x, torch.tensor([1.0, 0.0, 0.5]))
    with pytest.raises(VADInputError, match="sigmas"):
        sample_euler(gaussian_denoiser, x, torch.tensor([[1.0, 0.0]]))
    with pytest.raises(VADInputError, match="sigma_min"):
        get_sigmas_karras(10, 5.0, 1.0)
    with pytest.raises(VADInputError, match="n must"):
        get_sigmas_karras(0, 0.1, 1.0)
    with pytest.raises(VADInputError, match="order"):
        lms_coefficients([1.0, 0.0], 0)
