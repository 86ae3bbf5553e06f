"""Counter-based Gaussian noise seeded per row, so a row's noise never depends on its batch.

Scoring adds noise to every feature row. Drawing it from one generator over the batch would
make a row's score depend on which rows came before it; instead each row's noise is a pure
function of `(seed, row_key, draw, dim)`:

    a      = mix64(seed + G)
    b      = mix64(a ^ row_key)
    base   = mix64(b + (draw + 1) * G)
    word_j = mix64(base + (j + 1) * G)        j = 0 .. ceil(D/2) - 1   (a splitmix64 stream)
    u1     = (word_j >> 40 + 0.5) / 2^24,  u2 = (word_j & 0xFFFFFF) / 2^24
    eps[2j], eps[2j+1] = sqrt(-2 ln u1) * (cos, sin)(2 pi u2)       (Box-Muller)

with G = 0x9E3779B97F4A7C15 and mix64 the splitmix64 finaliser (Steele, Lea & Flood 2014;
Vigna's reference C code). Integer work is in numpy uint64, whose arithmetic wraps by
definition; the float part is float32. The result is bit-identical for a given machine and
numpy build whatever the batch, order or thread count; numpy's SIMD transcendental kernels may
differ in the last ulp between CPU families.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S40, _LOW24 = np.uint64(40), np.uint64(0xFFFFFF)
_INV24 = np.float32(2.0**-24)
_TWO_PI = np.float32(2.0 * np.pi)
# Rows per work unit: ~1 MB of uint64 words at D = 1024 (measured best on 2 cores: larger
# blocks fall out of cache, smaller ones pay Python overhead per ufunc call).
_CHUNK_ROWS = 256
_POOL: ThreadPoolExecutor | None = None


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array (returns it)."""
    tmp = np.right_shift(z, _S30)
    z ^= tmp
    z *= _C1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _C2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp
    return z


def _as_u64(values: np.ndarray | int) -> np.ndarray:
    """int64 / Python int -> uint64 with two's-complement wrap (keys may be negative)."""
    return np.asarray(values, dtype=np.int64).astype(np.uint64)


def row_bases(seed: int, row_keys: np.ndarray, draw: int) -> np.ndarray:
    """Per-row splitmix64 stream states `(B,)` uint64 for one noise draw."""
    with np.errstate(over="ignore"):
        a = mix64(np.atleast_1d(_as_u64(seed) + GOLDEN))
        b = mix64(_as_u64(row_keys).reshape(-1) ^ a)
        b += _as_u64(draw + 1) * GOLDEN
        return mix64(b)


def _fill(bases: np.ndarray, counters: np.ndarray, out: np.ndarray) -> None:
    """Write Box-Muller normals for `bases` (b,) into `out` (b, D) float32."""
    dim = out.shape[1]
    half = counters.shape[0]
    words = bases[:, None] + counters[None, :]
    mix64(words)
    u1 = (words >> _S40).astype(np.float32)
    u1 += np.float32(0.5)
    u1 *= _INV24
    theta = (words & _LOW24).astype(np.float32)
    theta *= _INV24 * _TWO_PI
    np.log(u1, out=u1)
    u1 *= np.float32(-2.0)
    np.sqrt(u1, out=u1)  # radius
    if dim % 2 == 0:
        pairs = out.reshape(out.shape[0], half, 2)
        np.multiply(u1, np.cos(theta), out=pairs[:, :, 0])
        np.multiply(u1, np.sin(theta), out=pairs[:, :, 1])
    else:
        out[:, 0::2] = u1 * np.cos(theta)
        out[:, 1::2] = (u1 * np.sin(theta))[:, : half - 1]


def _forget_pool() -> None:
    # A forked child inherits the executor object but not its threads; submitting to it would hang.
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(16, workers)), thread_name_prefix="vad-noise")
    return _POOL


def row_noise(seed: int, row_keys: np.ndarray, draw: int, dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """Standard normal noise `(B, dim)` float32, row i a pure function of (seed, row_keys[i], draw).

    `row_keys` is `(B,)` int64. numpy's ufuncs release the GIL, so blocks of rows are filled
    on a small thread pool; the split never changes a value.
    """
    keys = np.asarray(row_keys).reshape(-1)
    if out is None:
        out = np.empty((keys.shape[0], dim), dtype=np.float32)
    if keys.shape[0] == 0:
        return out
    bases = row_bases(seed, keys, draw)
    with np.errstate(over="ignore"):
        counters = np.arange(1, (dim + 1) // 2 + 1, dtype=np.uint64) * GOLDEN
    starts = range(0, keys.shape[0], _CHUNK_ROWS)
    if keys.shape[0] <= _CHUNK_ROWS:
        _fill(bases, counters, out)
        return out
    jobs = [_pool().submit(_fill, bases[s : s + _CHUNK_ROWS], counters, out[s : s + _CHUNK_ROWS]) for s in starts]
    for job in jobs:
        job.result()
    return out


__all__ = ["GOLDEN", "mix64", "row_bases", "row_noise"]
