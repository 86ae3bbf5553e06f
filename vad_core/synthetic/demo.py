"""Demo footage: deterministic surveillance-like scenes written as real mp4 files.

A fixed camera looks at a paved walkway crossing a lawn (Ped2-like). Pedestrians walk along the
walkway in both directions at walking speed (~3 px/frame at 10 fps, people ~40 px tall, with
perspective: nearer is larger). Test videos each hold one anomalous event: a cyclist or a
runner moving fast, a cart much larger than a person, a person walking across the lawn, or a
person loitering (standing still on the walkway). Training videos are normal.

Ground truth (`ground_truth.csv`: video_id, start_frame, end_frame, event; 0-based half-open)
marks the frames where the anomalous object has at least 25% of its bounding box inside the
picture (loitering: the frames in which the person stands still). Pixel-level ground truth in
ShanghaiTech's layout, `test_pixel_mask/NN.npy` `(T, H, W)` bool per test video, marks the
anomalous object's bounding box in those frames.

Drawing lives in `vad_core.synthetic.drawing`; each frame adds seeded sensor noise. Everything is seeded by
(seed, video), so the same arguments give the same frames and, with the same x264, the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from vad_core.errors import VADInputError
from vad_core.footage.clips import prefetch
from vad_core.footage.ground_truth import mask_to_intervals
from vad_core.io.hashing import sha256_file
from vad_core.io.tables import atomic_path, atomic_write_bytes
from vad_core.synthetic.drawing import (
    WALK_BOTTOM,
    WALK_TOP,
    Agent,
    Canvas,
    agent_boxes,
    draw_agent,
    render_background,
    rgb,
)

GENERATOR_VERSION = 2  # 2: test_pixel_mask/ added (the videos' bytes did not change)
ANOMALY_KINDS = ("cyclist", "cart", "lawn", "loiter", "runner")
_PARAMS_FILE = "demo_footage.json"


@dataclass(frozen=True)
class DemoConfig:
    """Size and content of the demo footage (defaults: ~200 tile-clips, about a minute of I3D on 2 CPU cores)."""

    seed: int = 0
    n_train: int = 6
    n_test: int = 4
    n_frames: int = 160
    width: int = 320
    height: int = 240
    fps: int = 10
    person_height: float = 42.0  # pixels at the walkway's centre line
    walkers_per_frame: float = 0.035  # arrival rate of pedestrians
    noise_std: float = 2.0  # sensor noise, grey levels
    crf: int = 18

    def __post_init__(self) -> None:
        if self.n_train < 0 or self.n_test < 0 or self.n_train + self.n_test == 0:
            raise VADInputError(f"DemoConfig: need at least one video (n_train={self.n_train}, n_test={self.n_test})")
        if self.n_frames < 32:
            raise VADInputError(f"DemoConfig.n_frames must be >= 32, got {self.n_frames}")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise VADInputError(f"DemoConfig: frame size must be even and >= 64, got {self.width}x{self.height}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DemoFootage:
    """What `generate_demo_footage` made: mp4 paths (train first), the ground-truth CSV."""

    root: Path
    videos: tuple[Path, ...]
    ground_truth_csv: Path
    config: DemoConfig


# --------------------------------------------------------------------------- scene planning


def _px_per_frame(cfg: DemoConfig, metres_per_second: float) -> float:
    """Speed in pixels per frame at the walkway's centre line (a person is 1.7 m tall)."""
    return metres_per_second * cfg.person_height / 1.7 / cfg.fps


def _person_colors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shirt = rng.uniform(30, 230, 3).astype(np.float32)
    legs = rng.choice([rgb(40, 45, 70), rgb(60, 60, 60), rgb(120, 100, 80), rgb(30, 30, 35)])
    skin = rng.choice([rgb(224, 180, 150), rgb(170, 120, 90), rgb(110, 75, 55)])
    hair = rng.choice([rgb(30, 25, 20), rgb(90, 60, 30), rgb(200, 180, 120)])
    return {
        "shirt": shirt,
        "legs": legs,
        "skin": skin,
        "hair": hair,
        "frame": rng.uniform(60, 220, 3).astype(np.float32),
        "body": rng.choice([rgb(235, 235, 225), rgb(220, 200, 60), rgb(70, 120, 190)]),
        "roof": rgb(230, 230, 230),
    }


