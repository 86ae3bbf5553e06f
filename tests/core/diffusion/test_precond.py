"""EDM preconditioning and loss against the formulas of method.md, evaluated by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser
from vad_core.diffusion.precond import EDMPrecond, edm_loss, edm_scalings, measure_sigma_data
from vad_core.errors import VADInputError


def test_scalings_at_hand_computed_points() -> None:
    # sigma = 3, sigma_data = 1: sigma^2 + sigma_data^2 = 10.
    c_skip, c_out, c_in, c_noise = edm_scalings(3.0, 1.0)
    assert c_skip == pytest.approx(0.1)
    assert c_out == pytest.approx(0.9486832980505138)  # 3 / sqrt(10)
    assert c_in == pytest.approx(0.31622776601683794)  # 1 / sqrt(10)
    assert c_noise == pytest.approx(0.27465307216702745)  # ln(3) / 4
    # sigma = 0.5, sigma_data = 2 as tensors: total 4.25.
    c_skip, c_out, c_in, c_noise = edm_scalings(torch.tensor([0.5], dtype=torch.float64), 2.0)
    assert c_skip.item() == pytest.approx(4 / 4.25)
    assert c_out.item() == pytest.approx(1 / math.sqrt(4.25))
    assert c_in.item() == pytest.approx(1 / math.sqrt(4.25))
    assert c_noise.item() == pytest.approx(math.log(0.5) / 4)


def test_edm_weighting_identity() -> None:
    # lambda * c_out^2 = 1: the unit-weighted F loss is the lambda-weighted D loss.
    for sigma in (0.01, 0.7, 40.0):
        _, c_out, _, _ = edm_scalings(sigma, 1.7)
        lam = (sigma**2 + 1.7**2) / (sigma * 1.7) ** 2
        assert lam * c_out**2 == pytest.approx(1.0)


def _random_denoiser(dim: int = 6, seed: int = 0) -> EDMPrecond:
    torch.manual_seed(seed)
    inner = MLPDenoiser(DenoiserConfig(dim=dim, hidden=(16, 8)))
    nn.init.normal_(inner.out.weight, std=0.5)  # the zero init would make F vanish
    nn.init.normal_(inner.out.bias, std=0.5)
    return EDMPrecond(inner, sigma_data=1.5).eval()


def test_denoiser_tends_to_identity_as_sigma_vanishes() -> None:
    d = _random_denoiser()
    x = torch.randn(10, 6)
    gaps = []
    with torch.no_grad():
        for sigma in (1e-1, 1e-2, 1e-3):
            gaps.append(float((d(x, sigma) - x).abs().max()))
        assert torch.equal(d(x, 0.0), x)
    # |D - x| = |(c_skip - 1) x + c_out F| = O(sigma): a tenfold smaller sigma, about tenfold closer.
    assert gaps[0] > 1e-2
    assert gaps[1] < gaps[0] / 5 and gaps[2] < gaps[1] / 5


def test_scalar_and_per_row_sigma_agree() -> None:
    d = _random_denoiser()
    x = torch.randn(7, 6)
    with torch.no_grad():
        torch.testing.assert_close(d(x, 0.8), d(x, torch.full((7,), 0.8)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d(x, torch.tensor(0.8)), d(x, torch.full((7, 1), 0.8)), rtol=1e-5, atol=1e-5)


def test_precond_matches_formula() -> None:
    d = _random_denoiser()
    x = torch.randn(4, 6, dtype=torch.float64)
    d = d.double()
    sigma = torch.tensor([0.1, 0.5, 2.0, 9.0], dtype=torch.float64)
    with torch.no_grad():
        out = d(x, sigma)
        s = sigma[:, None]
        total = s**2 + 1.5**2
        f = d.inner(x / total.sqrt(), torch.log(sigma) / 4)
        expected = 1.5**2 / total * x + s * 1.5 / total.sqrt() * f
    torch.testing.assert_close(out, expected)


class _LinearInner(nn.Module):
    """F(x; c_noise) = x A^T + c_noise b: small enough to evaluate the loss by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.config = DenoiserConfig(dim=2)
        self.a = nn.Parameter(torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.3, -0.7], dtype=torch.float64))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, tile: torch.Tensor | None = None) -> torch.Tensor:
        return x @ self.a.T + c_noise.reshape(-1, 1) * self.b


def test_edm_loss_by_hand_with_linear_inner() -> None:
    den = EDMPrecond(_LinearInner(), sigma_data=0.8)
    x = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-1.5, 3.0]], dtype=torch.float64)
    loss = edm_loss(den, x, P_mean=-0.4, P_std=1.1, generator=torch.Generator().manual_seed(5))
    assert loss.shape == (3,)
    # Redraw the same numbers in the documented order and evaluate in numpy.
    g = torch.Generator().manual_seed(5)
    rnd = torch.randn(3, generator=g, dtype=torch.float64).numpy()
    noise = torch.randn(3, 2, generator=g, dtype=torch.float64).numpy()
    xn, a, b, sd = x.numpy(), den.inner.a.detach().numpy(), den.inner.b.detach().numpy(), 0.8
    expected = []
    for r in range(3):
        sigma = math.exp(-0.4 + 1.1 * rnd[r])
        y = xn[r] + sigma * noise[r]
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / math.sqrt(sigma**2 + sd**2)
        c_in = 1 / math.sqrt(sigma**2 + sd**2)
        f = a @ (c_in * y) + math.log(sigma) / 4 * b
        d = c_skip * y + c_out * f
        lam = (sigma**2 + sd**2) / (sigma * sd) ** 2
        expected.append(lam * np.sum((d - xn[r]) ** 2) / 2)  # lambda-weighted D loss, mean over dims
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-10)
    loss.mean().backward()
    assert den.inner.a.grad is not None and torch.isfinite(den.inner.a.grad).all()


def test_edm_loss_per_sample_with_mlp_and_tiles() -> None:
    inner = MLPDenoiser(DenoiserConfig(dim=5, hidden=(8, 4), n_tiles=3))
    den = EDMPrecond(inner, sigma_data=1.0)
    x = torch.randn(12, 5)
    tile = torch.arange(12) % 3
    loss = edm_loss(den, x, -1.2, 1.2, tile=tile, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (12,) and bool((loss >= 0).all())
    again = edm_loss(den, x, -1.2, 1.2, tile=tile, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss, again)


def test_measure_sigma_data_is_population_std() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32)
    # mean 3, squared deviations 4 + 1 + 0 + 9 = 14, / 4 entries.
    assert measure_sigma_data(x) == pytest.approx(math.sqrt(3.5))
    assert measure_sigma_data(torch.from_numpy(x)) == pytest.approx(math.sqrt(3.5))


def test_bad_input_is_named() -> None:
    d = _random_denoiser(dim=6)
    with pytest.raises(VADInputError, match="6"):
        d(torch.randn(3, 5), 1.0)
    with pytest.raises(VADInputError, match="sigma"):
        d(torch.randn(3, 6), torch.ones(4))
    with pytest.raises(VADInputError, match="sigma"):
        d(torch.randn(3, 6), float("nan"))
    with pytest.raises(VADInputError, match="training batch"):
        edm_loss(d, torch.randn(3, 5), -1.2, 1.2)
    with pytest.raises(VADInputError, match="non-finite"):
        measure_sigma_data(np.array([[1.0, np.nan]]))
    with pytest.raises(VADInputError, match="same value"):
        measure_sigma_data(np.ones((3, 2)))
    with pytest.raises(VADInputError, match="sigma_data"):
        EDMPrecond(d.inner, sigma_data=0.0)
