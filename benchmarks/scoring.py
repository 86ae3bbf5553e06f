"""Scoring overhead beyond the network: per-row noise generation and the score_rows pipeline; prints JSON.

For each feature dimension D (paper-size MLP, untrained weights: speed does not depend on them):
- `noise_normals_per_s`: `vad_core.diffusion.noise.row_noise` throughput (counter-based, per-row seeded);
- `score_rows_per_s`: one-step denoising score through `score_rows` (scaling, noise, D, MSE),
  one draw, beside `model_rows_per_s`: the bare D(x; sigma) on the same rows, so
  `pipeline_fraction` = score rate / model rate shows what the per-row noise and the rest cost.
Timings are minima over repeats, interleaved. `--quick`: D = 1024 only, 8192 rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vad_core.devices import resolve_device  # noqa: E402
from vad_core.diffusion.denoiser import TrainedDenoiser  # noqa: E402
from vad_core.diffusion.network import MLPDenoiser  # noqa: E402
from vad_core.diffusion.noise import row_noise  # noqa: E402
from vad_core.diffusion.precond import EDMPrecond  # noqa: E402
from vad_core.diffusion.preprocessing import FeatureScaler  # noqa: E402
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows  # noqa: E402
from vad_core.diffusion.training import TrainConfig  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def bench(dim: int, rows: int, repeats: int, device: torch.device) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    tc = TrainConfig()
    model = EDMPrecond(MLPDenoiser(tc.model_config(dim)), 1.0).to(device).eval().requires_grad_(False)
    den = TrainedDenoiser(
        model=model,
        scaler=FeatureScaler().fit(x),
        sigma_data=1.0,
        model_config=tc.model_config(dim),
        train_config=tc,
        fingerprint="benchmark",
    )
    keys = np.arange(rows, dtype=np.int64)
    cfg = ScoreConfig(n_draws=1, batch_rows=rows)
    xs = torch.from_numpy(x).to(device)
    out = np.empty((rows, dim), np.float32)

    def model_only() -> None:
        with torch.no_grad():
            den.denoise(xs, 2.0)

    t = best_of(
        {
            "noise": lambda: row_noise(0, keys, 0, dim, out=out),
            "score": lambda: score_rows(den, x, cfg, row_keys=keys),
            "model": model_only,
        },
        repeats,
        device,
    )
    return {
        "dim": dim,
        "rows": rows,
        "noise_normals_per_s": rows * dim / t["noise"],
        "noise_ms_per_row_batch": 1e3 * t["noise"],
        "score_rows_per_s": rows / t["score"],
        "model_rows_per_s": rows / t["model"],
        "pipeline_fraction": t["model"] / t["score"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    dims, rows = ([1024], 8192) if args.quick else ([512, 1024, 2048], 16384)
    results = [bench(d, rows, 1 if args.quick else args.repeats, device) for d in dims]
    print(
        json.dumps(
            {
                "benchmark": "scoring",
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
