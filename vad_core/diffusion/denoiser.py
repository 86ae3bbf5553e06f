"""The trained denoiser as scoring sees it, and its checkpoints (bytes or a file, weights_only).

`TrainedDenoiser` bundles the EMA network (eval mode), the feature scaler, sigma_data and the
provenance (configs, data fingerprint, history). A checkpoint is one `torch.save` of plain
tensors, numbers, strings and lists, so it loads with `torch.load(weights_only=True)`: nothing
in it is unpickled as code. `checkpoint_bytes` / `load_checkpoint(bytes)` let a caller keep
checkpoints wherever it stores things; `save_checkpoint(path)` writes a local file atomically.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from vad_core.devices import resolve_device
from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser
from vad_core.diffusion.precond import EDMPrecond
from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.errors import VADInputError
from vad_core.io.tables import atomic_write_bytes

CHECKPOINT_FORMAT = "vad_core.denoiser/1"


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
    def denoise(
        self, x_scaled: torch.Tensor, sigma: float | torch.Tensor, tiles: torch.Tensor | None = None
    ) -> torch.Tensor:
        """D(x; sigma) for scaled rows `(N, D)`; sigma a scalar or `(N,)`; tiles `(N,)` used iff n_tiles > 0."""
        out: torch.Tensor = self.model(x_scaled, sigma, tiles if self.n_tiles > 0 else None)
        return out

    def to(self, device: str | torch.device) -> TrainedDenoiser:
        self.model.to(resolve_device(str(device)))
        return self


class TrainedModel(Protocol):
    """What a checkpoint takes from a training result (`vad_core.diffusion.training.TrainResult`)."""

    model: EDMPrecond  # the raw (non-EMA) weights, kept for resuming
    best_epoch: int

    @property
    def denoiser(self) -> TrainedDenoiser: ...


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state (checkpoints, the best epoch kept during training)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def denoiser_payload(
    denoiser: TrainedDenoiser, raw: EDMPrecond | None = None, best_epoch: int | None = None
) -> dict[str, Any]:
    """A denoiser as plain tensors, numbers, strings and lists (what `torch.load(weights_only=True)` reads).

    Also the member entries of a detector checkpoint (`vad_core.diffusion.detector`).
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "dim": denoiser.model_config.dim,
        "model_config": denoiser.model_config.to_dict(),
        "train_config": denoiser.train_config.to_dict(),
        "sigma_data": float(denoiser.sigma_data),
        "fingerprint": denoiser.fingerprint,
        "scaler": denoiser.scaler.state_dict(),
        "ema_state_dict": cpu_state_dict(denoiser.model),
        "model_state_dict": None if raw is None else cpu_state_dict(raw),
        "history": [dict(h) for h in denoiser.history],
        "memorization_auc": denoiser.memorization_auc,
        "best_epoch": best_epoch,
    }


def checkpoint_bytes(source: TrainedModel | TrainedDenoiser) -> bytes:
    """The checkpoint of a training result (EMA and raw weights, best epoch) or of a `TrainedDenoiser`
    (EMA weights only): state dicts, configs, sigma_data, scaler, data fingerprint and history."""
    if isinstance(source, TrainedDenoiser):
        payload = denoiser_payload(source)
    else:
        payload = denoiser_payload(source.denoiser, source.model, source.best_epoch)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(source: TrainedModel | TrainedDenoiser, path: str | os.PathLike[str]) -> Path:
    """Write `checkpoint_bytes(source)` to a local file atomically (temp file + rename)."""
    atomic_write_bytes(path, checkpoint_bytes(source))
    return Path(path)


def load_checkpoint(
    source: str | os.PathLike[str] | bytes, device: str | None = None, name: str | None = None
) -> TrainedDenoiser:
    """Load a checkpoint (a local file, or the bytes `checkpoint_bytes` made) onto `device`.

    Read with `torch.load(weights_only=True)`. `name` says where bytes came from (a storage key),
    for error messages and `TrainedDenoiser.source`; a path names itself.
    """
    payload, where = read_payload(source, name)
    return denoiser_from_payload(payload, where, device)


def read_payload(source: str | os.PathLike[str] | bytes, name: str | None = None) -> tuple[Any, str]:
    """`torch.load(weights_only=True)` of a checkpoint file or bytes -> (payload, where it came from)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        where, stream = name or "<bytes>", io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise VADInputError(f"checkpoint {path}: file not found")
        where, stream = name or str(path), io.BytesIO(path.read_bytes())
    try:
        payload = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling/zip errors: report the file, not torch's internals
        raise VADInputError(
            f"checkpoint {where}: not a readable denoiser checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    return payload, where


def denoiser_from_payload(payload: Any, where: str, device: str | None = None) -> TrainedDenoiser:
    """The `TrainedDenoiser` of a `denoiser_payload` dict (`where` names it in errors)."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise VADInputError(f"checkpoint {where}: format {found!r} is not {CHECKPOINT_FORMAT!r}")
    try:
        model_config = DenoiserConfig(**payload["model_config"])
        train_config = TrainConfig.from_dict(payload["train_config"])
        scaler = FeatureScaler.from_state_dict(payload["scaler"])
        sigma_data = float(payload["sigma_data"])
        model = EDMPrecond(MLPDenoiser(model_config), sigma_data)
        model.load_state_dict(payload["ema_state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise VADInputError(f"checkpoint {where}: incomplete or inconsistent ({type(exc).__name__}: {exc})") from None
    if scaler.dim != model_config.dim:
        raise VADInputError(f"checkpoint {where}: scaler has {scaler.dim} dims, model {model_config.dim}")
    model.to(resolve_device(device)).eval().requires_grad_(False)
    return TrainedDenoiser(
        model=model,
        scaler=scaler,
        sigma_data=sigma_data,
        model_config=model_config,
        train_config=train_config,
        fingerprint=str(payload["fingerprint"]),
        history=list(payload.get("history") or []),
        memorization_auc=payload.get("memorization_auc"),
        source=where,
    )


__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainedDenoiser",
    "TrainedModel",
    "checkpoint_bytes",
    "cpu_state_dict",
    "denoiser_from_payload",
    "denoiser_payload",
    "load_checkpoint",
    "read_payload",
    "save_checkpoint",
]
