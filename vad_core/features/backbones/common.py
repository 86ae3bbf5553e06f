"""What every clip backbone shares: input checks, resizing, batching, precision, torch.compile.

A backbone subclass supplies the network, the pixel normalization and the pooling; this base
turns uint8 clips `(B, T, H, W, 3)` into `(B, dim)` float32 features. Clips stay in the layout
they arrive in: `(B, T, H, W, 3).permute(0, 4, 1, 2, 3)` is already a channels-last-3D
`(B, 3, T, H, W)` tensor, the layout oneDNN's fast 3D convolutions want, so no copy is made.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vad_core.devices import resolve_device
from vad_core.errors import VADInputError
from vad_core.features.regions import map_cells, region_weights

COMPILE_ENV = "VAD_COMPILE"
PRECISIONS = ("fp32", "tf32", "bf16")


def resolve_compile(flag: bool | None, device: torch.device | None = None) -> bool:
    """`compile=None` reads `$VAD_COMPILE` (1/true/yes/on or 0/false/no/off); unset, compiling is on
    for CUDA only. On CPU it does not pay: the eager I3D already runs fused oneDNN conv+ReLU at
    about 0.88 of the GEMM rate, and the compiled graph measured 0.93x (crop pass) and 0.89x (frame
    pass) of eager in the same run, after a cold start of 4-9 s with inductor's cache warm and
    minutes without it (benchmarks/features.py, 2-core reference machine). CUDA was not measured
    here; there inductor fuses the pointwise work between cuDNN convolutions."""
    if flag is not None:
        return bool(flag)
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise VADInputError(f"${COMPILE_ENV}={value!r}: expected 1/true/yes/on or 0/false/no/off")
    return device is not None and device.type == "cuda"


def as_clips(clips: Any, name: str = "clips") -> torch.Tensor:
    """Check and wrap clips as a uint8 tensor `(B, T, H, W, 3)` (numpy input is not copied)."""
    if isinstance(clips, np.ndarray):
        if clips.dtype != np.uint8:
            raise VADInputError(f"{name}: expected uint8 frames, got numpy {clips.dtype}")
        clips = torch.from_numpy(np.ascontiguousarray(clips))
    if not isinstance(clips, torch.Tensor):
        raise VADInputError(f"{name}: expected a uint8 array or tensor, got {type(clips).__name__}")
    if clips.dtype != torch.uint8:
        raise VADInputError(f"{name}: expected uint8 frames, got {clips.dtype}")
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise VADInputError(f"{name}: expected shape (B, T, H, W, 3), got {tuple(clips.shape)}")
    if min(clips.shape) == 0:
        raise VADInputError(f"{name}: has an empty axis, shape {tuple(clips.shape)}")
    return clips.contiguous()


def resize_clips(clips: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear resize of uint8 `(B, T, H, W, 3)` frames to `size` = (h, w), result uint8.

    With `antialias=True` on CPU this is PyTorch's uint8 anti-aliased bilinear kernel, built to
    match PIL's `Image.resize(BILINEAR)` (on Ped2 frames 240x360 -> 224x224, 99.9 % of pixels
    equal, the rest off by 1). Elsewhere the resize runs in float and is rounded back to uint8,
    so a resized clip is always what a saved, resized frame would be.
    """
    b, t, h, w, c = clips.shape
    if (h, w) == tuple(size):
        return clips
    frames = clips.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # channels-last NCHW view
    if frames.device.type == "cpu" and antialias:
        out = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    else:
        out = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=antialias, align_corners=False)
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).reshape(b, t, size[0], size[1], c).contiguous()


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """fp32: exact float32 (TF32 off on CUDA, where PyTorch enables it for cuDNN by default);
    tf32: TF32 tensor cores on CUDA; bf16: bfloat16 autocast."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    elif device.type == "cuda":
        cudnn = torch.backends.cudnn
        with cudnn.flags(
            enabled=True, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=precision == "tf32"
        ):
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
    else:
        yield


class ClipEmbedder:
    """Base of the clip backbones: `embed(clips (B, T, H, W, 3) uint8, resize=True) -> (B, dim)`.

    Subclasses set `name`, `dim`, `input_size` (h, w) and `antialias`, and implement
    `preprocess(x (B, 3, T, H, W) float in [0, 255]) -> network input` and
    `pool(network output) -> (B, dim)`.
    """

    name: str = ""
    dim: int = 0
    input_size: tuple[int, int] = (224, 224)
    antialias: bool = True
    # Input pixels per cell of the network's output map when `pool` is its mean over (T, H, W):
    # such a backbone offers the frame pass (`embed_regions`); None = it pools inside the network.
    map_stride: int | None = None

    def __init__(
        self,
        network: nn.Module,
        weights_sha256: str,
        device: str | torch.device | None = None,
        compile: bool | None = None,
        precision: str = "fp32",
        batch_size: int = 8,
    ) -> None:
        if precision not in PRECISIONS:
            raise VADInputError(f"precision {precision!r}: expected one of {PRECISIONS}")
        if batch_size < 1:
            raise VADInputError(f"batch_size {batch_size}: must be >= 1")
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        self.weights_sha256 = weights_sha256
        # torch's stubs lack Module.to(memory_format=...), which exists at run time
        moved = network.to(self.device, memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.network = moved.eval().requires_grad_(False)
        self._compiled: Callable[..., torch.Tensor] | None = None
        self._compiled_regions: Callable[..., torch.Tensor] | None = None
        self._weights: dict[tuple[int, int, bytes], torch.Tensor] = {}
        if resolve_compile(compile, self.device):
            self._compile()

    def _compile(self) -> None:
        # static shapes (the batch is padded to `batch_size`, so one graph serves every call of a
        # shape); freezing folds the weights in as constants and lets oneDNN pre-pack them
        self._compiled = torch.compile(self._forward, dynamic=False, options={"freezing": True})
        if self.map_stride is not None:
            self._compiled_regions = torch.compile(self._regions_forward, dynamic=False, options={"freezing": True})

    @property
    def compiled(self) -> bool:
        """Whether forward passes go through torch.compile (False after a fallback to eager)."""
        return self._compiled is not None

    def to(self, device: str | torch.device) -> ClipEmbedder:
        """Move the network (and normalization constants) to `device`; returns self."""
        dev = resolve_device(device)
        if dev != self.device:
            self.device = dev
            self.network.to(dev)
            for key, value in vars(self).items():
                if isinstance(value, torch.Tensor):
                    setattr(self, key, value.to(dev))
            self._weights.clear()
            if self._compiled is not None:  # frozen weights live in the old graph: build a new one
                self._compile()
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) on device -> (B, dim) float32."""
        x = self.preprocess(clips.permute(0, 4, 1, 2, 3).float())
        return self.pool(self.network(x)).float()

    def _regions_forward(self, clips: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """uint8 `(B, T, H, W, 3)` on device and region weights `(R, H', W')` -> `(B, R, dim)` float32.

        The frame is normalized into a zero buffer of `(H', W')` map cells' pixels (zero = the
        network's own SAME padding value), run once, and its map averaged over time and over
        each region with the weights (`vad_core.features.regions.region_weights`).
        """
        assert self.map_stride is not None
        b, t, h, w, c = clips.shape
        hp, wp = weights.shape[1] * self.map_stride, weights.shape[2] * self.map_stride
        x = clips.new_zeros((b, t, hp, wp, c), dtype=torch.float32)
        x[:, :, :h, :w] = self.preprocess(clips.permute(0, 4, 1, 2, 3).float()).permute(0, 2, 3, 4, 1)
        y = self.network(x.permute(0, 4, 1, 2, 3))  # channels-last 3D view, as in `_forward`
        y = y.float().mean(dim=2).flatten(2)  # (B, C, H' * W')
        return torch.matmul(y, weights.flatten(1).T).transpose(1, 2)  # (B, R, C)

    def _run(self, clips: torch.Tensor, *args: torch.Tensor, regions: bool = False) -> torch.Tensor:
        compiled = self._compiled_regions if regions else self._compiled
        eager = self._regions_forward if regions else self._forward
        n = clips.shape[0]
        # A short batch of at most half the compiled size runs eagerly: padding it would spend at
        # least twice its own work, more than compiling gains (under 1.1x on CPU, benchmarks/features.py).
        if compiled is not None and n > self.batch_size // 2:
            if n < self.batch_size:  # pad to the compiled batch; clips never interact
                pad = clips[:1].expand(self.batch_size - n, *clips.shape[1:])
                clips = torch.cat([clips, pad])
            try:
                return compiled(clips, *args)[:n]
            except Exception as exc:  # noqa: BLE001 - compilation is lazy; any backend failure
                # (no C++ compiler, unsupported op) must degrade to eager, not stop extraction
                warnings.warn(
                    f"{self.name}: torch.compile failed, running eagerly ({type(exc).__name__}: {exc})",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._compiled = self._compiled_regions = None
                clips = clips[:n]
        return eager(clips, *args)

    def pooling_weights(self, height: int, width: int, boxes: Any) -> torch.Tensor:
        """The area weights `(R, H', W')` on this device for `(x, y, w, h)` boxes in a `height` x `width`
        input (cached per geometry: one video's clips all share it)."""
        if self.map_stride is None:
            raise VADInputError(
                f"backbone {self.name!r} pools inside its network and has no frame pass; "
                f"use RegionConfig(backbone_pass='crop')"
            )
        arr = np.ascontiguousarray(boxes, dtype=np.int64).reshape(-1, 4)
        key = (height, width, arr.tobytes())
        if key not in self._weights:
            size = (map_cells(height, self.map_stride), map_cells(width, self.map_stride))
            self._weights[key] = torch.from_numpy(region_weights(arr, size, self.map_stride)).to(self.device)
        return self._weights[key]

    @torch.no_grad()
    def embed_regions(self, clips: Any, boxes: Any) -> np.ndarray:
        """The frame pass: features `(B, R, dim)` float32 of `R` regions `(x, y, w, h)` (pixels of
        the clips as given) from one pass per clip `(B, T, H, W, 3)` uint8 (see `_regions_forward`)."""
        x = as_clips(clips)
        weights = self.pooling_weights(x.shape[2], x.shape[3], boxes)
        out = []
        with precision_context(self.device, self.precision):
            for start in range(0, x.shape[0], self.batch_size):
                chunk = self.prepare(x[start : start + self.batch_size], resize=False)
                out.append(self._run(chunk, weights, regions=True).cpu())
        return torch.cat(out).numpy()

    def prepare(self, clips: Any, resize: bool = True) -> torch.Tensor:
        """Checked uint8 clips on this backbone's device, resized to `input_size` if asked."""
        x = as_clips(clips)
        if resize:
            x = resize_clips(x, self.input_size, self.antialias)
        return x.to(self.device, non_blocking=True)

    @torch.no_grad()
    def embed(self, clips: Any, resize: bool = True) -> np.ndarray:
        """Features `(B, dim)` float32 (numpy, CPU) of uint8 clips `(B, T, H, W, 3)`.

        `resize=True` scales every frame to `input_size` (bilinear, see `resize_clips`);
        `resize=False` feeds the frames at the size given.
        """
        x = as_clips(clips)
        out = []
        with precision_context(self.device, self.precision):
            for start in range(0, x.shape[0], self.batch_size):
                out.append(self._run(self.prepare(x[start : start + self.batch_size], resize)).cpu())
        return torch.cat(out).numpy()

    def to_dict(self) -> dict[str, Any]:
        """What identifies these features (for table metadata and run logs)."""
        return {
            "name": self.name,
            "dim": self.dim,
            "weights_sha256": self.weights_sha256,
            "input_size": list(self.input_size),
            "precision": self.precision,
        }


__all__ = [
    "COMPILE_ENV",
    "PRECISIONS",
    "ClipEmbedder",
    "as_clips",
    "precision_context",
    "resize_clips",
    "resolve_compile",
]
