"""Put features on the denoiser's scale: centre per dimension, then divide by a scale.

Raw backbone features carry most of their spread in the differences between dimension means
(findings.md), so sigma_data and the noise levels only mean something after centring. Modes:

- "global" (default; best on Ped2 in findings.md): x' = (x - mu) / s with one scale
  s = sqrt(mean over rows and dims of (x - mu)^2), so the relative spread of dimensions is kept;
- "per_dim": s_d = std of dimension d, floored at `floor * s_global` so a (nearly) constant
  dimension is not blown up into noise;
- "none": identity (mu = 0, s = 1).

The scaler is fitted on training rows only and stored with the model as plain tensors, so a
checkpoint loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vad_core.errors import VADInputError, check_features

MODES = ("global", "per_dim", "none")
_BLOCK_ROWS = 16384


class FeatureScaler:
    """Affine per-dimension map fitted on `(N, D)` training rows: `transform(x) = (x - mean) / scale`."""

    def __init__(self, mode: str = "global", floor: float = 1e-3) -> None:
        if mode not in MODES:
            raise VADInputError(f"FeatureScaler: mode must be one of {MODES}, got {mode!r}")
        if not floor > 0:
            raise VADInputError(f"FeatureScaler: floor must be > 0, got {floor}")
        self.mode = mode
        self.floor = float(floor)
        self.mean: np.ndarray | None = None  # (D,) float32
        self.scale: np.ndarray | None = None  # (D,) float32

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def dim(self) -> int:
        mean, _ = self._stats()
        return int(mean.shape[0])

    def fit(self, x: np.ndarray) -> FeatureScaler:
        """Fit mean and scale on training rows `(N, D)` (statistics accumulated in float64)."""
        arr = check_features(x, name="scaler training rows")
        dim = arr.shape[1]
        if self.mode == "none":
            mean = np.zeros(dim)
            scale = np.ones(dim)
        else:
            mean = arr.mean(axis=0, dtype=np.float64)
            # Two-pass variance in row blocks: exact in float64 without an (N, D) float64 copy.
            sq = np.zeros(dim)
            for start in range(0, arr.shape[0], _BLOCK_ROWS):
                centred = arr[start : start + _BLOCK_ROWS].astype(np.float64) - mean
                sq += np.einsum("ij,ij->j", centred, centred)
            var = sq / arr.shape[0]  # per-dim population variance
            s_global = float(np.sqrt(var.mean()))
            if not s_global > 0:
                raise VADInputError("scaler training rows: every row is identical, the scale would be 0")
            if self.mode == "global":
                scale = np.full(dim, s_global)
            else:
                scale = np.maximum(np.sqrt(var), self.floor * s_global)
        self.mean = mean.astype(np.float32)
        self.scale = scale.astype(np.float32)
        return self

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale), each `(D,)` float32; `VADInputError` before `fit`."""
        if self.mean is None or self.scale is None:
            raise VADInputError("FeatureScaler: not fitted (call fit() or from_state_dict() first)")
        return self.mean, self.scale

    def _check(self, x: np.ndarray | torch.Tensor, name: str) -> tuple[np.ndarray, np.ndarray]:
        mean, scale = self._stats()
        if x.ndim != 2 or x.shape[1] != mean.shape[0]:
            raise VADInputError(f"{name}: expected shape (rows, {mean.shape[0]}) for this scaler, got {tuple(x.shape)}")
        return mean, scale

    def transform(self, x: np.ndarray | torch.Tensor, name: str = "features") -> np.ndarray | torch.Tensor:
        """`(N, D)` -> `(N, D)` float32 on the model's scale; a tensor stays a tensor on its device."""
        if isinstance(x, torch.Tensor):
            mean_np, scale_np = self._check(x, name)
            mean = torch.as_tensor(mean_np, device=x.device)
            scale = torch.as_tensor(scale_np, device=x.device)
            return (x.float() - mean) / scale
        arr = np.asarray(x, dtype=np.float32)
        mean_np, scale_np = self._check(arr, name)
        out: np.ndarray = arr - mean_np
        out /= scale_np
        return out

    def inverse_transform(self, x: np.ndarray | torch.Tensor, name: str = "features") -> np.ndarray | torch.Tensor:
        """Inverse of `transform`: `(N, D)` scaled -> `(N, D)` original units."""
        if isinstance(x, torch.Tensor):
            mean_np, scale_np = self._check(x, name)
            mean = torch.as_tensor(mean_np, device=x.device)
            scale = torch.as_tensor(scale_np, device=x.device)
            return x.float() * scale + mean
        arr = np.asarray(x, dtype=np.float32)
        mean_np, scale_np = self._check(arr, name)
        out: np.ndarray = arr * scale_np
        out += mean_np
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain types and CPU tensors only (loadable with `torch.load(weights_only=True)`)."""
        mean, scale = self._stats()
        return {
            "mode": self.mode,
            "floor": self.floor,
            "mean": torch.from_numpy(mean.copy()),
            "scale": torch.from_numpy(scale.copy()),
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> FeatureScaler:
        """Rebuild a fitted scaler from `state_dict()` output."""
        try:
            scaler = cls(mode=str(d["mode"]), floor=float(d.get("floor", 1e-3)))
            mean = np.asarray(torch.as_tensor(d["mean"]).cpu().numpy(), dtype=np.float32).reshape(-1)
            scale = np.asarray(torch.as_tensor(d["scale"]).cpu().numpy(), dtype=np.float32).reshape(-1)
        except (KeyError, TypeError, ValueError) as exc:
            raise VADInputError(f"scaler state: missing or malformed entry ({exc!r})") from None
        if mean.shape != scale.shape or mean.size == 0 or not (np.all(np.isfinite(mean)) and np.all(scale > 0)):
            raise VADInputError(
                f"scaler state: mean {mean.shape} and scale {scale.shape} must be equal-length, finite, scale > 0"
            )
        scaler.mean, scaler.scale = mean, scale
        return scaler


__all__ = ["MODES", "FeatureScaler"]
