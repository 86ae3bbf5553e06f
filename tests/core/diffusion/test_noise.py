"""Per-row counter-based noise: against a pure-Python splitmix64 / Box-Muller reference."""

from __future__ import annotations

import math

import numpy as np

from vad_core.diffusion.noise import row_bases, row_noise

M64 = (1 << 64) - 1
G = 0x9E3779B97F4A7C15


def _mix64_ref(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _splitmix64_stream(state: int, n: int) -> list[int]:
    out = []
    for _ in range(n):
        state = (state + G) & M64
        out.append(_mix64_ref(state))
    return out


def test_splitmix64_matches_published_reference_sequence() -> None:
    # Vigna's splitmix64.c seeded with 1234567: first outputs (as used by many test suites)
    assert _splitmix64_stream(1234567, 3) == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_row_noise_matches_scalar_reference() -> None:
    seed, keys, draw, dim = 7, np.array([0, 5, -3, 2**62], dtype=np.int64), 2, 5
    got = row_noise(seed, keys, draw, dim)
    for i, key in enumerate(keys.tolist()):
        a = _mix64_ref((seed + G) & M64)
        b = _mix64_ref(a ^ (key & M64))
        base = _mix64_ref((b + (draw + 1) * G) & M64)
        assert int(row_bases(seed, keys[i : i + 1], draw)[0]) == base
        words = _splitmix64_stream(base, 3)
        ref = []
        for w in words:
            u1 = np.float32(((w >> 40) + 0.5) * 2.0**-24)
            u2 = (w & 0xFFFFFF) * 2.0**-24
            r = math.sqrt(-2.0 * math.log(float(u1)))
            ref += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
        np.testing.assert_allclose(got[i], ref[:dim], rtol=2e-5, atol=2e-5)


def test_noise_of_a_row_does_not_depend_on_its_batch() -> None:
    keys = np.arange(1000, dtype=np.int64) * 7919 - 12345
    full = row_noise(3, keys, 1, 33)  # odd dim on purpose; > one worker block of rows
    perm = np.random.default_rng(0).permutation(keys.size)
    np.testing.assert_array_equal(row_noise(3, keys[perm], 1, 33), full[perm])
    np.testing.assert_array_equal(row_noise(3, keys[17:18], 1, 33), full[17:18])
    # a different draw or seed gives different noise
    assert not np.array_equal(row_noise(3, keys[:10], 2, 33), full[:10])
    assert not np.array_equal(row_noise(4, keys[:10], 1, 33), full[:10])


def test_noise_is_standard_normal() -> None:
    z = row_noise(0, np.arange(4000, dtype=np.int64), 0, 64).astype(np.float64)
    assert abs(z.mean()) < 0.01  # 256k samples: std error 0.002
    assert abs(z.std() - 1.0) < 0.01
    # fourth moment 3 for a Gaussian; dimension pairs (cos, sin) uncorrelated
    assert abs(np.mean(z**4) - 3.0) < 0.1
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 0.05


def test_noise_works_in_a_forked_child_after_the_parent_used_its_threads() -> None:
    import multiprocessing as mp

    keys = np.arange(2000, dtype=np.int64)
    parent = row_noise(0, keys, 0, 16)  # starts the worker threads in this process
    with mp.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(row_noise, (0, keys, 0, 16)).get(timeout=60)
    np.testing.assert_array_equal(child, parent)
