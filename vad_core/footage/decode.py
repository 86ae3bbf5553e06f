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


def decode_packets(
    container: av.container.InputContainer, stream: av.VideoStream, stats: dict[str, int]
) -> Iterator[av.VideoFrame]:
    """Demux and decode packet by packet: `container.decode` hides some packet errors
    (a cut-off last packet), `packet.decode` raises them. `stats["packets"]` counts data packets."""
    for packet in container.demux(stream):
        if packet.size:
            stats["packets"] += 1
        yield from packet.decode()


def frame_size(path: str | os.PathLike, kind: Kind) -> tuple[int, int]:
    """`(width, height)` of a video from its header (file) or first frame's header (folder)."""
    path = Path(path)
    try:
        if kind == "frames":
            with Image.open(list_frames(path)[0]) as im:
                return im.size
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VADInputError(f"{path}: has no video stream")
            ctx = container.streams.video[0].codec_context
            return int(ctx.width), int(ctx.height)
    except (av.FFmpegError, OSError) as exc:
        raise VADInputError(f"{path}: cannot read the frame size ({exc})") from None


def iter_frames(path: str | os.PathLike, kind: Kind, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode a video: RGB uint8 frames `(H, W, 3)`, in order.

    `size=(width, height)` resizes while decoding (area averaging for files via swscale,
    Pillow's antialiased bilinear for frame folders). Raises `VADInputError` naming the file.
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
    except av.FFmpegError as exc:
        raise VADInputError(f"{path}: not a readable video ({exc})") from None
    with container:
        if not container.streams.video:
            raise VADInputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        opts: dict[str, Any] = {"format": "rgb24"}
        if size is not None:
            opts.update(width=int(size[0]), height=int(size[1]), interpolation="AREA")
        n = 0
        try:
            for video_frame in decode_packets(container, stream, {"packets": 0}):
                yield video_frame.to_ndarray(**opts)
                n += 1
        except av.FFmpegError as exc:
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


__all__ = ["decode_packets", "frame_size", "iter_frames", "read_frames"]
