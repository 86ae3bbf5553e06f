"""The backbone resource: the clip embedder (by registry name) and its device."""

from __future__ import annotations

import functools
import os
from typing import Any

from dagster import ConfigurableResource


class BackboneResource(ConfigurableResource):
    """The pretrained clip embedder and its device.

    `name` None reads `VAD_BACKBONE` (default "i3d"); `device` None reads `VAD_DEVICE` (default:
    CUDA, then MPS, then CPU). Any name `vad_core.features.backbones.load_backbone` knows, e.g.
    `pixelstats-2` (weight-free, for tests and quick runs).
    """

    name: str | None = None
    device: str | None = None
    weights: str | None = None

    def resolved_name(self) -> str:
        return self.name or os.environ.get("VAD_BACKBONE") or "i3d"

    def resolved_device(self) -> str | None:
        return self.device or os.environ.get("VAD_DEVICE") or None

    def load(self) -> Any:
        """The backbone object (`name`, `dim`, `weights_sha256`, `embed`), loaded once per process."""
        return _load_backbone(self.resolved_name(), self.resolved_device(), self.weights)


@functools.lru_cache(maxsize=4)
def _load_backbone(name: str, device: str | None, weights: str | None) -> Any:
    # Loading I3D converts and reads ~50 MB of weights: do it once per process, not per run. Imported
    # here: the backbones need torch, and importing this resource (every `vad` command, the code
    # location) should not.
    from vad_core.features.backbones import load_backbone

    return load_backbone(name, device=device, weights=weights)


__all__ = ["BackboneResource"]
