"""Device choice: CUDA, then MPS, then CPU, unless the caller names one."""

from __future__ import annotations

import torch

from vad_core.errors import VADInputError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the requested device, or the best available one when `device` is None/'auto'."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise VADInputError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VADInputError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VADInputError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


__all__ = ["resolve_device"]
