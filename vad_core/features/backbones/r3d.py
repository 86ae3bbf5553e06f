"""3D-ResNet-18 (`r3d_18`, Tran et al., "A Closer Look at Spatiotemporal Convolutions", CVPR 2018).

The architecture is written out here because torchvision cannot be installed beside this
torch; module names mirror `torchvision.models.video.r3d_18` exactly, so torchvision's
Kinetics-400 checkpoint (`r3d_18-b3b3357e.pth`) loads with `strict=True`. The feature is the
512-d global average pool before the classifier (the paper's 3D-ResNet18 feature).

Weights: a path the user gives, else torchvision's download cache
(`$TORCH_HOME/hub/checkpoints/r3d_18-b3b3357e.pth`, `TORCH_HOME` defaulting to
`~/.cache/torch`). Nothing is downloaded here and random weights are never substituted
silently: they exist only as the explicit `weights="random"` (for architecture tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vad_core.errors import VADInputError
from vad_core.features.backbones.common import ClipEmbedder
from vad_core.features.backbones.registry import BackboneOptions, no_variant
from vad_core.io.hashing import sha256_file

R3D_FILENAME = "r3d_18-b3b3357e.pth"
R3D_URL = f"https://download.pytorch.org/models/{R3D_FILENAME}"
# torchvision's Kinetics-400 video preset (transforms._presets.VideoClassification)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def torch_hub_checkpoints() -> Path:
    """torchvision's weights cache: `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch`)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    pad = kernel // 2
    layers: list[nn.Module] = [
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False),
        nn.BatchNorm3d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """torchvision's video BasicBlock with `Conv3DSimple` (3x3x3) convolutions."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, 3, stride, relu=True)
        self.conv2 = _conv_bn(c_out, c_out, 3, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = _conv_bn(c_in, c_out, 1, stride, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class R3D18(nn.Module):
    """r3d_18: `forward(x (B, 3, T, H, W) normalized) -> (B, 512)` pooled feature; `fc` kept for key parity."""

    # built with setattr in a loop; declared for the type checker
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        widths, c_in = (64, 128, 256, 512), 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, width, stride), BasicBlock(width, width, 1)))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resolve_weights_file(weights: str | os.PathLike[str] | None, default: Path | None, model: str, how_to: str) -> Path:
    """The checkpoint to load: `weights` if given (must exist), else `default` if present."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise VADInputError(f"{model} weights {path}: file not found. {how_to}")
        return path
    if default is not None and default.is_file():
        return default
    raise VADInputError(f"{model}: no pretrained weights found. {how_to}")


def load_state_file(path: Path, model: str) -> dict[str, torch.Tensor]:
    """`torch.load(weights_only=True)`, unwrapping `{'state_dict': ...}` and DataParallel's 'module.'."""
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad/unsafe file
        raise VADInputError(
            f"{model} weights {path}: cannot be read with torch.load(weights_only=True) ({exc})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VADInputError(f"{model} weights {path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], path: Path, model: str) -> nn.Module:
    """Build the network on the meta device (no wasted random init) and assign the checkpoint.

    Checkpoints from before PyTorch 0.4 (Hara et al.'s 2017 files) lack BatchNorm's
    `num_batches_tracked`, a counter unused at inference; it is filled with 0.
    """
    with torch.device("meta"):
        network = build()
    for key in network.state_dict():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise VADInputError(f"{model} weights {path}: do not fit the architecture ({str(exc)[:800]})") from None
    return network


class R3DBackbone(ClipEmbedder):
    """r3d_18 clip features `(B, 512)`; frames resized to 112x112 (torchvision's video preset:
    bilinear without antialiasing), scaled to [0, 1] and normalized with the Kinetics mean/std."""

    name = "r3d_18"
    dim = 512
    input_size = (112, 112)
    antialias = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mean = torch.tensor(KINETICS_MEAN, device=self.device).view(1, 3, 1, 1, 1) * 255.0
        self._std = torch.tensor(KINETICS_STD, device=self.device).view(1, 3, 1, 1, 1) * 255.0

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean) / self._std

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        return y


def _r3d_how_to() -> str:
    return (
        f"Download torchvision's Kinetics-400 r3d_18 weights ({R3D_URL}) into {torch_hub_checkpoints()} "
        f"(where torchvision keeps them), or pass weights='/path/to/{R3D_FILENAME}'."
    )


def load_r3d18(
    device: str | torch.device | None = None,
    weights: str | os.PathLike[str] | None = None,
    compile: bool | None = None,
    precision: str = "fp32",
    batch_size: int = 8,
) -> R3DBackbone:
    """r3d_18 with Kinetics-400 weights from `weights` or torchvision's cache; `weights='random'` for tests."""
    if isinstance(weights, str) and weights == "random":
        network: nn.Module = R3D18()
        digest = "random"
    else:
        path = resolve_weights_file(weights, torch_hub_checkpoints() / R3D_FILENAME, "r3d_18", _r3d_how_to())
        network = load_into(R3D18, load_state_file(path, "r3d_18"), path, "r3d_18")
        digest = sha256_file(path)
    return R3DBackbone(network, digest, device=device, compile=compile, precision=precision, batch_size=batch_size)


def from_registry(variant: str | None, options: BackboneOptions) -> R3DBackbone:
    """`load_backbone("r3d_18")`."""
    no_variant("r3d_18", variant)
    return load_r3d18(**options.as_kwargs())


__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "R3D18",
    "R3D_FILENAME",
    "R3D_URL",
    "BasicBlock",
    "R3DBackbone",
    "from_registry",
    "load_into",
    "load_r3d18",
    "load_state_file",
    "resolve_weights_file",
    "torch_hub_checkpoints",
]
