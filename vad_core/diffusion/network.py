"""The inner network F of the EDM denoiser: an MLP encoder-decoder conditioned on the noise level.

method.md: encoder D -> 1024 -> 512 -> 256, decoder 256 -> 512 -> 1024 -> D. The noise level
c_noise enters either through a Fourier embedding and FiLM (feature-wise scale and shift) in every
hidden layer ("film", the paper's model) or as a sinusoidal embedding concatenated to the input
("concat", the paper's "w/ [33]" variant). An optional learned tile-position embedding is added to
the noise embedding, so one pooled model serves every tile position.

Normalisation and activation, deliberately: no BatchNorm (its batch statistics would make a
clip's score depend on its batch-mates) and, by default, no normalisation at all. The EDM
preconditioner already feeds F unit-variance inputs (c_in) and asks for unit-variance outputs
(c_out), the network is six layers deep, and FiLM supplies the per-noise-level gain that an
adaptive LayerNorm would; without a per-row statistic a layer is affine in its input for a given
noise level, so when all rows share one sigma (every sampler step, the one-step score) FiLM folds
into the weights and a layer is one GEMM with a fused activation (`_folded_forward`). `norm="layer"`
(LayerNorm without affine, then FiLM: adaptive LayerNorm as in DiT) is available for studies.
SiLU is the activation k-diffusion and EDM use: smooth, so the learned score is smooth in x, and
oneDNN fuses it into the GEMM ("swish").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from vad_core.errors import VADInputError

_EMBEDDINGS = ("film", "concat")
_NORMS = ("none", "layer")


@dataclass(frozen=True)
class DenoiserConfig:
    """Shape of F. `hidden` lists the encoder widths; the decoder mirrors them back to `dim`."""

    dim: int
    hidden: tuple[int, ...] = (1024, 512, 256)
    embedding: str = "film"
    fourier_features: int = 128
    n_tiles: int = 0  # 0 = no tile-position embedding
    emb_dim: int = 128  # width of the noise-embedding mapping MLP (FiLM variant)
    norm: str = "none"
    fourier_std: float = 1.0  # std of the fixed random Fourier frequencies (c_noise is O(1))
    seed: int = 0  # seeds the fixed Fourier frequencies, so they never depend on global RNG state

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if int(self.dim) < 1:
            raise VADInputError(f"DenoiserConfig.dim must be >= 1, got {self.dim}")
        if not self.hidden or min(self.hidden) < 1:
            raise VADInputError(f"DenoiserConfig.hidden must be non-empty positive widths, got {self.hidden}")
        if self.embedding not in _EMBEDDINGS:
            raise VADInputError(f"DenoiserConfig.embedding must be one of {_EMBEDDINGS}, got {self.embedding!r}")
        if self.norm not in _NORMS:
            raise VADInputError(f"DenoiserConfig.norm must be one of {_NORMS}, got {self.norm!r}")
        if self.fourier_features < 2 or self.fourier_features % 2:
            raise VADInputError(f"DenoiserConfig.fourier_features must be even and >= 2, got {self.fourier_features}")
        if self.n_tiles < 0 or self.emb_dim < 1:
            raise VADInputError(
                f"DenoiserConfig: n_tiles must be >= 0 and emb_dim >= 1 (got {self.n_tiles}, {self.emb_dim})"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @property
    def widths(self) -> tuple[int, ...]:
        """Output widths of the hidden (activated) layers: encoder then decoder, e.g. 1024,512,256,512,1024."""
        return self.hidden + self.hidden[-2::-1]


def sinusoidal_embedding(c_noise: torch.Tensor, n: int, max_positions: float = 10000.0) -> torch.Tensor:
    """Transformer/DDPM positional embedding of `c_noise` `(N,)` -> `(N, n)` as [cos, sin] (NVlabs edm)."""
    half = n // 2
    freqs = (1.0 / max_positions) ** (torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
    arg = c_noise.float()[:, None] * freqs
    return torch.cat([arg.cos(), arg.sin()], dim=1)


class MLPDenoiser(nn.Module):
    """F(x; c_noise, tile): `forward(x (N, D), c_noise (N,) or scalar, tile (N,) | None) -> (N, D)`."""

    fourier_freqs: torch.Tensor  # buffer, FiLM only
    mapping: nn.Sequential | None
    film_gain: nn.ModuleList | None
    film_shift: nn.ModuleList | None
    tile_embedding: nn.Embedding | None

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        widths = c.widths
        if c.embedding == "film":
            gen = torch.Generator().manual_seed(c.seed)
            # Fixed (not learned) frequencies; a buffer so a checkpoint carries them.
            self.register_buffer("fourier_freqs", torch.randn(c.fourier_features // 2, generator=gen) * c.fourier_std)
            self.mapping = nn.Sequential(
                nn.Linear(c.fourier_features, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim), nn.SiLU()
            )
            # Separate gain and shift heads per layer (one wide head would need a full-width
            # split/cat in backward). Zero weights, unit gain and zero shift at init make F start
            # as a plain MLP whatever the noise level (adaLN-zero style).
            gains = [nn.Linear(c.emb_dim, w) for w in widths]
            shifts = [nn.Linear(c.emb_dim, w) for w in widths]
            for head in (*gains, *shifts):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
            for head in gains:
                nn.init.ones_(head.bias)
            self.film_gain = nn.ModuleList(gains)
            self.film_shift = nn.ModuleList(shifts)
            in_dim = c.dim
        else:
            self.mapping = None
            self.film_gain = self.film_shift = None
            in_dim = c.dim + c.fourier_features
        self.tile_embedding = nn.Embedding(c.n_tiles, c.fourier_features) if c.n_tiles > 0 else None
        dims = (in_dim,) + widths
        # Under FiLM a hidden layer's bias is redundant: gain (W x + b) + shift = gain W x + (gain b + shift),
        # and gain b is linear in the embedding, so the shift head represents it exactly. Dropping it
        # saves a bias broadcast and a bias-gradient reduction per layer in training. (Not so before a
        # LayerNorm, which the bias enters nonlinearly.)
        bias = not (c.embedding == "film" and c.norm == "none")
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:], strict=False))
        self.out = nn.Linear(widths[-1], c.dim)
        # k-diffusion zero-initialises the output projection: D(x; sigma) = c_skip x at the start,
        # the ideal denoiser of zero-mean data with std sigma_data, a stable starting point.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    # -- embeddings ------------------------------------------------------------------------
    def noise_features(self, c_noise: torch.Tensor, tile: torch.Tensor | None) -> torch.Tensor:
        """Fourier (film) or sinusoidal (concat) features of c_noise and the tile embedding: `(N, fourier_features)`."""
        c = self.config
        if c.embedding == "film":
            arg = (2 * math.pi) * c_noise.float()[:, None] * self.fourier_freqs
            feats = torch.cat([arg.cos(), arg.sin()], dim=1)
        else:
            feats = sinusoidal_embedding(c_noise, c.fourier_features)
        if self.tile_embedding is not None:
            feats = feats + self.tile_embedding(tile)
        return feats

    def film_params(self, feats: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """FiLM (gain, shift) for every hidden layer, each `(N, width)`."""
        assert self.mapping is not None and self.film_gain is not None and self.film_shift is not None, "FiLM only"
        emb = self.mapping(feats)
        return [(g(emb), s(emb)) for g, s in zip(self.film_gain, self.film_shift, strict=False)]

    # -- validation ------------------------------------------------------------------------
    def check_inputs(
        self, x: torch.Tensor, c_noise: torch.Tensor, tile: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raise `VADInputError` for wrong shapes/dims/tiles; return c_noise and tile as tensors on x's device."""
        c = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise VADInputError(f"denoiser input x: expected a 2-D tensor (rows, {c.dim}), got {shape}")
        if x.shape[1] != c.dim:
            raise VADInputError(f"denoiser input x: has {x.shape[1]} dimensions, the model was built for {c.dim}")
        if not x.is_floating_point():
            raise VADInputError(f"denoiser input x: expected floating point, got {x.dtype}")
        c_noise = torch.as_tensor(c_noise, device=x.device)
        if c_noise.ndim > 1 or (c_noise.ndim == 1 and c_noise.shape[0] not in (1, x.shape[0])):
            raise VADInputError(f"c_noise: expected a scalar or shape ({x.shape[0]},), got {tuple(c_noise.shape)}")
        if self.tile_embedding is None:
            if tile is not None:
                raise VADInputError("tile: given, but the model has no tile embedding (n_tiles=0)")
            return c_noise, None
        if tile is None:
            raise VADInputError(f"tile: required, the model has a tile embedding (n_tiles={c.n_tiles})")
        tile = torch.as_tensor(tile, device=x.device)
        if tile.shape != (x.shape[0],) or tile.is_floating_point():
            raise VADInputError(f"tile: expected integer shape ({x.shape[0]},), got {tile.dtype} {tuple(tile.shape)}")
        if tile.numel() and (int(tile.min()) < 0 or int(tile.max()) >= c.n_tiles):
            raise VADInputError(
                f"tile: indices must lie in [0, {c.n_tiles}), got [{int(tile.min())}, {int(tile.max())}]"
            )
        return c_noise, tile.long()

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, tile: torch.Tensor | None = None) -> torch.Tensor:
        """`x (N, D)`, `c_noise (N,)` or a scalar shared by all rows, `tile (N,)` -> `(N, D)`."""
        c_noise, tile = self.check_inputs(x, c_noise, tile)
        if c_noise.numel() == 1 and not torch.is_grad_enabled():
            # One noise level for every row and no autograd (the oneDNN op has no backward):
            # fold the conditioning into the weights.
            return _folded_forward(self, x, c_noise.reshape(()), tile)
        return self._forward_rows(x, c_noise.expand(x.shape[0]), tile)

    def _forward_rows(self, x: torch.Tensor, c_noise: torch.Tensor, tile: torch.Tensor | None) -> torch.Tensor:
        """General path: per-row noise levels (training)."""
        feats = self.noise_features(c_noise, tile)
        h = x
        if self.config.embedding == "concat":
            h = torch.cat([x, feats.to(x.dtype)], dim=1)
            for layer in self.layers:
                h = F.silu(self._norm(layer(h)))
            out: torch.Tensor = self.out(h)
            return out
        for layer, (gain, shift) in zip(self.layers, self.film_params(feats), strict=False):
            h = film_silu(self._norm(layer(h)), gain, shift)
        out = self.out(h)
        return out

    def _norm(self, h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, h.shape[-1:]) if self.config.norm == "layer" else h


