"""Feature-extraction speed, printed as one JSON object (a benchmark, not a test).

    python benchmarks/features.py [--device cpu] [--batch 8] [--repeats 3] [--no-compile] [--no-e2e]
                                  [--ped2-all] [--pipeline]

Model-only part (`model_only`): I3D on Ped2-shaped input in both passes, eager and compiled, all
in the same run: the crop pass embeds 16x224x224 tile crops (three per Ped2 clip), the frame
pass one 16x224x360 band per clip (padded to 224x384) pooled over the same three tiles. Each
gives tile-clips/s (frame pass: clips/s x 3, the footage-equivalent rate), GFLOP per tile-clip,
its first call (the compile cold start) and its FLOP rate as a fraction of oneDNN's float32 GEMM
rate measured before and after; `frame_over_crop` is the footage-per-second ratio (target >= 1.6).

End-to-end part (`end_to_end`): tile-clips/s of `vad_core.features.extract_features` from a
Ped2 frame folder and an mp4 of the same frames, for each pass, as a fraction of the same
pass's model-only rate on the same backbone object (target >= 0.9), the end-to-end
frame-over-crop ratio, and peak memory for the mp4 played 1x and 3x (peak RSS, and
`tracemalloc` with the cheap backbone; target: no growth). `--ped2-all` adds `extract_all` over
all 22 Ped2 videos for each pass.

Pipeline part (`--pipeline`): `vad demo --dataset ucsd_ped2` end to end in fresh temporary
homes, before (crop pass, compile off: the pipeline as it was) and after (frame pass, compile
at its default: on for CUDA only), with each stage's wall time.

The host's load average is recorded beside the figures: on a shared CPU, other processes
lower every rate; ratios measured in the same run are what stays comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
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
from vad_core.features.regions import RegionConfig, region_layout, relative_boxes
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


PED2_TILES = [(0, 0, 224, 224), (68, 0, 224, 224), (136, 0, 224, 224)]  # relative to the 224x360 band


def model_only(device: str = "cpu", batch: int = 8, repeats: int = 3, compile: bool = True) -> dict[str, Any]:
    """I3D in both passes, eager and compiled, on random Ped2-shaped input: `batch` tile crops
    16x224x224 (crop pass) and `batch` clips of the 16x224x360 band pooled over Ped2's three tiles
    (frame pass). After each configuration's first call (the compile cold start), the
    configurations are timed round-robin `repeats` times (best of), so load drift on a shared
    CPU reaches all of them alike; the GEMM rate is measured before and after."""
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    gemm_before = gemm_rate(device)
    rng = np.random.default_rng(0)
    crops = torch.from_numpy(rng.integers(0, 256, (batch, 16, 224, 224, 3), dtype=np.uint8))
    bands = torch.from_numpy(rng.integers(0, 256, (batch, 16, 224, 360, 3), dtype=np.uint8))
    flops = {"crop": count_flops(16, 224, 224), "frame": count_flops(16, 224, 384) / 3}  # per tile-clip
    tile_clips = {"crop": batch, "frame": 3 * batch}
    modes = {"eager": False, "compiled": True} if compile else {"eager": False}
    backbones, calls, first = {}, {}, {}
    for mode, flag in modes.items():
        t0 = time.perf_counter()
        bb = backbones[mode] = load_backbone("i3d", device=device, compile=flag, batch_size=batch)
        load_s = time.perf_counter() - t0
        calls[(mode, "crop")] = lambda bb=bb: bb.embed(crops, resize=False)
        calls[(mode, "frame")] = lambda bb=bb: bb.embed_regions(bands, PED2_TILES)
        for name in ("crop", "frame"):
            t0 = time.perf_counter()
            calls[(mode, name)]()  # compiles when compile is on
            first[(mode, name)] = time.perf_counter() - t0
        first[(mode, "load")] = load_s
    sync = _sync_for(next(iter(backbones.values())).device)
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            sync()
            best[key] = min(best[key], time.perf_counter() - t0)
    gemm_after = gemm_rate(device)
    gemm = (gemm_before["gflops"] + gemm_after["gflops"]) / 2
    runs: dict[str, Any] = {}
    for mode in modes:
        run: dict[str, Any] = {
            "compiled": bool(backbones[mode].compiled),
            "load_s": round(first[(mode, "load")], 2),
        }
        for name in ("crop", "frame"):
            rate = tile_clips[name] / best[(mode, name)]
            run[name] = {
                "first_call_s": round(first[(mode, name)], 2),
                "cold_start_s": round(first[(mode, name)] - best[(mode, name)], 2),
                "seconds_per_batch": best[(mode, name)],
                "tile_clips_per_s": rate,
                "gflop_per_tile_clip": flops[name] / 1e9,
                "gflop_per_clip": 3 * flops[name] / 1e9,
                "gflops": rate * flops[name] / 1e9,
                "fraction_of_gemm": rate * flops[name] / 1e9 / gemm,
            }
        run["frame_over_crop"] = run["frame"]["tile_clips_per_s"] / run["crop"]["tile_clips_per_s"]
        runs[mode] = run
    out: dict[str, Any] = {
        "device": str(next(iter(backbones.values())).device),
        "batch": batch,
        "gemm_gflops_before": gemm_before["gflops"],
        "gemm_gflops_after": gemm_after["gflops"],
        "gemm_kernel": gemm_before["kernel"],
        "i3d": runs,
        "frame_over_crop": {mode: run["frame_over_crop"] for mode, run in runs.items()},
        "target_frame_over_crop": 1.6,
        "best_fraction_of_gemm": max(run[n]["fraction_of_gemm"] for run in runs.values() for n in ("crop", "frame")),
    }
    if "compiled" in runs:
        out["compiled_over_eager"] = {
            n: runs["compiled"][n]["tile_clips_per_s"] / runs["eager"][n]["tile_clips_per_s"] for n in ("crop", "frame")
        }
    out["loadavg_1min_before"] = load_before
    out["loadavg_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return out


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


def _embed_rate(call: Callable[[], Any], tile_clips: int, repeats: int) -> dict[str, Any]:
    """tile-clips/s of one pass's backbone call alone on pre-decoded input (after one warm-up)."""
    call()
    t0 = time.perf_counter()
    for _ in range(repeats):
        call()
    seconds = time.perf_counter() - t0
    return {
        "tile_clips": repeats * tile_clips,
        "seconds": round(seconds, 3),
        "tile_clips_per_s": round(repeats * tile_clips / seconds, 3),
    }