def _straight(t0: float, x0: float, y0: float, vx: float, vy: float, n: int, h_px: float) -> tuple[np.ndarray, ...]:
    t = np.arange(n, dtype=np.float64) - t0
    x, y = x0 + vx * t, y0 + vy * t
    stride = 0.7 * h_px  # one gait cycle per ~0.7 body heights travelled
    phase = 2 * np.pi * np.hypot(vx, vy) * t / stride
    return x, y, phase


def _walker(
    rng: np.random.Generator, cfg: DemoConfig, t_spawn: float, kind: str = "walker", speed: float | None = None
) -> Agent:
    h, w = cfg.height, cfg.width
    d = float(rng.choice([-1.0, 1.0]))
    y0 = rng.uniform(WALK_TOP * h + 12, WALK_BOTTOM * h - 4)
    v = speed if speed is not None else _px_per_frame(cfg, rng.normal(1.25, 0.15))
    x0 = -30.0 if d > 0 else w + 30.0
    x, y, ph = _straight(t_spawn, x0, y0, d * v, 0.0, cfg.n_frames, cfg.person_height)
    ph = ph + rng.uniform(0, 2 * np.pi)
    return Agent(kind, x, y, ph, d, _person_colors(rng))


def visible_fraction(a: Agent, cfg: DemoConfig, pad: float = 0.0) -> np.ndarray:
    """(T,) share of the agent's bounding box inside the picture (0 where absent)."""
    x0, y0, x1, y1 = agent_boxes(a, cfg.person_height, cfg.height, pad).T
    ix = np.clip(np.minimum(x1, cfg.width) - np.maximum(x0, 0), 0, None)
    iy = np.clip(np.minimum(y1, cfg.height) - np.maximum(y0, 0), 0, None)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(ix * iy / ((x1 - x0) * (y1 - y0)))


def _visible(a: Agent, cfg: DemoConfig) -> np.ndarray:
    return visible_fraction(a, cfg) >= 0.25


def _anomaly(rng: np.random.Generator, cfg: DemoConfig, kind: str) -> Agent:
    n, w, h = cfg.n_frames, cfg.width, cfg.height
    walk_mid = (WALK_TOP + WALK_BOTTOM) / 2 * h
    if kind in ("cyclist", "runner", "cart"):
        speed = _px_per_frame(cfg, {"cyclist": 4.2, "runner": 3.0, "cart": 1.9}[kind])
        margin = 90.0
        crossing = (w + 2 * margin) / speed
        t0 = rng.uniform(0.15 * n, max(0.15 * n, n - crossing * 0.8))
        a = _walker(rng, cfg, t0, kind, speed)
        x0 = -margin if a.direction > 0 else w + margin
        a.x, a.y, ph = _straight(t0, x0, walk_mid + rng.uniform(-6, 10), a.direction * speed, 0.0, n, cfg.person_height)
        a.phase = ph * (0.5 if kind == "cyclist" else 1.0)
        a.anomalous = _visible(a, cfg)
        return a
    if kind == "lawn":  # from the far edge of the picture, diagonally across lawn and walkway
        v = _px_per_frame(cfg, 1.1)
        t0 = rng.uniform(0.1 * n, 0.3 * n)
        d = float(rng.choice([-1.0, 1.0]))
        x0 = rng.uniform(0.3, 0.7) * w
        x, y, ph = _straight(t0, x0, -2.0, d * 0.35 * v, v, n, cfg.person_height)
        a = Agent("lawn", x, y, ph, d, _person_colors(rng))
        a.anomalous = _visible(a, cfg)
        return a
    if kind == "loiter":  # walks in, stands still for a while, walks on
        a = _walker(rng, cfg, t_spawn=0.0)
        v = abs(float(a.x[1] - a.x[0]))
        stop_x = rng.uniform(0.35, 0.65) * w
        arrive = abs(stop_x - a.x[0]) / v
        t_stop = rng.uniform(0.1 * n, 0.3 * n)
        wait = rng.uniform(0.35, 0.5) * n
        t = np.arange(n, dtype=np.float64)
        # Distance walked: linear until the stop, flat while standing, linear again after.
        moving = np.clip(t - (t_stop - arrive), 0, None) - np.clip(t - t_stop, 0, wait)
        dist = moving * v
        a.x = float(a.x[0]) + a.direction * dist
        a.phase = 2 * np.pi * dist / (0.7 * cfg.person_height)
        standing = (t >= t_stop) & (t < t_stop + wait)
        a.x = a.x + standing * 0.6 * np.sin(t / 6.0)  # shifting weight in place
        a.anomalous = standing & _visible(a, cfg)
        return a
    raise VADInputError(f"unknown anomaly kind {kind!r} (known: {ANOMALY_KINDS})")


