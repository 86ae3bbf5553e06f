"""Helpers of the stream tests: a small synthetic scene as an mp4, a pixelstats live model, the file path's answer."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tests.core._synthetic import TINY
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector
from vad_core.features.backbones import load_backbone
from vad_core.features.extract import extract_features
from vad_core.features.regions import RegionConfig
from vad_core.footage.clips import ClipConfig
from vad_core.io.feature_tables import COLUMNS, read_feature_matrix
from vad_core.io.store import MemoryTableStore
from vad_core.live import DecisionRule, LiveDetector
from vad_core.synthetic.demo import write_mp4

WIDTH, HEIGHT, FPS = 360, 240, 10
BACKBONE = "pixelstats"


def scene(n_frames: int, seed: int = 0) -> np.ndarray:
    """`(n, 240, 360, 3)` uint8: a blocky background, a square walking right, and a bright block that
    appears in frames [40, 70) and [100, 115): the clips over it move away from the others."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(HEIGHT // 8, WIDTH // 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    frames = np.repeat(base[None], n_frames, axis=0)
    for t in range(n_frames):
        x = (5 * t) % (WIDTH - 24)
        frames[t, 100:124, x : x + 24] = 230
        if 40 <= t < 70 or 100 <= t < 115:
            frames[t, 20:120, 250:350] = (255, 40, 40)
    return frames


def video(folder: Path, n_frames: int = 125, seed: int = 0) -> Path:
    path = folder / "cam.mp4"
    if not path.exists():
        write_mp4(iter(scene(n_frames, seed)), path, fps=FPS)
    return path


def file_features(path: Path, video_id: str, regions: RegionConfig = RegionConfig()) -> tuple[pd.DataFrame, np.ndarray]:
    """The pipeline's rows and features of the file (`extract_features` into a memory store)."""
    store = MemoryTableStore()
    extract_features(path, load_backbone(BACKBONE), ClipConfig(), store, "f.parquet", regions=regions)
    keys = store.read_table("f.parquet", columns=[c for c in COLUMNS if c != "feature"]).to_pandas()
    return keys.assign(video_id=video_id), read_feature_matrix(store, "f.parquet")


@cache
def _detector(n_tiles: int):  # noqa: ANN202  (a Detector)
    torch.set_num_threads(1)
    backbone = load_backbone(BACKBONE)
    rng = np.random.default_rng(1)
    n_clips = 120
    x = rng.normal(0.3, 0.1, size=(n_clips * n_tiles, backbone.dim)).astype(np.float32)
    videos = np.repeat([f"train_{i % 4}" for i in range(n_clips)], n_tiles)
    tiles = np.tile(np.arange(n_tiles), n_clips)
    recipe = DetectorRecipe(name="test", screen_folds=2, refit_seeds=1, n_draws=2, max_share=0.3)
    return fit_detector(x, videos, replace(TINY, n_tiles=n_tiles), recipe, tiles=tiles).detector


def live_model(path: Path, video_id: str, regions: RegionConfig = RegionConfig(), k: float = 0.3) -> LiveDetector:
    """A pixelstats live model whose rule sits at mean + k std of the file's own clip scores, so that
    the file has several alerts (the rule's statistics are whatever a model stores; here they are chosen)."""
    backbone = load_backbone(BACKBONE)
    rows, x = file_features(path, video_id, regions)
    n_tiles = int(rows["tile"].max()) + 1
    spec = {
        "backbone": backbone.name,
        "weights_sha256": backbone.weights_sha256,
        "dim": str(backbone.dim),
        "clip_config": json.dumps(ClipConfig().to_dict(), sort_keys=True),
        "region_config": regions.key(),
        "n_tiles": str(n_tiles),
    }
    probe = LiveDetector(_detector(n_tiles), DecisionRule(k=0.0, mean=0.0, std=1.0, n_clips=1), spec)
    clip_scores = probe.score(rows, x).clips["score"].to_numpy()
    rule = DecisionRule.from_clip_scores(clip_scores, k=k)
    return LiveDetector(probe.detector, rule, spec, {"model_version": "7"})


def file_answer(path: Path, live: LiveDetector, video_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The file path's clips and alerts (`vad_core.live.video.score_video`, the `vad score` path)."""
    from vad_core.live.video import score_video

    result = score_video(path, live, video_id=video_id)
    return result.clips, result.alerts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
