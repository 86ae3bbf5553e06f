"""What keeping freed blocks in the heap buys feature extraction on CPU, as one JSON object.

    python benchmarks/extraction_malloc.py [--videos testing/frames/01,testing/frames/02] [--rounds 2]

`vad_core.features.extract_features` embeds on CPU inside `vad_core._malloc.reuse_large_allocations`:
glibc keeps I3D's freed activations for the next batch instead of unmapping them and
page-faulting them in again. This measures that against the same extraction with the tuning off
(`VAD_MALLOC_TUNING=0`): each side in a fresh process (one torch thread, the pipeline's
`FeatureConfig` defaults, the I3D backbone loaded first and not timed), the two sides
alternating for `--rounds` rounds so that a change of machine load hits both. Per video: wall,
user and kernel CPU seconds and minor page faults; `speedup` = untuned wall / tuned wall (sums
over every video and round), with the load average beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _output import emit_json

REPO = Path(__file__).resolve().parents[1]
PED2 = Path(os.environ.get("VAD_SHARED", REPO.parent / "shared")) / "data" / "ucsd_ped2"

# Run in the child: extract each video once, print one JSON line per video.
CHILD = """
import json, resource, sys, tempfile, time
import torch
torch.set_num_threads(1)
from vad_core.features import extract_features
from vad_core.features.backbones import load_backbone
from vad_core.io.store import LocalTableStore
from vad_pipeline.assets.features import FeatureConfig
config, backbone = FeatureConfig(), load_backbone("i3d", device="cpu")
store = LocalTableStore(tempfile.mkdtemp(prefix="vad-bench-malloc-"))
for video in sys.argv[2:]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    extract_features(f"{sys.argv[1]}/{video}", backbone, config.to_core(), store, f"{video}.parquet",
                     device="cpu", batch_size=config.batch_size, regions=config.to_regions())
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"video": video, "wall_s": t1 - t0, "user_s": r1.ru_utime - r0.ru_utime,
                      "sys_s": r1.ru_stime - r0.ru_stime, "minor_faults": r1.ru_minflt - r0.ru_minflt}))
"""


def one_side(videos: list[str], tuned: bool) -> list[dict[str, Any]]:
    env = {**os.environ, "VAD_MALLOC_TUNING": "1" if tuned else "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="vad-bench-malloc-home-") as home:
        env["VAD_HOME"] = home
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(PED2), *videos],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise SystemExit(f"extraction child failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("wall_s", "user_s", "sys_s", "minor_faults")
    return {k: round(sum(float(r[k]) for r in rows), 2) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="testing/frames/01,testing/frames/02")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    videos = [v for v in args.videos.split(",") if v]
    missing = [v for v in videos if not (PED2 / v).is_dir()]
    if missing:
        raise SystemExit(f"--videos: no such Ped2 folder under {PED2}: {missing}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    sides: dict[str, list[dict[str, Any]]] = {"untuned": [], "tuned": []}
    for _ in range(args.rounds):
        for name in ("untuned", "tuned"):
            sides[name] += one_side(videos, tuned=name == "tuned")
    untuned, tuned = totals(sides["untuned"]), totals(sides["tuned"])
    result = {
        "benchmark": "feature extraction on CPU, freed blocks kept in the heap vs returned to the OS",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "videos": videos,
        "rounds": args.rounds,
        "untuned": untuned,
        "tuned": tuned,
        "speedup": round(untuned["wall_s"] / tuned["wall_s"], 3),
        "per_video": sides,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