def plan_video(cfg: DemoConfig, index: int, anomaly: str | None) -> list[Agent]:
    """The agents of one video: Poisson pedestrian arrivals (some already in view at frame 0),
    plus the anomalous agent, if any."""
    rng = np.random.default_rng([cfg.seed, index, 101])
    lead_in = cfg.width / 2.5  # spawn times before frame 0 so the scene starts populated
    n_walkers = rng.poisson(cfg.walkers_per_frame * (cfg.n_frames + lead_in))
    spawns = np.sort(rng.uniform(-lead_in, cfg.n_frames, n_walkers))
    agents = [_walker(rng, cfg, float(t)) for t in spawns]
    if anomaly is not None:
        agents.append(_anomaly(np.random.default_rng([cfg.seed, index, 202]), cfg, anomaly))
    return agents


def render_video(cfg: DemoConfig, index: int, agents: list[Agent], background: np.ndarray) -> Iterator[np.ndarray]:
    """Frames `(H, W, 3)` uint8 of one video; the noise depends on (seed, index, frame) only."""
    # Uniform integer noise in [-k, k] has std sqrt(k(k+1)/3); k=3 gives 2 grey levels and is
    # four times cheaper to draw than Gaussian noise.
    k = max(0, round((math.sqrt(1 + 12 * cfg.noise_std**2) - 1) / 2))
    base = background + 0.5  # so the final cast to uint8 rounds
    in_view = [visible_fraction(a, cfg, pad=2.0) > 0 for a in agents]
    for t in range(cfg.n_frames):
        img = base.copy()
        canvas = Canvas(img)
        present = [a for a, on in zip(agents, in_view, strict=True) if on[t]]
        for a in sorted(present, key=lambda a: a.y[t]):  # far (higher up) first: near ones occlude
            draw_agent(canvas, a, t, cfg.person_height)
        if k:
            img += np.random.default_rng([cfg.seed, index, t, 303]).integers(-k, k + 1, img.shape, dtype=np.int8)
        yield np.clip(img, 0, 255, out=img).astype(np.uint8)


def anomaly_mask(cfg: DemoConfig, agents: list[Agent]) -> np.ndarray:
    """(T,) bool: frames made anomalous by any agent."""
    mask = np.zeros(cfg.n_frames, dtype=bool)
    for a in agents:
        if a.anomalous is not None:
            mask |= a.anomalous
    return mask


def anomaly_pixel_mask(cfg: DemoConfig, agents: list[Agent]) -> np.ndarray:
    """(T, H, W) bool: the bounding box of every anomalous agent in the frames it makes anomalous."""
    mask = np.zeros((cfg.n_frames, cfg.height, cfg.width), dtype=bool)
    for a in agents:
        if a.anomalous is None:
            continue
        boxes = agent_boxes(a, cfg.person_height, cfg.height)
        for t in np.flatnonzero(a.anomalous):
            x0, y0, x1, y1 = boxes[t]
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), cfg.width), min(int(np.ceil(y1)), cfg.height)
            mask[t, r0:r1, c0:c1] = True
    return mask


# --------------------------------------------------------------------------- writing


