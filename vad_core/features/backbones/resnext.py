"""3D-ResNeXt-101 (Hara, Kataoka & Satoh, "Can Spatiotemporal 3D CNNs Retrace the History of 2D
CNNs and ImageNet?", CVPR 2018): cardinality 32, shortcut type B, 2048-d pooled feature.

This is the backbone of the paper's ResNeXt101 features (and of GCL / Kim et al.). Module names
follow Hara et al.'s `models/resnext.py` (`conv1`, `bn1`, `layer1..4`, `fc`), so their Kinetics
checkpoints (`resnext-101-kinetics.pth`: `{'state_dict': {'module.conv1.weight': ...}, ...}`)
load after the DataParallel prefix is stripped. There is no public mirror to fetch from, so the
checkpoint always comes from a file the user supplies.

Input: 16 frames at 112x112. Normalization follows the 2017 release those features were made
with (pixel values 0..255 minus the ActivityNet mean, no division by a std); the 2020 release
("hara2020") works on [0, 1] with the Kinetics mean/std instead.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from vad_core.errors import VADInputError
from vad_core.features.backbones.common import ClipEmbedder
from vad_core.features.backbones.r3d import load_into, load_state_file, resolve_weights_file
from vad_core.features.backbones.registry import BackboneOptions, no_variant
from vad_core.io.hashing import sha256_file

# (mean, std) on the 0..255 pixel scale
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "hara2017": ((114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0)),
    "hara2020": ((0.4345 * 255, 0.4051 * 255, 0.3775 * 255), (0.2768 * 255, 0.2713 * 255, 0.2737 * 255)),
}


class ResNeXtBottleneck(nn.Module):
    """1x1x1 -> grouped 3x3x3 (stride here) -> 1x1x1 to 2 * planes, plus projection shortcut (type B)."""

    expansion = 2

    def __init__(self, c_in: int, planes: int, cardinality: int, stride: int) -> None:
        super().__init__()
        mid = cardinality * planes // 32
        self.conv1 = nn.Conv3d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv3d(c_in, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm3d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNeXt3D(nn.Module):
    """`forward(x (B, 3, T, H, W) normalized) -> (B, 2048)`; ResNeXt-101 is `layers=(3, 4, 23, 3)`."""

    # built with setattr in a loop; declared for the type checker
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, layers: tuple[int, ...] = (3, 4, 23, 3), cardinality: int = 32, num_classes: int = 400) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        c_in = 64
        for i, (planes, n_blocks) in enumerate(zip((128, 256, 512, 1024), layers, strict=False)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(ResNeXtBottleneck(c_in, planes, cardinality, stride))
                c_in = planes * ResNeXtBottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        # Hara et al. pool with a fixed AvgPool3d sized for 16x112x112 input; adaptive pooling
        # gives the same numbers there and still works at other sizes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class ResNeXtBackbone(ClipEmbedder):
    """3D-ResNeXt-101 clip features `(B, 2048)`; frames resized to 112x112 (bilinear, antialiased)."""

    name = "resnext101"
    dim = 2048
    input_size = (112, 112)
    antialias = True

    def __init__(self, *args: Any, normalization: str = "hara2017", **kwargs: Any) -> None:
        if normalization not in NORMALIZATIONS:
            raise VADInputError(f"normalization {normalization!r}: expected one of {sorted(NORMALIZATIONS)}")
        super().__init__(*args, **kwargs)
        mean, std = NORMALIZATIONS[normalization]
        self.normalization = normalization
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1, 1)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean) / self._std

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        return y


RESNEXT_HOW_TO = (
    "3D-ResNeXt-101 weights are not downloadable automatically: get Hara et al.'s Kinetics checkpoint "
    "(resnext-101-kinetics.pth, from the 3D-ResNets-PyTorch project) and pass "
    "weights='/path/to/resnext-101-kinetics.pth' (or set $VAD_RESNEXT_WEIGHTS)."
)
WEIGHTS_ENV = "VAD_RESNEXT_WEIGHTS"


def load_resnext101(
    device: str | torch.device | None = None,
    weights: str | os.PathLike[str] | None = None,
    compile: bool | None = None,
    precision: str = "fp32",
    batch_size: int = 8,
    normalization: str = "hara2017",
) -> ResNeXtBackbone:
    """3D-ResNeXt-101 from a user checkpoint (`weights` or `$VAD_RESNEXT_WEIGHTS`); `'random'` for tests."""
    if isinstance(weights, str) and weights == "random":
        network: nn.Module = ResNeXt3D()
        digest = "random"
    else:
        path = resolve_weights_file(
            weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None, None, "resnext101", RESNEXT_HOW_TO
        )
        network = load_into(ResNeXt3D, load_state_file(path, "resnext101"), path, "resnext101")
        digest = sha256_file(path)
    return ResNeXtBackbone(
        network,
        digest,
        device=device,
        compile=compile,
        precision=precision,
        batch_size=batch_size,
        normalization=normalization,
    )


def from_registry(variant: str | None, options: BackboneOptions) -> ResNeXtBackbone:
    """`load_backbone("resnext101")`."""
    no_variant("resnext101", variant)
    return load_resnext101(**options.as_kwargs())


__all__ = [
    "NORMALIZATIONS",
    "RESNEXT_HOW_TO",
    "WEIGHTS_ENV",
    "ResNeXt3D",
    "ResNeXtBackbone",
    "ResNeXtBottleneck",
    "from_registry",
    "load_resnext101",
]
