"""Peak memory of scoring a large feature table in a stream; prints JSON.

Writes a Parquet feature table of `--rows` rows (default 1M) x D = 1024 float32 to a temp
folder (row groups of 65536), then scores it with `score_stream` over Parquet record batches,
the bounded-memory path: one-step denoising score, one draw, a small untrained denoiser (speed
and memory of the stream do not depend on the weights). Reports the process's peak RSS while
scoring beside the table's in-memory size (rows x D x 4 bytes); issue 2's bar is a ratio < 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vad_core.diffusion.denoiser import TrainedDenoiser  # noqa: E402
from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser  # noqa: E402
from vad_core.diffusion.precond import EDMPrecond  # noqa: E402
from vad_core.diffusion.preprocessing import FeatureScaler  # noqa: E402
from vad_core.diffusion.reconstruction import ScoreConfig, score_stream  # noqa: E402
from vad_core.diffusion.training import TrainConfig  # noqa: E402
from vad_core.io.tables import features_to_arrow  # noqa: E402


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def write_table(path: Path, rows: int, dim: int, group: int = 65536) -> None:
    rng = np.random.default_rng(0)
    schema = pa.schema([("row", pa.int64()), ("feature", pa.list_(pa.float32(), dim))])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            x = rng.standard_normal((n, dim), dtype=np.float32)
            writer.write_table(
                pa.table({"row": np.arange(start, start + n), "feature": features_to_arrow(x)}, schema=schema)
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = DenoiserConfig(dim=args.dim, hidden=(64, 32, 16))
    scaler = FeatureScaler("global").fit(np.random.default_rng(1).standard_normal((1024, args.dim), dtype=np.float32))
    denoiser = TrainedDenoiser(EDMPrecond(MLPDenoiser(cfg), 1.0).eval(), scaler, 1.0, cfg, TrainConfig(), "bench")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.parquet"
        t0 = time.perf_counter()
        write_table(path, args.rows, args.dim)
        write_s = time.perf_counter() - t0
        base = _current_rss_mib()

        def chunks():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=["row", "feature"]):
                col = batch.column("feature")
                x = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, args.dim)
                yield x, None, batch.column("row").to_numpy()

        t0 = time.perf_counter()
        n = sum(len(s) for s in score_stream(denoiser, chunks(), ScoreConfig(score_type="denoising", n_draws=1)))
        score_s = time.perf_counter() - t0
        table_mib = args.rows * args.dim * 4 / 2**20
        peak = _rss_peak_mib()
        print(
            json.dumps(
                {
                    "rows": n,
                    "dim": args.dim,
                    "table_mib": round(table_mib, 1),
                    "file_mib": round(path.stat().st_size / 2**20, 1),
                    "rss_before_scoring_mib": round(base, 1),
                    "peak_rss_mib": round(peak, 1),
                    "peak_over_table": round(peak / table_mib, 3),
                    "target_peak_over_table": 2.0,
                    "write_seconds": round(write_s, 1),
                    "score_seconds": round(score_s, 1),
                    "rows_per_second": round(n / score_s, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