def _extract_rate(
    backbone: Any, row: dict, config: ClipConfig, out: Path, batch: int, regions: RegionConfig
) -> dict[str, Any]:
    """One `extract_features` run with the table written: tile-clips/s and peak RSS over the run."""
    out.unlink(missing_ok=True)
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    result = extract_features(
        row, backbone, config, LocalTableStore(out.parent), out.name, batch_size=batch, regions=regions
    )
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


def _model_calls(backbone: Any, folder: Path, n_frames: int, config: ClipConfig, batch: int) -> dict[str, Any]:
    """Each pass's backbone call on one batch of real Ped2 input: (call, tile-clips per call)."""
    layout = region_layout(360, 240, config, RegionConfig("frame"))
    tiles = np.stack([item.frames for item in islice(iter_clips(folder, "frames", n_frames, config), batch)])
    x, y, w, h = layout.crop
    band = [((x, y, w, h), (x, y, w, h))]
    clips = np.stack([i.frames for i in islice(iter_clips(folder, "frames", n_frames, config, boxes=band), batch)])
    rel = relative_boxes(layout)
    return {
        "crop": (lambda: backbone.embed(tiles, resize=False), len(tiles)),
        "frame": (lambda: backbone.embed_regions(clips, rel), len(clips) * len(rel)),
    }


