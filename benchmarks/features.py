"""Feature-extraction speed, printed as one JSON object (a benchmark, not a test).

Model-only part: I3D clips/s on a batch of 16x224x224 clips after warm-up, and the network's
FLOP rate as a fraction of oneDNN's float32 GEMM rate (`torch.ops.mkldnn._linear_pointwise`,
4096 x 4096 x 4096) measured in the same run, so the figure is comparable across machines and
loads. Every part is a function returning a dict; `main` gathers them under one key each.

    python benchmarks/features.py [--device cpu] [--batch 8] [--repeats 3] [--no-compile] [--no-e2e] [--ped2-all]

End-to-end part (`end_to_end`): tile-clips/s of `vad_core.features.extract_features` from a Ped2
frame folder and from an mp4 of the same frames, table written, as a fraction of the model alone
(`embed` on the same tiles, same backbone object; target >= 0.9), and peak memory for the mp4
played 1x and 3x (peak RSS, and `tracemalloc` with the cheap backbone; target: no growth).

The host's load average is recorded beside the figures: on a shared CPU, other processes
lower both rates, and the fraction only stays meaningful when the load was low and steady.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from vad_core.features import extract_all, extract_features
from vad_core.features.backbones import load_backbone
from vad_core.features.backbones.i3d import count_flops
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.footage import VideoSource, build_manifest, list_frames, probe_video
from vad_core.footage.clips import ClipConfig, iter_clips
from vad_core.io.store import LocalTableStore

SHARED = Path(os.environ.get("VAD_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
PED2 = SHARED / "data" / "ucsd_ped2"


def _time(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]) -> float:
    """Seconds per call, best of `repeats` after `warmup` calls (best-of resists other load)."""
    for _ in range(warmup):
        fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _sync_for(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def gemm_rate(device: str = "cpu", n: int = 4096, warmup: int = 3, repeats: int = 8) -> dict[str, Any]:
    """float32 GEMM GFLOP/s: oneDNN's `_linear_pointwise` on CPU, `torch.mm` (TF32 off) on CUDA."""
    dev = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dev)
    w = torch.randn(n, n, generator=gen).to(dev)
    if dev.type == "cpu":

        def fn() -> Any:
            return torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")

        kernel = "torch.ops.mkldnn._linear_pointwise"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        fn, kernel = (lambda: a @ w.T), "torch.mm (fp32, TF32 off)"
    seconds = _time(fn, warmup, repeats, _sync_for(dev))
    return {"kernel": kernel, "n": n, "seconds": seconds, "gflops": 2 * n**3 / seconds / 1e9}


def i3d_model_only(
    device: str = "cpu",
    batch: int = 8,
    compile: bool = True,
    warmup: int = 2,
    repeats: int = 3,
    precision: str = "fp32",
) -> dict[str, Any]:
    """I3D `embed` throughput on `batch` random 16x224x224 clips (resize off: clips are 224 already)."""
    t0 = time.perf_counter()
    backbone = load_backbone("i3d", device=device, compile=compile, precision=precision, batch_size=batch)
    load_s = time.perf_counter() - t0
    clips = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, 16, 224, 224, 3), dtype=np.uint8))
    t0 = time.perf_counter()
    backbone.embed(clips, resize=False)  # the first call compiles when compile is on
    first_s = time.perf_counter() - t0
    seconds = _time(lambda: backbone.embed(clips, resize=False), warmup, repeats, _sync_for(backbone.device))
    gflop_per_clip = count_flops(16, 224, 224) / 1e9
    clips_per_s = batch / seconds
    return {
        "device": str(backbone.device),
        "precision": precision,
        "batch": batch,
        "compiled": getattr(backbone, "_compiled", None) is not None,
        "load_s": round(load_s, 2),
        "first_call_s": round(first_s, 2),
        "seconds_per_batch": seconds,
        "clips_per_s": clips_per_s,
        "gflop_per_clip": gflop_per_clip,
        "gflops": clips_per_s * gflop_per_clip,
    }