def write_mp4(frames: Iterator[np.ndarray], path: str | os.PathLike, fps: int, crf: int = 18) -> None:
    """Encode RGB frames to H.264 (yuv420p) mp4 at `path`, atomically (temp file + rename)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = cast(av.VideoStream, container.add_stream(codec, rate=fps))
        stream.pix_fmt = "yuv420p"
        # The demo promises the same bytes for the same seed. Under CPU load x264's output
        # varied between runs until threads, the lookahead and macroblock-tree rate control
        # were all turned off (measured: 18/18 identical runs with 3 concurrent encoders).
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {
                "crf": str(crf),
                "preset": "veryfast",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0:rc-lookahead=0",
            }
        else:
            stream.bit_rate = 2_000_000
        for i, frame in enumerate(frames):
            if i == 0:
                stream.height, stream.width = frame.shape[:2]
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = i  # explicit timestamps: left unset, x264's output varied between runs
            video_frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def _video_plan(cfg: DemoConfig) -> list[tuple[str, int, str | None]]:
    """(video_id, index, anomaly kind) for every video: train/01.., test/01.."""
    plan: list[tuple[str, int, str | None]] = [(f"train/{i + 1:02d}", i, None) for i in range(cfg.n_train)]
    for j in range(cfg.n_test):
        plan.append((f"test/{j + 1:02d}", cfg.n_train + j, ANOMALY_KINDS[(cfg.seed + j) % len(ANOMALY_KINDS)]))
    return plan


def _up_to_date(root: Path, params: dict[str, object]) -> bool:
    try:
        saved = json.loads((root / _PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if saved.get("params") != params:
        return False
    return all((root / rel).is_file() and sha256_file(root / rel) == digest for rel, digest in saved["files"].items())


def generate_demo_footage(
    root: str | os.PathLike, seed: int = 0, n_train: int = 6, n_test: int = 4, n_frames: int = 160, **options: object
) -> DemoFootage:
    """Write demo videos `root/train/NN.mp4`, `root/test/NN.mp4`, `root/ground_truth.csv` and
    `root/test_pixel_mask/NN.npy`.

    Idempotent: `root/demo_footage.json` records the parameters and file hashes, and an
    unchanged request with intact files returns without rendering. `options` are further
    `DemoConfig` fields (width, height, fps, ...).
    """
    try:
        cfg = DemoConfig(seed=seed, n_train=n_train, n_test=n_test, n_frames=n_frames, **options)  # type: ignore[arg-type]  # checked by DemoConfig
    except TypeError as exc:
        raise VADInputError(f"generate_demo_footage: {exc}") from None
    root = Path(root)
    plan = _video_plan(cfg)
    videos = tuple(root / f"{vid}.mp4" for vid, _, _ in plan)
    gt_csv = root / "ground_truth.csv"
    params = {"generator_version": GENERATOR_VERSION, **cfg.to_dict()}
    result = DemoFootage(root, videos, gt_csv, cfg)
    if _up_to_date(root, params):
        return result
    background = render_background(cfg.width, cfg.height, cfg.seed)
    lines = ["video_id,start_frame,end_frame,event"]
    masks = []
    for (vid, index, kind), path in zip(plan, videos, strict=True):
        agents = plan_video(cfg, index, kind)
        # Render in a background thread while x264 encodes (both release the GIL for most of the work).
        write_mp4(prefetch(render_video(cfg, index, agents, background), 8), path, cfg.fps, cfg.crf)
        for s, e in mask_to_intervals(anomaly_mask(cfg, agents)):
            lines.append(f"{vid},{s},{e},{kind}")
        if kind is not None:
            masks.append(root / "test_pixel_mask" / f"{vid.rsplit('/', 1)[-1]}.npy")
            masks[-1].parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(masks[-1]) as tmp, open(tmp, "wb") as fh:
                np.save(fh, anomaly_pixel_mask(cfg, agents))
    atomic_write_bytes(gt_csv, ("\n".join(lines) + "\n").encode())
    files = {p.relative_to(root).as_posix(): sha256_file(p) for p in (*videos, gt_csv, *masks)}
    atomic_write_bytes(root / _PARAMS_FILE, json.dumps({"params": params, "files": files}, indent=1).encode())
    return result


__all__ = [
    "ANOMALY_KINDS",
    "GENERATOR_VERSION",
    "DemoConfig",
    "DemoFootage",
    "anomaly_mask",
    "anomaly_pixel_mask",
    "generate_demo_footage",
    "plan_video",
    "render_video",
    "visible_fraction",
    "write_mp4",
]
