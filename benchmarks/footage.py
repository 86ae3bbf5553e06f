"""Footage hot paths, printed as JSON: probing (manifest) and clip/tile decoding throughput.

    python benchmarks/footage.py [--ped2 PATH] [--demo-root PATH]

Measures on the shared Ped2 frame folders (all 22 videos): `build_manifest` wall time and
frames/s (every JPEG decoded at 1/8 scale plus sha256), and `iter_clips` tile-clips/s
(decode, tile, copy; no model). Also times `generate_demo_footage` from scratch and the
probe / clip iteration of its mp4 files.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vad_core.footage import build_manifest
from vad_core.footage.clips import ClipConfig, iter_clips
from vad_core.synthetic import generate_demo_footage

REPO = Path(__file__).resolve().parents[1]


def clip_rate(manifest, config: ClipConfig) -> dict[str, float]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    n = 0
    for row in manifest.itertuples():
        for _ in iter_clips(row.path, row.kind, int(row.n_frames), config, size=(int(row.width), int(row.height))):
            n += 1
    dt = time.perf_counter() - t0
    return {"tile_clips": n, "seconds": round(dt, 3), "tile_clips_per_s": round(n / dt, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ucsd_ped2")
    ap.add_argument("--demo-root", type=Path, default=None)
    args = ap.parse_args()
    out: dict[str, object] = {}
    if args.ped2.is_dir():
        t0 = time.perf_counter()
        manifest = build_manifest(args.ped2)
        dt = time.perf_counter() - t0
        frames = int(manifest["n_frames"].sum())
        out["ped2_manifest"] = {
            "videos": len(manifest),
            "frames": frames,
            "seconds": round(dt, 3),
            "frames_per_s": round(frames / dt, 1),
            "ok": int((manifest.status == "ok").sum()),
        }
        out["ped2_iter_clips_tiles"] = clip_rate(manifest, ClipConfig())
    with tempfile.TemporaryDirectory() as tmp:
        root = args.demo_root or Path(tmp) / "demo"
        t0 = time.perf_counter()
        demo = generate_demo_footage(root)
        out["demo_generate_seconds"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        manifest = build_manifest(demo.root)
        dt = time.perf_counter() - t0
        frames = int(manifest["n_frames"].sum())
        out["demo_manifest"] = {
            "videos": len(manifest),
            "frames": frames,
            "seconds": round(dt, 3),
            "frames_per_s": round(frames / dt, 1),
        }
        out["demo_iter_clips_tiles"] = clip_rate(manifest, ClipConfig())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
