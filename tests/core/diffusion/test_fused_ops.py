"""Hand-written backward passes of the training step against autograd of the composed ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vad_core._malloc import reuse_large_allocations
from vad_core.diffusion.network import _FiLMSiLU, film_silu
from vad_core.diffusion.precond import row_mse


def _leaves(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]


def test_film_silu_matches_composed_ops_and_gradcheck() -> None:
    z, gain, shift = _leaves((7, 5), (7, 5), (7, 5))
    assert torch.autograd.gradcheck(_FiLMSiLU.apply, (z, gain, shift))
    out = film_silu(z, gain, shift)
    ref = F.silu(gain * z + shift)
    torch.testing.assert_close(out, ref)
    g_out = torch.randn(7, 5, dtype=torch.float64)
    got = torch.autograd.grad(out, (z, gain, shift), g_out)
    want = torch.autograd.grad(ref, (z, gain, shift), g_out)
    for a, b in zip(got, want, strict=False):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # inference branch: same values, no graph
        torch.testing.assert_close(film_silu(z, gain, shift), ref.detach())


def test_row_mse_is_the_per_row_mean_square_with_its_gradient() -> None:
    f, target = _leaves((6, 4), (6, 4), seed=1)
    assert torch.autograd.gradcheck(row_mse, (f, target))
    loss = row_mse(f, target)
    expected = ((f - target) ** 2).sum(dim=1) / 4
    torch.testing.assert_close(loss, expected)
    weights = torch.arange(1.0, 7.0, dtype=torch.float64)
    (d_f,) = torch.autograd.grad((loss * weights).sum(), (f,))
    torch.testing.assert_close(d_f, 2 * (f - target).detach() * weights[:, None] / 4)


def test_malloc_tuning_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.setenv("VAD_MALLOC_TUNING", "0")
    with reuse_large_allocations() as active:
        assert active is False
    with reuse_large_allocations(enabled=False) as active:
        assert active is False
    monkeypatch.delenv("VAD_MALLOC_TUNING")
    with reuse_large_allocations() as outer, reuse_large_allocations() as inner:  # nested: both see the same state
        assert outer == inner
        x = torch.ones(2048, 2048)  # a 16 MiB block served while tuned, freed after
        assert float(x.sum()) == 2048 * 2048
