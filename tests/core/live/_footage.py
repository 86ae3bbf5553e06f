"""Tiny footage and a tiny live model on pixelstats features, for the `score_video` / overlay / `vad score` tests.

Frames are 96x48 (the small clip config cuts five 32-px tiles at y = 8, clips of 4 frames):
smooth noise with a small square walking right; the "event" of a test video is a large bright
block that jumps around for frames [EVENT_START, EVENT_END). The model is fitted on the
pixelstats features of TRAIN_VIDEOS normal videos made by `extract_all` (the pipeline's path), and
its feature spec is those tables' metadata, as the denoiser asset records it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch

from tests.core._synthetic import TINY
from vad_core.diffusion.recipes import DetectorRecipe, fit_detector
from vad_core.features import extract_all
from vad_core.features.backbones.pixelstats import PixelStatsBackbone
from vad_core.footage import VideoSource, probe_video
from vad_core.footage.clips import ClipConfig
from vad_core.io.feature_tables import COLUMNS, feature_key, read_feature_matrix
from vad_core.io.store import MemoryTableStore
from vad_core.live import DecisionRule, LiveDetector, feature_spec_from_metadata
from vad_core.scoring.rows import clip_scores, row_keys_for

CLIP = ClipConfig(clip_len=4, stride=4, short_side=48, tile_size=32)
N_TILES = 5
N_FRAMES = 42  # 10 whole clips and a last one moved back to end at frame 42
EVENT_START, EVENT_END = 20, 32
TRAIN_VIDEOS = 4
RECIPE = DetectorRecipe(name="test", screen_folds=2, refit_seeds=1, n_draws=2, max_share=0.3)
KEY_COLUMNS = [c for c in COLUMNS if c != "feature"]


def make_frames(n: int = N_FRAMES, seed: int = 0, event: bool = False) -> np.ndarray:
    """`(n, 48, 96, 3)` uint8 frames (see the module doc)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 160, size=(6, 12, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    frames = np.repeat(base[None], n, axis=0)
    for t in range(n):
        x = (2 * t + 7 * seed) % 80
        frames[t, 12:22, x : x + 10] = 200
        if event and EVENT_START <= t < EVENT_END:
            bx = 60 + (11 * t) % 20
            frames[t, 6:46, bx : bx + 30] = 255 if t % 2 else 0
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "veryfast"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def write_folder(folder: Path, frames: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return folder


def pipeline_rows(
    video: VideoSource, backbone: PixelStatsBackbone, config: ClipConfig = CLIP
) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """The pipeline's feature rows of one video: `extract_all` into a store, read back as the assets do."""
    store = MemoryTableStore()
    manifest = pd.DataFrame([probe_video(video)])
    (result,) = extract_all(manifest, backbone, config, store, prefix="features")
    assert result.ok, result.error
    key = feature_key("features", video.video_id)
    rows = store.read_table(key, columns=KEY_COLUMNS).to_pandas()
    return rows, read_feature_matrix(store, key), store.read_metadata(key)


def fit_live(rows: pd.DataFrame, x: np.ndarray, meta: dict[str, str], n_tiles: int) -> LiveDetector:
    """A tiny detector on feature rows, its rule from the out-of-fold training clip scores (k = 1), the
    tables' metadata as its feature spec: what the denoiser asset builds, at test size."""
    tiles = rows["tile"].to_numpy(np.int64)
    detector = fit_detector(
        x, rows["video_id"].to_numpy(), replace(TINY, n_tiles=n_tiles), RECIPE, tiles=tiles
    ).detector
    fitted, _ = detector.score_fitted(x, rows["video_id"].to_numpy(), tiles, row_keys_for(rows))
    rule = DecisionRule.from_clip_scores(clip_scores(rows.assign(score=fitted))["score"], k=1.0)
    info = {"model_name": "vad-denoiser-test", "model_version": "3"}
    return LiveDetector(detector, rule, feature_spec_from_metadata(meta), info)


@cache
def _trained(root: str) -> LiveDetector:
    torch.set_num_threads(1)
    backbone = PixelStatsBackbone()
    parts, mats, meta = [], [], {}
    for i in range(TRAIN_VIDEOS):
        path = write_mp4(Path(root) / f"train_{i}.mp4", make_frames(seed=i + 1))
        rows, x, meta = pipeline_rows(VideoSource(f"train_{i}", path, "file"), backbone)
        parts.append(rows)
        mats.append(x)
    return fit_live(pd.concat(parts, ignore_index=True), np.concatenate(mats), meta, N_TILES)


def live_model(tmp_root: Path) -> LiveDetector:
    """The tiny model (fitted once per session under `tmp_root`); callers may change its rule."""
    live = _trained(str(tmp_root))
    return LiveDetector(live.detector, live.rule, dict(live.feature_spec), dict(live.info))


def median_rule(clips: pd.DataFrame) -> DecisionRule:
    """A rule whose threshold is the median clip score: about half the clips are flagged."""
    return DecisionRule(k=1.0, mean=float(np.median(clips["score"])) - 1.0, std=1.0, n_clips=len(clips))