def end_to_end(
    device: str = "cpu",
    batch: int = 8,
    compile: bool | None = None,
    repeats: int = 3,
    video: str = "testing/frames/01",
    ped2_all: bool = False,
    backbone: Any = None,
) -> dict[str, Any]:
    """For each pass: end-to-end tile-clips/s from a Ped2 frame folder and from an mp4 of the same
    frames as a fraction of that pass's model-only rate (target >= 0.9); the frame-over-crop ratio
    end to end; peak memory for the mp4 1x and 3x as long (crop pass).

    Model-only is the pass's backbone call on real Ped2 input at the same batch, before and after
    the end-to-end runs (their mean is the reference). `ped2_all` adds `extract_all` over all
    Ped2 videos per pass.
    """
    folder = PED2 / video
    if not folder.is_dir():
        return {"skipped": f"Ped2 frames not found at {folder} (set VAD_SHARED)"}
    config = ClipConfig()
    if backbone is None:
        backbone = load_backbone("i3d", device=device, compile=compile, batch_size=batch)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {
        "backbone": backbone.name,
        "device": str(getattr(backbone, "device", "cpu")),
        "batch": batch,
        "compiled": bool(getattr(backbone, "compiled", False)),
        "target_fraction": 0.9,
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frame_row = probe_video(VideoSource(video, folder, "frames"))
        mp4_row = probe_video(VideoSource("ped2_mp4", _write_mp4(folder, tmp / "ped2.mp4"), "file"))
        long_row = probe_video(VideoSource("ped2_mp4_x3", _write_mp4(folder, tmp / "ped2_x3.mp4", repeat=3), "file"))
        calls = _model_calls(backbone, folder, int(frame_row["n_frames"]), config, batch)
        for name, (call, tile_clips) in calls.items():
            regions = RegionConfig(name)
            before = _embed_rate(call, tile_clips, repeats)
            runs = {
                "frame_folder": _extract_rate(backbone, frame_row, config, tmp / "f.parquet", batch, regions),
                "mp4": _extract_rate(backbone, mp4_row, config, tmp / "m.parquet", batch, regions),
            }
            if name == "crop":
                runs["mp4_3x"] = _extract_rate(backbone, long_row, config, tmp / "l.parquet", batch, regions)
            after = _embed_rate(call, tile_clips, repeats)
            model_rate = (before["tile_clips_per_s"] + after["tile_clips_per_s"]) / 2
            for run in runs.values():
                run["fraction_of_model"] = round(run["tile_clips_per_s"] / model_rate, 3)
            report[name] = {
                "model_only_before": before,
                "model_only_after": after,
                "model_only_tile_clips_per_s": round(model_rate, 3),
                **runs,
                "min_fraction_of_model": min(r["fraction_of_model"] for r in runs.values()),
            }
        report["frame_over_crop_end_to_end"] = {
            k: round(report["frame"][k]["tile_clips_per_s"] / report["crop"][k]["tile_clips_per_s"], 3)
            for k in ("frame_folder", "mp4")
        }
        traced_1x = _traced_peak(mp4_row, config, tmp / "t1.parquet", batch)
        traced_3x = _traced_peak(long_row, config, tmp / "t3.parquet", batch)
        report["memory_vs_length"] = {
            "peak_rss_mib_1x": report["crop"]["mp4"]["peak_rss_mib"],
            "peak_rss_mib_3x": report["crop"]["mp4_3x"]["peak_rss_mib"],
            "traced_1x": traced_1x,
            "traced_3x": traced_3x,
            "traced_ratio_3x_over_1x": round(traced_3x["traced_peak_mib"] / traced_1x["traced_peak_mib"], 3),
        }
        if ped2_all:
            manifest = build_manifest(PED2)
            report["ped2_all"] = {}
            for name in calls:
                t0 = time.perf_counter()
                store = LocalTableStore(tmp / f"all_{name}")
                results = extract_all(manifest, backbone, config, store, batch_size=batch, regions=RegionConfig(name))
                seconds = time.perf_counter() - t0
                rows = sum(r.n_rows for r in results)
                report["ped2_all"][name] = {
                    "videos": len(results),
                    "errors": [r.error for r in results if r.error],
                    "frames": int(manifest["n_frames"].sum()),
                    "tile_clips": rows,
                    "seconds": round(seconds, 2),
                    "tile_clips_per_s": round(rows / seconds, 3),
                    "fraction_of_model": round(rows / seconds / report[name]["model_only_tile_clips_per_s"], 3),
                }
            report["ped2_all"]["frame_over_crop"] = round(
                report["ped2_all"]["crop"]["seconds"] / report["ped2_all"]["frame"]["seconds"], 3
            )
    report["loadavg_1min_before"] = load_before
    report["loadavg_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return report


def pipeline(timeout_s: float = 7200) -> dict[str, Any]:
    """`vad demo --dataset ucsd_ped2` in fresh homes: before (crop pass, compile off) and after (frame
    pass, compile at its default)."""
    if not PED2.is_dir():
        return {"skipped": f"Ped2 not found at {PED2} (set VAD_SHARED)"}
    vad = Path(sys.executable).with_name("vad")
    settings = {
        "before": ({"clip_features": {"backbone_pass": "crop"}}, {"VAD_COMPILE": "0"}),
        "after": ({"clip_features": {"backbone_pass": "frame"}}, {}),
    }
    out: dict[str, Any] = {"uptime_before": uptime()}
    for name, (config, env_extra) in settings.items():
        with tempfile.TemporaryDirectory() as home:
            cfg, summary = Path(home) / "config.json", Path(home) / "summary.json"
            cfg.write_text(json.dumps(config))
            env = {k: v for k, v in os.environ.items() if k not in ("VAD_COMPILE", "MLFLOW_TRACKING_URI")}
            env.update(VAD_HOME=home, VAD_DATASET="ucsd_ped2", **env_extra)
            t0 = time.perf_counter()
            cmd = [str(vad), "demo", "--config", str(cfg), "--summary-json", str(summary)]
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=timeout_s)
            data = json.loads(summary.read_text())
            out[name] = {
                "config": config,
                "env": env_extra,
                "wall_s": round(time.perf_counter() - t0, 1),
                "stage_seconds": {k: round(v, 1) for k, v in data["stage_seconds"].items()},
                "frame_auc": {k: (v.get("metrics") or {}).get("roc_auc") for k, v in data["report"]["scorers"].items()},
            }
    out["after_over_before_wall"] = round(out["after"]["wall_s"] / out["before"]["wall_s"], 3)
    out["uptime_after"] = uptime()
    return out


def uptime() -> str:
    """`uptime`'s line (load averages) for the JSON; "" where it cannot run. benchmarks/live.py uses it too."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


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
    parser.add_argument("--pipeline", action="store_true", help="vad demo on Ped2 before/after (long)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"environment": environment(), "uptime_before": uptime()}
    results["model_only"] = model_only(args.device, args.batch, args.repeats, compile=not args.no_compile)
    if not args.no_e2e:
        results["end_to_end"] = end_to_end(
            # the extraction as users get it: compile at its default (on for CUDA only) unless --no-compile
            args.device,
            args.batch,
            compile=False if args.no_compile else None,
            repeats=args.repeats,
            ped2_all=args.ped2_all,
        )
    if args.pipeline:
        results["pipeline"] = pipeline()
    results["uptime_after"] = uptime()
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
