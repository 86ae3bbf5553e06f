"""The backbone interface and the registry that builds a backbone by name.

    backbone = load_backbone("i3d", device="cuda")
    backbone = load_backbone("pixelstats-2")     # a variant after the dash: here the region grid

A name is `<family>` or `<family>-<variant>`; each family registers one factory that receives
the variant (None when absent) and the shared loading options. The network modules are
imported only when their family is asked for, so loading one backbone never imports another.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from vad_core.errors import VADInputError


@runtime_checkable
class Backbone(Protocol):
    """What feature extraction needs from a backbone."""

    name: str
    dim: int
    weights_sha256: str  # sha256 of the published weights file ("random" for test networks)
    input_size: tuple[int, int]  # (h, w) that `embed(..., resize=True)` scales frames to
    device: torch.device

    def embed(self, clips: Any, resize: bool = True) -> np.ndarray:
        """uint8 `(B, T, H, W, 3)` -> float32 `(B, dim)` on the CPU."""
        ...


@dataclass(frozen=True)
class BackboneOptions:
    """What `load_backbone` passes to a family's factory besides the variant."""

    device: str | torch.device | None = None
    weights: str | os.PathLike[str] | None = None
    compile: bool | None = None
    precision: str = "fp32"
    batch_size: int = 8

    def as_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of a family's loader (`load_i3d(**options.as_kwargs())`)."""
        return asdict(self)


BackboneFactory = Callable[[str | None, BackboneOptions], Backbone]

# family -> "module:function" of its factory, imported on first use.
_FACTORIES: dict[str, str | BackboneFactory] = {
    "i3d": "vad_core.features.backbones.i3d:from_registry",
    "r3d_18": "vad_core.features.backbones.r3d:from_registry",
    "resnext101": "vad_core.features.backbones.resnext:from_registry",
    "pixelstats": "vad_core.features.backbones.pixelstats:from_registry",
}


def backbone_names() -> tuple[str, ...]:
    """The registered families, in registration order."""
    return tuple(_FACTORIES)


def register_backbone(family: str, factory: str | BackboneFactory) -> None:
    """Add a backbone family: `factory(variant, options) -> Backbone`, or its `"module:function"`."""
    if not family or "-" in family:
        raise VADInputError(f"backbone family {family!r}: must be non-empty and contain no '-'")
    _FACTORIES[family] = factory


def _factory(family: str) -> BackboneFactory:
    entry = _FACTORIES[family]
    if isinstance(entry, str):
        module, _, func = entry.partition(":")
        entry = getattr(importlib.import_module(module), func)
        _FACTORIES[family] = entry
    return entry


def no_variant(family: str, variant: str | None) -> None:
    """Refuse a variant for a family that has none (`i3d-x` is a typo, not a request)."""
    if variant is not None:
        raise VADInputError(f"backbone {family}-{variant}: {family!r} takes no variant after '-'")


def load_backbone(
    name: str = "i3d",
    device: str | torch.device | None = None,
    weights: str | os.PathLike[str] | None = None,
    compile: bool | None = None,
    precision: str = "fp32",
    batch_size: int = 8,
) -> Backbone:
    """Build a backbone by registered name (see the module doc and each family's loader).

    `device`: as `vad_core.devices.resolve_device`. `weights`: a weights file overriding the
    default source (`"random"` gives untrained r3d_18/resnext101 networks, for tests only).
    `compile`: torch.compile the network (None: `$VAD_COMPILE`, else on for CUDA only: on CPU
    it measured slower, see `common.resolve_compile`; falls back to eager if compilation fails). `precision`:
    "fp32" (exact, default), "tf32" (CUDA) or "bf16". `batch_size`: clips per forward pass
    inside `embed` (and `embed_regions`).
    """
    family, dash, variant = str(name).partition("-")
    if family not in _FACTORIES:
        raise VADInputError(
            f"backbone {name!r}: unknown, expected one of {backbone_names()} "
            f"(a variant may follow a '-', as in 'pixelstats-2')"
        )
    options = BackboneOptions(
        device=device, weights=weights, compile=compile, precision=precision, batch_size=batch_size
    )
    return _factory(family)(variant if dash else None, options)


__all__ = [
    "Backbone",
    "BackboneFactory",
    "BackboneOptions",
    "backbone_names",
    "load_backbone",
    "no_variant",
    "register_backbone",
]
