"""The README's overlay picture: `vad score` on a Ped2 test video, one frame of its overlay MP4 saved as a PNG.

    python scripts/overlay_figure.py                       # -> docs/img/overlay_ped2.png
    python scripts/overlay_figure.py --video testing/frames/04 --frame 120 --regions tiles --model WORK/model

Fits a small live model, unsupervised, on the pixelstats features of all 22 Ped2 videos (training
and testing together, no labels; weight-free so the script needs no download), with a region grid
of 64-px windows every 32 px so the heat map is finer than the three tiles, then runs the `vad
score` command on one test video exactly as an operator would, and keeps one frame of the overlay.
The picture shows what the overlay draws (heat map, arg-max box, score curve, threshold), not the
I3D model's accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch
from PIL import Image

from vad_core.diffusion.config import TrainConfig
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector
from vad_core.features import extract_all
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.features.regions import RegionConfig
from vad_core.footage import build_manifest
from vad_core.footage.clips import ClipConfig
from vad_core.io.feature_tables import COLUMNS, read_feature_matrix
from vad_core.io.store import LocalTableStore
from vad_core.live import DecisionRule, LiveDetector, feature_spec_from_metadata, save_live_detector
from vad_core.scoring.rows import clip_scores, row_keys_for
from vad_pipeline.cli import main as vad

REPO = Path(__file__).resolve().parents[1]
TRAIN = TrainConfig(epochs=20, batch_size=2048, min_steps_per_epoch=20, lr=1e-3, hidden=(256, 128, 64), device="cpu")
RECIPE = DetectorRecipe(name="figure", screen_folds=0, refit_seeds=1, n_draws=16)


def fit_model(ped2: Path, work: Path, regions: RegionConfig) -> Path:
    """Extract every Ped2 video's pixelstats features into `work/features`, fit, save the live model."""
    store = LocalTableStore(work)
    manifest = build_manifest(ped2)
    results = extract_all(manifest, PixelStatsBackbone(), ClipConfig(), store, prefix="features", regions=regions)
    bad = [r.error for r in results if not r.ok]
    if bad:
        raise SystemExit(f"feature extraction failed: {bad[:3]}")
    keys = store.list("features", ".parquet")
    rows = pd.concat([store.read_table(k, columns=list(COLUMNS[:-1])).to_pandas() for k in keys], ignore_index=True)
    x = np.concatenate([read_feature_matrix(store, k) for k in keys])
    n_tiles = int(rows["tile"].max()) + 1
    tiles = rows["tile"].to_numpy(np.int64)
    fit = fit_detector(
        x, rows["video_id"].to_numpy(), TrainConfig(**{**TRAIN.__dict__, "n_tiles": n_tiles}), RECIPE, tiles
    )
    fitted, _ = fit.detector.score_fitted(x, rows["video_id"].to_numpy(), tiles, row_keys_for(rows))
    rule = DecisionRule.from_clip_scores(clip_scores(rows.assign(score=fitted))["score"], k=1.0)
    info = {"model_name": "vad-denoiser-ped2-pixelstats", "model_version": "figure"}
    live = LiveDetector(fit.detector, rule, feature_spec_from_metadata(store.read_metadata(keys[0])), info)
    save_live_detector(live, work / "model")
    print(f"model: {len(rows)} rows of {len(keys)} videos, {n_tiles} regions per clip, threshold {rule.threshold:.4f}")
    return work / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ucsd_ped2")
    parser.add_argument("--video", default="testing/frames/02", help="video id under --ped2")
    parser.add_argument("--frame", type=int, default=168, help="overlay frame saved")
    parser.add_argument("--regions", choices=("grid", "tiles"), default="grid")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--model", type=Path, help="a live model folder this script wrote before (skips fitting)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "overlay_ped2.png")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    regions = (
        RegionConfig(backbone_pass="frame", regions="grid", grid_step=32, grid_window=64)
        if args.regions == "grid"
        else RegionConfig()
    )
    with tempfile.TemporaryDirectory(prefix="vad-figure-") as tmp:
        work = args.work or Path(tmp)
        model = args.model or fit_model(args.ped2, work, regions)
        out = work / "scored"
        code = vad(
            ["score", str(args.ped2 / args.video), "--model", str(model), "--out", str(out), "--video-id", args.video]
        )
        if code:
            raise SystemExit(code)
        with av.open(str(out / "overlay.mp4")) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == args.frame:
                    picture = frame.to_ndarray(format="rgb24")
                    break
            else:
                raise SystemExit(f"overlay has fewer than {args.frame + 1} frames")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(args.out, optimize=True)
    print(f"saved {args.out} ({args.out.stat().st_size // 1024} KB), frame {args.frame} of {args.video}")


if __name__ == "__main__":
    main()
