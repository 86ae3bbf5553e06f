"""Keep glibc from returning large freed blocks to the OS during training and feature extraction
(Linux/glibc, CPU only).

Why: a training step at batch 8192 allocates and frees many activations of (8192, 1024) float32,
32 MiB each. glibc serves every block at or above its mmap threshold (dynamic, at most 32 MiB on
64-bit) with a fresh `mmap` and unmaps it on `free`, so each step the kernel page-faults and
zero-fills those pages again, costing about twice a fill of the tensor and ~20% of a step.
Extraction is hit the same way by I3D's activations of each batch: measured on a Ped2 video
(180 frames, one torch thread), 1.6 million minor page faults and 3.4 s of kernel time in 12.8 s
of wall, against 0.2 million, 0.4 s and 9.7 s inside this block (1.3x; docs/features.md).
Inside `reuse_large_allocations()` mmap is switched off (`M_MMAP_MAX = 0`) and heap trimming
raised (`M_TRIM_THRESHOLD`), so freed activations stay in the heap and the next step reuses
them. On exit the mmap limit and a trim threshold are restored (glibc's own values once its
dynamic threshold has grown: 65536 maps, 64 MiB) and `malloc_trim(0)` hands the freed heap back
to the OS, so the process does not keep the training peak afterwards.

Harmless where it cannot apply: on non-glibc systems, or with `VAD_MALLOC_TUNING=0` in the
environment, the context manager does nothing. Nested/concurrent uses are counted; the first
entry applies the settings and the last exit restores them. Results are unaffected (only where
memory comes from changes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc DEFAULT_MMAP_MAX
_RESTORED_TRIM = 64 * 2**20  # glibc's dynamic trim threshold once the mmap threshold reached its 32 MiB cap
_TRAINING_TRIM = 2**62  # never trim the heap top while training

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | None | bool = False  # False = not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = lib
            except (OSError, AttributeError):
                _libc = None
    return _libc if isinstance(_libc, ctypes.CDLL) else None


def _trim_value(value: int) -> int:
    # mallopt takes a C int; the largest one means "never".
    return min(value, 2**31 - 1)


@contextmanager
def reuse_large_allocations(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed large blocks stay in the heap for reuse; yields whether tuning is active."""
    global _depth
    lib = _glibc() if enabled and os.environ.get("VAD_MALLOC_TUNING", "1") != "0" else None
    if lib is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            lib.mallopt(_M_TRIM_THRESHOLD, _trim_value(_TRAINING_TRIM))
            lib.mallopt(_M_MMAP_MAX, 0)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                lib.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                lib.mallopt(_M_TRIM_THRESHOLD, _RESTORED_TRIM)
                lib.malloc_trim(0)


__all__ = ["reuse_large_allocations"]
