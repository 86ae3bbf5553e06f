"""The inner network F: shapes, conditioning, batch independence and the folded inference path."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser, sinusoidal_embedding
from vad_core.errors import VADInputError

VARIANTS = list(itertools.product(["film", "concat"], [0, 3], ["none", "layer"]))


def _model(embedding: str, n_tiles: int, norm: str = "none", dim: int = 12, seed: int = 0) -> MLPDenoiser:
    torch.manual_seed(seed)
    m = MLPDenoiser(DenoiserConfig(dim=dim, hidden=(32, 16, 8), embedding=embedding, n_tiles=n_tiles, norm=norm))
    # Move off the identity-like initialisation so every part (FiLM head, output layer) matters.
    heads = [*m.film_gain, *m.film_shift] if m.film_gain is not None else []
    for p in [m.out.weight, m.out.bias] + [h.weight for h in heads]:
        nn.init.normal_(p, std=0.2)
    return m.eval()


def _tiles(n: int, n_tiles: int) -> torch.Tensor | None:
    return torch.arange(n) % n_tiles if n_tiles else None


def test_default_config_is_the_paper_shape() -> None:
    cfg = DenoiserConfig(dim=1024)
    m = MLPDenoiser(cfg)
    shapes = [tuple(layer.weight.shape) for layer in m.layers] + [tuple(m.out.weight.shape)]
    # encoder 1024 -> 512 -> 256 after the input, decoder 256 -> 512 -> 1024 -> D
    assert shapes == [(1024, 1024), (512, 1024), (256, 512), (512, 256), (1024, 512), (1024, 1024)]
    assert cfg.to_dict()["hidden"] == [1024, 512, 256] and cfg.to_dict()["embedding"] == "film"
    concat = MLPDenoiser(DenoiserConfig(dim=64, embedding="concat", fourier_features=16))
    assert concat.layers[0].weight.shape == (1024, 64 + 16)
    assert not any(isinstance(mod, nn.BatchNorm1d) for mod in m.modules())


@pytest.mark.parametrize(("embedding", "n_tiles", "norm"), VARIANTS)
def test_output_shapes_and_fold_matches_per_row_path(embedding: str, n_tiles: int, norm: str) -> None:
    m = _model(embedding, n_tiles, norm)
    x = torch.randn(20, 12)
    tile = _tiles(20, n_tiles)
    per_row = m._forward_rows(x, torch.full((20,), 0.3), tile)
    assert per_row.shape == (20, 12)
    with torch.no_grad():
        folded = m(x, torch.tensor(0.3), tile)
    assert folded.shape == (20, 12)
    torch.testing.assert_close(folded, per_row.detach(), rtol=1e-4, atol=1e-5)


def test_noise_level_and_tile_change_the_output() -> None:
    m = _model("film", 3)
    x = torch.randn(6, 12)
    with torch.no_grad():
        a = m(x, torch.full((6,), -1.0), torch.zeros(6, dtype=torch.long))
        b = m(x, torch.full((6,), 0.5), torch.zeros(6, dtype=torch.long))
        c = m(x, torch.full((6,), -1.0), torch.ones(6, dtype=torch.long))
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3


@pytest.mark.parametrize(("embedding", "n_tiles", "norm"), VARIANTS)
def test_row_output_does_not_depend_on_batch_mates(embedding: str, n_tiles: int, norm: str) -> None:
    m = _model(embedding, n_tiles, norm)
    g = torch.Generator().manual_seed(3)
    row = torch.randn(1, 12, generator=g)
    batch_a = torch.cat([row, torch.randn(15, 12, generator=g)])
    batch_b = torch.cat([row, 100.0 * torch.randn(15, 12, generator=g)])
    tile = _tiles(16, n_tiles)
    with torch.no_grad():
        for c_noise in (torch.tensor(0.2), torch.full((16,), 0.2)):
            out_a, out_b = m(batch_a, c_noise, tile), m(batch_b, c_noise, tile)
            assert torch.equal(out_a[0], out_b[0])
            alone = m(row, c_noise.reshape(-1)[:1], tile[:1] if tile is not None else None)
            torch.testing.assert_close(alone[0], out_a[0], rtol=1e-5, atol=1e-6)


def test_training_mode_uses_autograd_path() -> None:
    m = _model("film", 0).train()
    x = torch.randn(5, 12)
    out = m(x, torch.tensor(0.1))
    out.square().sum().backward()
    assert m.film_gain[0].weight.grad is not None and m.layers[0].weight.grad.abs().sum() > 0


def test_scalar_noise_with_grad_enabled_stays_differentiable() -> None:
    m = _model("film", 0)  # eval mode, but autograd on: must not take the folded (no-backward) path
    x = torch.randn(4, 12, requires_grad=True)
    out = m(x, torch.tensor(0.4))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(m(x, torch.tensor(0.4)), out.detach(), rtol=1e-4, atol=1e-5)


def test_fourier_frequencies_are_fixed_by_seed_not_global_rng() -> None:
    torch.manual_seed(1)
    a = MLPDenoiser(DenoiserConfig(dim=4))
    torch.manual_seed(2)
    b = MLPDenoiser(DenoiserConfig(dim=4))
    assert torch.equal(a.fourier_freqs, b.fourier_freqs)
    assert "fourier_freqs" in a.state_dict()


def test_sinusoidal_embedding_by_hand() -> None:
    emb = sinusoidal_embedding(torch.tensor([0.0, 2.0]), 4, max_positions=100.0)
    # frequencies 1 and 100^(-1/2) = 0.1; [cos, cos, sin, sin]
    expected = torch.tensor(
        [
            [1.0, 1.0, 0.0, 0.0],
            [
                torch.cos(torch.tensor(2.0)),
                torch.cos(torch.tensor(0.2)),
                torch.sin(torch.tensor(2.0)),
                torch.sin(torch.tensor(0.2)),
            ],
        ]
    )
    torch.testing.assert_close(emb, expected)


def test_bad_input_is_named() -> None:
    m = _model("film", 3)
    with pytest.raises(VADInputError, match="has 11 dimensions.*12"):
        m(torch.randn(4, 11), torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(VADInputError, match="2-D"):
        m(torch.randn(12), torch.zeros(1), torch.zeros(1, dtype=torch.long))
    with pytest.raises(VADInputError, match="tile: required"):
        m(torch.randn(4, 12), torch.zeros(4))
    with pytest.raises(VADInputError, match=r"tile: indices must lie in \[0, 3\)"):
        m(torch.randn(4, 12), torch.zeros(4), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(VADInputError, match="c_noise"):
        m(torch.randn(4, 12), torch.zeros(3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(VADInputError, match="no tile embedding"):
        _model("film", 0)(torch.randn(4, 12), torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(VADInputError, match="embedding"):
        DenoiserConfig(dim=4, embedding="attention")
    with pytest.raises(VADInputError, match="dim"):
        DenoiserConfig(dim=0)