class _FiLMSiLU(torch.autograd.Function):
    """silu(gain * z + shift) for `(N, W)` tensors, with a hand-written backward.

    Autograd's own addcmul backward scales `gain` and `z` by `value` before multiplying (two
    extra full-size passes per layer); here backward is three passes: silu', then one product
    each for dz and dgain (dshift is silu' itself). Same saved tensors as the composed ops.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        pre = torch.addcmul(shift, z, gain)
        ctx.save_for_backward(z, gain, pre)
        return F.silu(pre)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        z, gain, pre = ctx.saved_tensors
        d_pre = torch.ops.aten.silu_backward(grad, pre)
        need_z, need_gain, need_shift = ctx.needs_input_grad
        return (d_pre * gain if need_z else None, d_pre * z if need_gain else None, d_pre if need_shift else None)


def film_silu(z: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """FiLM then SiLU: `silu(gain * z + shift)`, all `(N, W)`; a fused backward when autograd records."""
    if torch.is_grad_enabled() and (z.requires_grad or gain.requires_grad or shift.requires_grad):
        out: torch.Tensor = _FiLMSiLU.apply(z, gain, shift)  # type: ignore[no-untyped-call]  # torch: unannotated
        return out
    return F.silu(torch.addcmul(shift, z, gain), inplace=True)


def _use_onednn(x: torch.Tensor, dtype: torch.dtype) -> bool:
    return (
        x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]  # torch: unannotated
    )


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, silu: bool, onednn: bool) -> torch.Tensor:
    if onednn:
        # oneDNN's GEMM with the activation fused as a post-op: on AVX-512 CPUs it runs float32
        # GEMM well above the MKL path of torch.mm/F.linear, and bf16 natively.
        fused: torch.Tensor = torch.ops.mkldnn._linear_pointwise(h, w, b, "swish" if silu else "none", [], "")
        return fused
    y = F.linear(h, w, b)
    return F.silu(y) if silu else y


def _folded_forward(
    model: MLPDenoiser, x: torch.Tensor, c_noise: torch.Tensor, tile: torch.Tensor | None
) -> torch.Tensor:
    """Inference with one noise level shared by all rows: `(N, D) -> (N, D)`.

    For a fixed noise (and tile) embedding, FiLM is a per-column affine map after each Linear,
    so gain and shift fold into that layer's weight and bias, and the concat embedding folds into
    the first layer's bias. Each layer then is a single GEMM + fused SiLU. Rows are grouped by
    tile so each group gets its own folded weights. Same function as `_forward_rows`, up to
    float rounding.
    """
    c = model.config
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    else:
        dtype = x.dtype
    onednn = _use_onednn(x, dtype)
    if tile is None:
        return _folded_group(model, x, c_noise, None, dtype, onednn)
    out = torch.empty(x.shape[0], c.dim, dtype=dtype, device=x.device)
    for t in torch.unique(tile).tolist():
        idx = torch.nonzero(tile == t).squeeze(1)
        t_vec = torch.full((1,), t, dtype=torch.long, device=x.device)
        out[idx] = _folded_group(model, x.index_select(0, idx), c_noise, t_vec, dtype, onednn)
    return out


def _folded_group(
    model: MLPDenoiser,
    x: torch.Tensor,
    c_noise: torch.Tensor,
    tile: torch.Tensor | None,
    dtype: torch.dtype,
    onednn: bool,
) -> torch.Tensor:
    c = model.config
    layers = [cast(nn.Linear, layer) for layer in model.layers]
    with torch.autocast(x.device.type, enabled=False):
        feats = model.noise_features(c_noise.reshape(1), tile)  # (1, fourier_features)
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        if c.embedding == "film":
            film = [(g[0], s[0]) for g, s in model.film_params(feats)]
            for layer, (gain, shift) in zip(layers, film, strict=False):
                if c.norm == "layer":
                    weights.append(layer.weight)
                    biases.append(layer.bias)
                else:
                    weights.append(layer.weight * gain[:, None])
                    biases.append(shift)
        else:
            first = layers[0]
            weights.append(first.weight[:, : c.dim])
            biases.append(torch.addmv(first.bias, first.weight[:, c.dim :], feats[0]))
            for layer in layers[1:]:
                weights.append(layer.weight)
                biases.append(layer.bias)
        weights.append(model.out.weight)
        biases.append(model.out.bias)
        weights = [w.to(dtype).contiguous() for w in weights]
        biases = [b.to(dtype) for b in biases]
        h = x.to(dtype)
        if c.norm == "layer":
            for k, (w, b) in enumerate(zip(weights[:-1], biases[:-1], strict=False)):
                h = F.layer_norm(_linear(h, w, b, False, onednn), (w.shape[0],))
                if c.embedding == "film":
                    gain, shift = film[k]
                    h = torch.addcmul(shift.to(dtype), h, gain.to(dtype))
                h = F.silu(h)
        else:
            for w, b in zip(weights[:-1], biases[:-1], strict=False):
                h = _linear(h, w, b, True, onednn)
        return _linear(h, weights[-1], biases[-1], False, onednn)


__all__ = ["DenoiserConfig", "MLPDenoiser", "film_silu", "sinusoidal_embedding"]