def model_only(device: str = "cpu", batch: int = 8, repeats: int = 3, compile: bool = True) -> dict[str, Any]:
    """GEMM rate before and after the I3D runs, and each run's fraction of their mean."""
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    gemm_before = gemm_rate(device)
    runs = {"eager": i3d_model_only(device, batch, compile=False, repeats=repeats)}
    if compile:
        runs["compiled"] = i3d_model_only(device, batch, compile=True, repeats=repeats)
    gemm_after = gemm_rate(device)
    gemm = (gemm_before["gflops"] + gemm_after["gflops"]) / 2
    for run in runs.values():
        run["fraction_of_gemm"] = run["gflops"] / gemm
    return {
        "gemm_gflops_before": gemm_before["gflops"],
        "gemm_gflops_after": gemm_after["gflops"],
        "gemm_kernel": gemm_before["kernel"],
        "i3d": runs,
        "best_fraction_of_gemm": max(r["fraction_of_gemm"] for r in runs.values()),
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


# --- end to end: video -> clip-features table, against the model alone ----------------------
# Same backbone object for both rates, so they share compilation, threads and the machine's load.


def _write_mp4(frames_dir: Path, out: Path, repeat: int = 1, crf: int = 18) -> Path:
    """Encode a frame folder (played `repeat` times in a row) as an H.264 mp4 at 10 fps."""
    files = list_frames(frames_dir)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": str(crf)})
        with Image.open(files[0]) as im:
            stream.width, stream.height = im.size
        stream.pix_fmt = "yuv420p"
        for _ in range(repeat):
            for f in files:
                with Image.open(f) as im:
                    rgb = np.asarray(im.convert("RGB"))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return out


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux `/proc/self/clear_refs` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _embed_rate(backbone: Any, tiles: np.ndarray, repeats: int) -> dict[str, Any]:
    """tile-clips/s of `embed` alone on a pre-decoded `(B, T, S, S, 3)` batch (after one warm-up)."""
    backbone.embed(tiles, resize=False)
    t0 = time.perf_counter()
    for _ in range(repeats):
        backbone.embed(tiles, resize=False)
    seconds = time.perf_counter() - t0
    return {
        "tile_clips": repeats * len(tiles),
        "seconds": round(seconds, 3),
        "tile_clips_per_s": round(repeats * len(tiles) / seconds, 3),
    }


def _extract_rate(backbone: Any, row: dict, config: ClipConfig, out: Path, batch: int) -> dict[str, Any]:
    """One `extract_features` run with the table written: tile-clips/s and peak RSS over the run."""
    out.unlink(missing_ok=True)
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    result = extract_features(row, backbone, config, LocalTableStore(out.parent), out.name, batch_size=batch)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mib() if reset else None
    return {
        "video": str(row["video_id"]),
        "frames": int(row["n_frames"]),
        "tile_clips": result.n_rows,
        "seconds": round(seconds, 3),
        "tile_clips_per_s": round(result.n_rows / seconds, 3),
        "peak_rss_mib": None if peak is None else round(peak, 1),
    }


def _traced_peak(row: dict, config: ClipConfig, out: Path, batch: int) -> dict[str, Any]:
    """Peak of Python-level allocations (numpy buffers included) in a cheap-backbone extraction:
    the reader's own memory, without the model's."""
    out.unlink(missing_ok=True)
    tracemalloc.start()
    try:
        result = extract_features(
            row, PixelStatsBackbone(), config, LocalTableStore(out.parent), out.name, batch_size=batch
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"frames": int(row["n_frames"]), "tile_clips": result.n_rows, "traced_peak_mib": round(peak / 2**20, 2)}


def end_to_end(
    device: str = "cpu",
    batch: int = 8,
    compile: bool = True,
    repeats: int = 3,
    video: str = "testing/frames/01",
    ped2_all: bool = False,
    backbone: Any = None,
) -> dict[str, Any]:
    """End-to-end tile-clips/s from a Ped2 frame folder and from an mp4 of the same frames, as a
    fraction of model-only (target >= 0.9), and peak memory for the mp4 1x and 3x as long.

    Model-only is `embed` on real Ped2 tiles at the same batch, before and after the end-to-end
    runs (their mean is the reference). `ped2_all` adds `extract_all` over all Ped2 videos.
    """
    folder = PED2 / video
    if not folder.is_dir():
        return {"skipped": f"Ped2 frames not found at {folder} (set VAD_SHARED)"}
    config = ClipConfig()
    if backbone is None:
        backbone = load_backbone("i3d", device=device, compile=compile, batch_size=batch)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frame_row = probe_video(VideoSource(video, folder, "frames"))
        mp4_row = probe_video(VideoSource("ped2_mp4", _write_mp4(folder, tmp / "ped2.mp4"), "file"))
        long_row = probe_video(VideoSource("ped2_mp4_x3", _write_mp4(folder, tmp / "ped2_x3.mp4", repeat=3), "file"))
        items = islice(iter_clips(folder, "frames", int(frame_row["n_frames"]), config), batch)
        tiles = np.stack([item.frames for item in items])

        before = _embed_rate(backbone, tiles, repeats)
        runs = {
            "frame_folder": _extract_rate(backbone, frame_row, config, tmp / "f.parquet", batch),
            "mp4": _extract_rate(backbone, mp4_row, config, tmp / "m.parquet", batch),
            "mp4_3x": _extract_rate(backbone, long_row, config, tmp / "l.parquet", batch),
        }
        after = _embed_rate(backbone, tiles, repeats)
        model_rate = (before["tile_clips_per_s"] + after["tile_clips_per_s"]) / 2
        for run in runs.values():
            run["fraction_of_model"] = round(run["tile_clips_per_s"] / model_rate, 3)
        traced_1x = _traced_peak(mp4_row, config, tmp / "t1.parquet", batch)
        traced_3x = _traced_peak(long_row, config, tmp / "t3.parquet", batch)
        report: dict[str, Any] = {
            "backbone": backbone.name,
            "device": str(getattr(backbone, "device", "cpu")),
            "batch": batch,
            "compiled": getattr(backbone, "_compiled", None) is not None,
            "tile_shape": list(tiles.shape[1:]),
            "model_only_before": before,
            "model_only_after": after,
            "model_only_tile_clips_per_s": round(model_rate, 3),
            **runs,
            "min_fraction_of_model": min(r["fraction_of_model"] for r in runs.values()),
            "target_fraction": 0.9,
            "memory_vs_length": {
                "peak_rss_mib_1x": runs["mp4"]["peak_rss_mib"],
                "peak_rss_mib_3x": runs["mp4_3x"]["peak_rss_mib"],
                "traced_1x": traced_1x,
                "traced_3x": traced_3x,
                "traced_ratio_3x_over_1x": round(traced_3x["traced_peak_mib"] / traced_1x["traced_peak_mib"], 3),
            },
        }
        if ped2_all:
            manifest = build_manifest(PED2)
            t0 = time.perf_counter()
            results = extract_all(manifest, backbone, config, LocalTableStore(tmp / "all"), batch_size=batch)
            seconds = time.perf_counter() - t0
            rows = sum(r.n_rows for r in results)
            report["ped2_all"] = {
                "videos": len(results),
                "errors": [r.error for r in results if r.error],
                "frames": int(manifest["n_frames"].sum()),
                "tile_clips": rows,
                "seconds": round(seconds, 2),
                "tile_clips_per_s": round(rows / seconds, 3),
                "fraction_of_model": round(rows / seconds / model_rate, 3),
            }
    report["loadavg_1min_before"] = load_before
    report["loadavg_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return report


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.platform(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end part")
    parser.add_argument("--ped2-all", action="store_true", help="end to end over all Ped2 videos too")
    args = parser.parse_args(argv)
    results = {
        "environment": environment(),
        "model_only": model_only(args.device, args.batch, args.repeats, compile=not args.no_compile),
    }
    if not args.no_e2e:
        results["end_to_end"] = end_to_end(
            args.device, args.batch, compile=not args.no_compile, repeats=args.repeats, ped2_all=args.ped2_all
        )
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
