"""Drawing for the demo footage: a static Ped2-like scene and the figures that cross it.

Shapes are signed distance functions blended with one pixel of antialiasing, so sub-pixel
motion changes pixels smoothly. Each primitive touches only its own small window of the frame.
Sizes are in person heights `h` (pixels), scaled by `perspective` with the feet row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

WALK_TOP, WALK_BOTTOM = 0.38, 0.74  # walkway band, as fractions of the frame height


@dataclass
class Agent:
    """One moving figure: feet position and gait phase per frame, `(T,)` arrays each."""

    kind: str  # walker | runner | cyclist | cart | lawn | loiter
    x: np.ndarray
    y: np.ndarray
    phase: np.ndarray
    direction: float  # +1 facing right, -1 facing left
    colors: dict[str, np.ndarray] = field(default_factory=dict)
    anomalous: np.ndarray | None = None  # (T,) bool: frames this agent makes anomalous


# --------------------------------------------------------------------------- drawing


class Canvas:
    """A float32 `(H, W, 3)` frame with antialiased SDF primitives drawn in small windows."""

    def __init__(self, image: np.ndarray) -> None:
        self.img = image
        self.h, self.w = image.shape[:2]

    def _window(self, x0: float, y0: float, x1: float, y1: float):
        c0, c1 = max(0, int(math.floor(x0)) - 1), min(self.w, int(math.ceil(x1)) + 2)
        r0, r1 = max(0, int(math.floor(y0)) - 1), min(self.h, int(math.ceil(y1)) + 2)
        if c0 >= c1 or r0 >= r1:
            return None
        yy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5  # broadcast, not a full grid
        xx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
        return (slice(r0, r1), slice(c0, c1)), xx, yy

    def _blend(self, win, dist: np.ndarray, color: np.ndarray, opacity: float = 1.0) -> None:
        alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None] * opacity
        region = self.img[win]
        region += alpha * (color - region)

    def circle(self, cx: float, cy: float, r: float, color: np.ndarray, opacity: float = 1.0) -> None:
        w = self._window(cx - r, cy - r, cx + r, cy + r)
        if w:
            win, xx, yy = w
            self._blend(win, np.hypot(xx - cx, yy - cy) - r, color, opacity)

    def ring(self, cx: float, cy: float, r: float, width: float, color: np.ndarray) -> None:
        w = self._window(cx - r - width, cy - r - width, cx + r + width, cy + r + width)
        if w:
            win, xx, yy = w
            self._blend(win, np.abs(np.hypot(xx - cx, yy - cy) - r) - width / 2, color)

    def ellipse(self, cx: float, cy: float, a: float, b: float, color: np.ndarray, opacity: float = 1.0) -> None:
        w = self._window(cx - a, cy - b, cx + a, cy + b)
        if w:
            win, xx, yy = w
            k = np.hypot((xx - cx) / a, (yy - cy) / b)
            self._blend(win, (k - 1.0) * min(a, b), color, opacity)

    def capsule(self, x0: float, y0: float, x1: float, y1: float, r: float, color: np.ndarray) -> None:
        w = self._window(min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
        if w:
            win, xx, yy = w
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
            self._blend(win, np.hypot(xx - x0 - t * dx, yy - y0 - t * dy) - r, color)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: np.ndarray) -> None:
        w = self._window(x0, y0, x1, y1)
        if w:
            win, xx, yy = w
            cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            qx, qy = np.abs(xx - cx) - hx, np.abs(yy - cy) - hy
            outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
            self._blend(win, outside + np.minimum(np.maximum(qx, qy), 0), color)


_BLACK = np.zeros(3, np.float32)


def rgb(*c: float) -> np.ndarray:
    return np.array(c, dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    field_ = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma, mode="wrap")
    return field_ / (field_.std() + 1e-6)


def render_background(width: int, height: int, seed: int) -> np.ndarray:
    """The static scene `(H, W, 3)` float32: lawn, paved walkway with joints, a bench, a tree."""
    h, w = height, width
    rng = np.random.default_rng([seed, 7919])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lawn = rgb(78, 122, 58) + 12 * _smooth_noise(rng, h, w, 6)[..., None] * rgb(0.6, 1.0, 0.5)
    lawn += 9 * rng.standard_normal((h, w, 1)).astype(np.float32) * rgb(0.7, 1.0, 0.6)
    top, bottom = WALK_TOP * h, WALK_BOTTOM * h
    # Perspective: paving joints converge towards the top of the picture.
    scale = perspective(yy, h)
    joint_x = np.abs(((xx - w / 2) / (22 * scale)) % 1.0 - 0.5) * 22 * scale
    joint_y = np.abs(((yy - top) / (14 * scale)) % 1.0 - 0.5) * 14 * scale
    pave = rgb(150, 146, 138) + 6 * _smooth_noise(rng, h, w, 2)[..., None]
    pave -= 28 * np.clip(1.2 - np.minimum(joint_x, joint_y), 0, 1)[..., None]
    on_walk = np.clip(np.minimum(yy - top, bottom - yy) + 0.5, 0, 1)[..., None]
    img = lawn * (1 - on_walk) + pave * on_walk
    canvas = Canvas(img)
    canvas.rect(0, top - 2, w, top + 1, rgb(185, 182, 175))  # kerbs
    canvas.rect(0, bottom - 1, w, bottom + 2, rgb(185, 182, 175))
    bx, by = 0.62 * w, 0.86 * h  # a bench on the near lawn
    canvas.rect(bx, by - 10, bx + 46, by - 4, rgb(110, 72, 40))
    canvas.rect(bx + 3, by - 4, bx + 6, by + 2, rgb(60, 50, 40))
    canvas.rect(bx + 40, by - 4, bx + 43, by + 2, rgb(60, 50, 40))
    tx, ty = 0.18 * w, 0.2 * h  # a tree on the far lawn, with its shadow
    canvas.ellipse(tx + 8, ty + 14, 24, 7, _BLACK, opacity=0.3)
    canvas.rect(tx - 2, ty - 4, tx + 3, ty + 14, rgb(90, 62, 38))
    canvas.circle(tx, ty - 14, 20, rgb(46, 92, 40))
    canvas.circle(tx + 7, ty - 20, 12, rgb(60, 108, 48))
    return np.clip(img, 0, 255)


def perspective(y: np.ndarray | float, h: int) -> np.ndarray | float:
    """Apparent size factor at feet row `y` (1 at the walkway's centre line)."""
    mid = (WALK_TOP + WALK_BOTTOM) / 2 * h
    return 1.0 + 0.9 * (y - mid) / h


def _draw_walker(c: Canvas, a: Agent, t: int, h: float, stride_amp: float, lean: float) -> None:
    x, y, ph, d, col = float(a.x[t]), float(a.y[t]), float(a.phase[t]), a.direction, a.colors
    c.ellipse(x, y, 0.22 * h, 0.05 * h, _BLACK, opacity=0.35)
    hip = (x, y - 0.48 * h)
    swing = stride_amp * h * math.sin(ph)
    c.capsule(*hip, x + swing, y - 0.03 * h, 0.05 * h, col["legs"])
    c.capsule(*hip, x - swing, y - 0.03 * h, 0.05 * h, col["legs"] * 0.8)
    sx = x + lean * d * h
    c.capsule(x, y - 0.5 * h, sx, y - 0.76 * h, 0.1 * h, col["shirt"])
    c.capsule(sx, y - 0.74 * h, sx - 0.6 * swing, y - 0.5 * h, 0.035 * h, col["shirt"] * 0.85)
    c.circle(sx + 0.02 * d * h, y - 0.88 * h, 0.08 * h, col["skin"])
    c.circle(sx, y - 0.91 * h, 0.065 * h, col["hair"])


def _draw_cyclist(c: Canvas, a: Agent, t: int, h: float) -> None:
    x, y, ph, d, col = float(a.x[t]), float(a.y[t]), float(a.phase[t]), a.direction, a.colors
    r = 0.2 * h
    c.ellipse(x, y, 0.5 * h, 0.05 * h, _BLACK, opacity=0.35)
    rear, front = (x - 0.32 * d * h, y - r), (x + 0.32 * d * h, y - r)
    bb = (x, y - r)
    seat = (x - 0.1 * d * h, y - 0.55 * h)
    bar = (x + 0.26 * d * h, y - 0.6 * h)
    for hub in (rear, front):
        c.ring(*hub, r, 0.05 * h, rgb(30, 30, 30))
    for p, q in ((rear, bb), (bb, seat), (seat, rear), (bb, bar), (bar, front), (seat, bar)):
        c.capsule(*p, *q, 0.022 * h, col["frame"])
    for s in (0.0, math.pi):  # both legs, pedals half a turn apart
        pedal = (bb[0] + 0.09 * h * math.cos(ph + s), bb[1] + 0.09 * h * math.sin(ph + s))
        knee = ((seat[0] + pedal[0]) / 2 + 0.1 * d * h, (seat[1] + pedal[1]) / 2 - 0.05 * h)
        c.capsule(*seat, *knee, 0.05 * h, col["legs"])
        c.capsule(*knee, *pedal, 0.045 * h, col["legs"])
    shoulder = (x + 0.05 * d * h, y - 0.86 * h)
    c.capsule(*seat, *shoulder, 0.1 * h, col["shirt"])
    c.capsule(*shoulder, *bar, 0.035 * h, col["shirt"] * 0.85)
    c.circle(shoulder[0] + 0.06 * d * h, y - 0.98 * h, 0.08 * h, col["skin"])
    c.circle(shoulder[0] + 0.04 * d * h, y - 1.01 * h, 0.07 * h, col["hair"])


def _draw_cart(c: Canvas, a: Agent, t: int, h: float) -> None:
    x, y, d, col = float(a.x[t]), float(a.y[t]), a.direction, a.colors
    c.ellipse(x, y, 0.95 * h, 0.08 * h, _BLACK, opacity=0.4)
    c.rect(x - 0.85 * h, y - 0.72 * h, x + 0.85 * h, y - 0.18 * h, col["body"])
    c.rect(x - 0.85 * h, y - 0.4 * h, x + 0.85 * h, y - 0.34 * h, col["body"] * 0.7)
    c.rect(x - 0.7 * h, y - 1.25 * h, x + 0.6 * h, y - 1.15 * h, col["roof"])
    for px in (-0.66, 0.5):
        c.rect(x + px * d * h - 0.03 * h, y - 1.15 * h, x + px * d * h + 0.03 * h, y - 0.72 * h, rgb(50, 50, 55))
    c.circle(x - 0.05 * d * h, y - 0.9 * h, 0.08 * h, col["skin"])
    c.capsule(x - 0.05 * d * h, y - 0.82 * h, x - 0.05 * d * h, y - 0.72 * h, 0.1 * h, col["shirt"])
    for px in (-0.55, 0.55):
        c.circle(x + px * h, y - 0.15 * h, 0.15 * h, rgb(25, 25, 25))
        c.circle(x + px * h, y - 0.15 * h, 0.06 * h, rgb(150, 150, 150))


_EXTENTS = {  # (half width, top above the feet, bottom below the feet) in person heights
    "cyclist": (0.56, 1.1, 0.06),
    "cart": (0.96, 1.3, 0.09),
    "runner": (0.42, 1.0, 0.06),
}


def agent_boxes(a: Agent, person_height: float, frame_height: int, pad: float = 0.0) -> np.ndarray:
    """(T, 4) bounding boxes `x0, y0, x1, y1` of everything drawn for the agent, grown by `pad` px."""
    h = person_height * perspective(a.y, frame_height)
    hw, top, bottom = _EXTENTS.get(a.kind, (0.27, 1.0, 0.06))
    return np.stack([a.x - hw * h - pad, a.y - top * h - pad, a.x + hw * h + pad, a.y + bottom * h + pad], axis=1)


def draw_agent(c: Canvas, a: Agent, t: int, person_height: float) -> None:
    h = person_height * float(perspective(a.y[t], c.h))
    if a.kind == "cyclist":
        _draw_cyclist(c, a, t, h)
    elif a.kind == "cart":
        _draw_cart(c, a, t, h)
    elif a.kind == "runner":
        _draw_walker(c, a, t, h, stride_amp=0.3, lean=0.1)
    elif a.kind == "lawn":  # seen walking towards/away from the camera: legs foreshortened
        _draw_walker(c, a, t, h, stride_amp=0.07, lean=0.0)
    else:
        _draw_walker(c, a, t, h, stride_amp=0.16, lean=0.02)


__all__ = ["Agent", "Canvas", "agent_boxes", "draw_agent", "perspective", "render_background", "rgb"]
