"""GCL baselines (Zaheer et al., "Generative Cooperative Learning", CVPR 2022), per method.md.

* `GCLAutoencoderScorer`: the generator alone, an MLP autoencoder trained on all (unlabelled)
  features; score = per-row reconstruction MSE.
* `GCLScorer`: generator G (that autoencoder) and discriminator D (an MLP classifier) trained
  cooperatively on unlabelled rows. After G is pre-trained as a plain autoencoder, every
  mini-batch does two steps:
    1. G's per-row reconstruction errors -> pseudo-labels: anomalous when above
       mean + k_g * std of the batch; D takes one BCE step on them;
    2. D's outputs -> pseudo-labels: anomalous when above mean + k_d * std of the batch; G takes
       one step of negative learning: pseudo-normal rows are reconstructed towards themselves,
       pseudo-anomalous rows towards a constant target (all ones, as in GCL), so that G learns
       to reconstruct anomalies badly and hands D cleaner labels in turn.
  Inference uses the discriminator, as in GCL: score = D's logit (same ranking as its
  probability, without ties where the sigmoid saturates).

Training order, as in GCL: G pre-trained alone (`ae_epochs`), D pre-trained on the frozen G's
pseudo-labels (`d_epochs`; without it the first cooperative steps feed G the labels of an
untrained D and wreck it), then `epochs` of cooperative steps at the smaller `cooperative_lr`.
Drift: the loop has a self-sustaining failure. mean + k * std of a batch whose outputs split
into two modes labels the upper mode whenever it holds under about half the batch, so once
normal rows are drawn into the pseudo-anomalous set, negative learning keeps them there. On the
planted-anomaly features of the tests the pseudo-anomalous share stayed at the planted 3-5%
with these defaults, but grew to 20-26% (AUC 0.8) with lr 1e-4 over 10-30 cooperative epochs;
watch `history[...]["pseudo_anomalous"]` when changing them.

Both fit on features centred and divided by one global scale (fitted on the training rows):
findings.md shows the per-dimension means of pooled CNN features otherwise dominate. No
batch-statistics layers, so a row's score never depends on its batch-mates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vad_core.devices import resolve_device
from vad_core.errors import VADInputError
from vad_core.scoring.scorers.base import PerTileScorer


@dataclass(frozen=True)
class GCLConfig:
    """Sizes and schedule of the GCL networks; small defaults that fit ~1000 rows in seconds."""

    hidden: tuple[int, ...] = (256, 64)  # generator encoder widths; the decoder mirrors them
    disc_hidden: tuple[int, ...] = (256, 32)  # discriminator widths before its single logit
    dropout: float = 0.3  # discriminator dropout: its labels are noisy
    ae_epochs: int = 30  # generator pre-training (the whole training of the autoencoder baseline)
    d_epochs: int = 40  # discriminator pre-training on the pre-trained generator's pseudo-labels
    epochs: int = 10  # cooperative epochs (GCLScorer only); see the note on drift above
    batch_size: int = 128
    lr: float = 1e-3  # pre-training learning rate (Adam)
    cooperative_lr: float = 3e-5  # both networks in the cooperative phase (see the note on drift)
    weight_decay: float = 0.0
    k_g: float = 1.0  # generator pseudo-label threshold: mean + k_g * std of batch reconstruction errors
    k_d: float = 1.0  # discriminator pseudo-label threshold: mean + k_d * std of batch outputs
    negative_target: float = 1.0  # reconstruction target of pseudo-anomalies (GCL: ones)
    seed: int = 0
    device: str | None = None  # None: CUDA, then MPS, then CPU

    def __post_init__(self) -> None:
        for name in ("ae_epochs", "d_epochs", "epochs"):
            if int(getattr(self, name)) < 0:
                raise VADInputError(f"GCLConfig.{name}: must be >= 0")
        if self.batch_size < 2:
            raise VADInputError("GCLConfig.batch_size: must be >= 2 (thresholds need a batch)")
        if not self.hidden or any(h < 1 for h in self.hidden) or any(h < 1 for h in self.disc_hidden):
            raise VADInputError("GCLConfig.hidden/disc_hidden: widths must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise VADInputError("GCLConfig.dropout: must be in [0, 1)")
        if self.lr <= 0 or self.cooperative_lr <= 0:
            raise VADInputError("GCLConfig.lr/cooperative_lr: must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mlp(widths: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:  # no activation on the output layer
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """MLP autoencoder `(N, D) -> (N, D)`: D -> hidden... -> bottleneck -> ...hidden -> D."""

    def __init__(self, dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder = _mlp([dim, *hidden])
        self.decoder = _mlp([*reversed(hidden), dim])
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.act(self.encoder(x)))
        return out


class Discriminator(nn.Module):
    """MLP `(N, D) -> (N,)` logits of "anomalous"."""

    def __init__(self, dim: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.net = _mlp([dim, *hidden, 1], dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x).squeeze(-1)
        return out


def _recon_error(g: Generator, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = (g(x) - x).pow(2).mean(dim=1)
    return out


def batch_pseudo_labels(values: torch.Tensor, k: float) -> torch.Tensor:
    """1.0 where `values` `(B,)` exceed mean + k * std of the batch (population std), else 0.0."""
    threshold = values.mean() + k * values.std(unbiased=False)
    return (values > threshold).float()


def _step_d(d: Discriminator, g: Generator, opt: torch.optim.Optimizer, xb: torch.Tensor, k_g: float) -> float:
    """One BCE step of D on G's pseudo-labels of the batch `xb` `(B, D)`; returns the loss."""
    with torch.no_grad():
        labels = batch_pseudo_labels(_recon_error(g, xb), k_g)
    d.train()
    loss = F.binary_cross_entropy_with_logits(d(xb), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
    opt.step()
    return float(loss.detach())


@dataclass
class _Fitted:
    generator: Generator
    discriminator: Discriminator | None
    center: torch.Tensor  # (D,)
    scale: float
    device: torch.device
    history: list[dict[str, Any]]


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    # Near-equal batches, so no tiny last batch gets degenerate mean + k * std thresholds.
    return np.array_split(rng.permutation(n), max(1, -(-n // batch_size)))


def _fit_gcl(x: np.ndarray, config: GCLConfig, cooperative: bool) -> _Fitted:
    """Train G (and, when `cooperative`, D with G) on `x` `(N, D)`; see the module docstring."""
    if x.shape[0] < 2:
        raise VADInputError(f"features: GCL needs at least 2 rows, got {x.shape[0]}")
    device = resolve_device(config.device)
    x64 = x.astype(np.float64)
    center = x64.mean(axis=0)
    scale = float(np.sqrt(((x64 - center) ** 2).mean())) or 1.0
    data = torch.as_tensor((x64 - center) / scale, dtype=torch.float32, device=device)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, Any]] = []
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(config.seed)
        g = Generator(x.shape[1], config.hidden).to(device)
        d = Discriminator(x.shape[1], config.disc_hidden, config.dropout).to(device) if cooperative else None
        opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        for epoch in range(config.ae_epochs):
            total = 0.0
            for idx in _batches(data.shape[0], config.batch_size, rng):
                loss = _recon_error(g, data[idx]).mean()
                opt_g.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
                opt_g.step()
                total += float(loss.detach()) * idx.size
            history.append({"phase": "autoencoder", "epoch": epoch, "g_loss": total / data.shape[0]})
        if d is not None:
            opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            g.eval()
            for epoch in range(config.d_epochs):
                d_total = 0.0
                for idx in _batches(data.shape[0], config.batch_size, rng):
                    d_total += _step_d(d, g, opt_d, data[idx], config.k_g) * idx.size
                history.append({"phase": "discriminator", "epoch": epoch, "d_loss": d_total / data.shape[0]})
            target = torch.full((1, x.shape[1]), config.negative_target, device=device)
            for group in [*opt_g.param_groups, *opt_d.param_groups]:
                group["lr"] = config.cooperative_lr
            for epoch in range(config.epochs):
                g_total = d_total = share = 0.0
                for idx in _batches(data.shape[0], config.batch_size, rng):
                    xb = data[idx]
                    # 1. G's reconstruction errors label the batch for D.
                    d_total += _step_d(d, g, opt_d, xb, config.k_g) * idx.size
                    # 2. D's outputs label the batch for G: negative learning on pseudo-anomalies.
                    d.eval()
                    with torch.no_grad():
                        labels_g = batch_pseudo_labels(torch.sigmoid(d(xb)), config.k_d)
                    g.train()
                    recon = g(xb)
                    to_self = (recon - xb).pow(2).mean(dim=1)
                    to_target = (recon - target).pow(2).mean(dim=1)
                    g_loss = ((1 - labels_g) * to_self + labels_g * to_target).mean()
                    opt_g.zero_grad(set_to_none=True)
                    g_loss.backward()
                    opt_g.step()
                    g_total += float(g_loss.detach()) * idx.size
                    share += float(labels_g.sum())
                n = data.shape[0]
                history.append(
                    {
                        "phase": "cooperative",
                        "epoch": epoch,
                        "g_loss": g_total / n,
                        "d_loss": d_total / n,
                        "pseudo_anomalous": share / n,
                    }
                )
            d.eval()
    g.eval()
    return _Fitted(g, d, torch.as_tensor(center, dtype=torch.float32, device=device), scale, device, history)


@torch.no_grad()
def _score_gcl(model: _Fitted, x: np.ndarray, use_discriminator: bool, chunk: int = 65536) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        xb = torch.as_tensor(x[start : start + chunk], dtype=torch.float32, device=model.device)
        xb = (xb - model.center) / model.scale
        if use_discriminator:
            if model.discriminator is None:
                raise VADInputError("gcl: scoring by the discriminator needs a model fitted with one")
            s = model.discriminator(xb)
        else:
            s = _recon_error(model.generator, xb)
        out[start : start + chunk] = s.double().cpu().numpy()
    return out


class GCLAutoencoderScorer(PerTileScorer):
    """GCL's generator alone: MLP autoencoder, score = reconstruction MSE (scaled space)."""

    name = "gcl_ae"

    def __init__(self, config: GCLConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = replace(config or GCLConfig(), **overrides)

    def params(self) -> dict[str, Any]:
        return self.config.to_dict()

    @property
    def history(self) -> dict[int, list[dict[str, float]]]:
        """Per-epoch losses (and pseudo-anomalous share) of each sub-model, by tile (-1: pooled)."""
        return {key: model.history for key, model in self._models.items()}

    def _fit_one(self, x: np.ndarray) -> _Fitted:
        return _fit_gcl(x, self.config, cooperative=False)

    def _score_one(self, model: _Fitted, x: np.ndarray, same: bool) -> np.ndarray:
        return _score_gcl(model, x, use_discriminator=False)


class GCLScorer(GCLAutoencoderScorer):
    """Full GCL: generator + discriminator + negative learning; score = discriminator logit."""

    name = "gcl"

    def _fit_one(self, x: np.ndarray) -> _Fitted:
        return _fit_gcl(x, self.config, cooperative=True)

    def _score_one(self, model: _Fitted, x: np.ndarray, same: bool) -> np.ndarray:
        return _score_gcl(model, x, use_discriminator=True)


__all__ = ["Discriminator", "GCLAutoencoderScorer", "GCLConfig", "GCLScorer", "Generator", "batch_pseudo_labels"]
