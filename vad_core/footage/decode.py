"""Decode frames: RGB uint8 arrays from video files (PyAV) and frame folders (Pillow)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from vad_core.errors import VADInputError
from vad_core.footage.discover import Kind, list_frames
from vad_core.footage.integrity import DECODE_ERRORS


def decode_packets(
    container: av.container.InputContainer, stream: av.VideoStream, stats: dict[str, int]
) -> Iterator[av.VideoFrame]:
    """Demux and decode packet by packet: `container.decode` hides some packet errors
    (a cut-off last packet), `packet.decode` raises them. `stats["packets"]` counts data packets."""
    for packet in container.demux(stream):
        if packet.size:
            stats["packets"] += 1
        yield from packet.decode()


def _quarter_turns(frame: av.VideoFrame) -> int:
    """How many quarter turns counter-clockwise (np.rot90's k) show the frame upright: FFmpeg's
    display-matrix angle is counter-clockwise already (-90: the picture is turned clockwise)."""
    return round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4


def frame_size(path: str | os.PathLike, kind: Kind) -> tuple[int, int]:
    """Displayed `(width, height)` of a video: its first frame, turned by the display rotation
    (file), or its first image's header (folder)."""
    path = Path(path)
    try:
        if kind == "frames":
            with Image.open(list_frames(path)[0]) as im:
                return im.size
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VADInputError(f"{path}: has no video stream")
            for frame in container.decode(container.streams.video[0]):
                return displayed_size(frame)
            raise VADInputError(f"{path}: no decodable video frames")
    except (*DECODE_ERRORS, OSError) as exc:  # type: ignore[misc]  # mypy cannot unpack a tuple of classes here
        raise VADInputError(f"{path}: cannot read the frame size ({exc})") from None


def displayed_size(frame: av.VideoFrame) -> tuple[int, int]:
    """`(width, height)` of a decoded frame as shown, its display rotation applied."""
    w, h = int(frame.width), int(frame.height)
    return (h, w) if _quarter_turns(frame) % 2 else (w, h)


def frame_to_rgb(video_frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """One decoded frame as upright RGB uint8 `(H, W, 3)`, resized to `size=(width, height)` (displayed)
    by swscale's area averaging: the conversion of `iter_frames`, shared by the live stream reader so
    a streamed frame is pixel for pixel the frame a file of the same packets gives."""
    turns = _quarter_turns(video_frame)
    opts: dict[str, Any] = {"format": "rgb24"}
    if size is not None:  # swscale resizes the coded picture: a quarter turn swaps the sides
        w, h = (int(size[1]), int(size[0])) if turns % 2 else (int(size[0]), int(size[1]))
        opts.update(width=w, height=h, interpolation="AREA")
    picture: np.ndarray = video_frame.to_ndarray(**opts)
    return np.ascontiguousarray(np.rot90(picture, turns)) if turns else picture


def iter_frames(path: str | os.PathLike, kind: Kind, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode a video: RGB uint8 frames `(H, W, 3)`, in order, upright.

    A file's display rotation (multiples of 90 degrees) is applied, as players do, so frames have
    the manifest's `width` x `height`. `size=(width, height)` (displayed) resizes while decoding
    (area averaging for files via swscale, Pillow's antialiased bilinear for frame folders).
    Raises `VADInputError` naming the file.
    """
    path = Path(path)
    if kind == "frames":
        for frame in list_frames(path):
            try:
                with Image.open(frame) as im:
                    rgb = im.convert("RGB")
                if size is not None and rgb.size != tuple(size):
                    rgb = rgb.resize((int(size[0]), int(size[1])), Image.Resampling.BILINEAR)
            except (OSError, SyntaxError, ValueError) as exc:
                raise VADInputError(f"{frame}: cannot decode the frame ({exc})") from None
            yield np.asarray(rgb)
        return
    if kind != "file":
        raise VADInputError(f"{path}: unknown video kind {kind!r} (expected 'file' or 'frames')")
    try:
        container = av.open(str(path))
    except DECODE_ERRORS as exc:
        raise VADInputError(f"{path}: not a readable video ({exc})") from None
    with container:
        if not container.streams.video:
            raise VADInputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for video_frame in decode_packets(container, stream, {"packets": 0}):
                yield frame_to_rgb(video_frame, size)
                n += 1
        except DECODE_ERRORS as exc:
            raise VADInputError(f"{path}: decoding failed after {n} frames ({exc})") from None


def read_frames(
    path: str | os.PathLike,
    kind: Kind,
    start: int = 0,
    stop: int | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Frames `[start, stop)` of a video stacked as uint8 `(T, H, W, 3)` (small ranges only)."""
    if start < 0 or (stop is not None and stop < start):
        raise VADInputError(f"{path}: bad frame range [{start}, {stop})")
    out = []
    for i, frame in enumerate(iter_frames(path, kind, size)):
        if stop is not None and i >= stop:
            break
        if i >= start:
            out.append(frame)
    if not out:
        raise VADInputError(f"{path}: no frames in [{start}, {stop})")
    return np.stack(out)


__all__ = ["decode_packets", "displayed_size", "frame_size", "frame_to_rgb", "iter_frames", "read_frames"]
