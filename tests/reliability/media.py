"""Footage for the reliability tests, made on the spot: PyAV writers, byte surgery, frame folders.

Nothing binary is committed: every video is encoded here from a seeded texture, so a case is
its recipe. Frames carry enough detail (a drifting noise texture) to span several packets of a
transport stream, as real frames do, and every file has a keyframe every `keyint` frames.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# container extension -> (PyAV format, codec)
CONTAINERS = {
    ".mp4": ("mp4", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx"),
    ".avi": ("avi", "mpeg4"),
    ".ts": ("mpegts", "libx264"),
}


def texture_frames(n: int, width: int = 96, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    """`n` RGB frames `(height, width, 3)` uint8: a noise texture drifting 2 px per frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, 2 * i % width : 2 * i % width + width]) for i in range(n)]


def write_video(
    path: Path,
    n: int = 24,
    width: int = 96,
    height: int = 64,
    fps: int = 12,
    seed: int = 0,
    keyint: int = 8,
    faststart: bool = False,
    pts_ms: list[int] | None = None,
    audio_seconds: float = 0.0,
    frames: list[np.ndarray] | None = None,
) -> Path:
    """Encode `n` texture frames into `path` (format and codec from its extension).

    `faststart` moves an mp4's index in front of the data; `pts_ms` gives variable-rate
    timestamps in milliseconds (Matroska); `audio_seconds` adds a sine audio track of that length;
    `frames` replaces the texture (and sets `n`, `width`, `height`).
    """
    if frames is not None:
        n, (height, width) = len(frames), frames[0].shape[:2]
    fmt, codec = CONTAINERS[path.suffix]
    # bitexact: no random Matroska/WebM UIDs, so a seeded mutation always hits the same bytes
    options = {"fflags": "+bitexact", **({"movflags": "faststart"} if faststart else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = keyint
        # One encoder thread: an encoder's output depends on its thread count, which follows the
        # process's CPU affinity; with one, the same recipe is the same bytes in every run.
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:threads=1"}
        elif codec == "libvpx":
            stream.options = {"threads": "1"}
        if pts_ms is not None:  # the encoder's clock too, or it rounds every timestamp to 1/fps
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        audio = (
            container.add_stream("aac" if fmt in ("mp4", "mpegts") else "libopus", rate=48000)
            if audio_seconds
            else None
        )
        for i, rgb in enumerate(frames if frames is not None else texture_frames(n, width, height, seed)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            samples = 1024
            for k in range(int(audio_seconds * 48000 / samples)):
                t = (np.arange(samples) + k * samples) / 48000
                wave = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, k * samples
                container.mux(audio.encode(af))
            container.mux(audio.encode())
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """A file with one audio track and no video (an .mp4 named like footage)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48000)
        for k in range(int(seconds * 48000 / 1024)):
            wave = np.zeros((1, 1024), np.float32)
            af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, k * 1024
            container.mux(stream.encode(af))
        container.mux(stream.encode())
    return path


def write_frames(folder: Path, frames: list[np.ndarray], pattern: str = "{:04d}.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / pattern.format(i), quality=90)
    return folder


def cut(path: Path, keep: int | float, dest: Path | None = None) -> Path:
    """Keep the first `keep` bytes (an int; negative: drop that many from the end) or fraction."""
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    dest = dest or path
    dest.write_bytes(data[:n])
    return dest


def flip(path: Path, offset: int | float, dest: Path | None = None) -> Path:
    """Invert every bit of one byte (at a byte offset or a fraction of the size)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * offset) if isinstance(offset, float) else offset
    data[i] ^= 0xFF
    dest = dest or path
    dest.write_bytes(bytes(data))
    return dest


def rotate_mp4(path: Path, degrees_clockwise: int) -> Path:
    """Byte surgery: write a display matrix for a clockwise turn into the mp4's video `tkhd` box."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    # size/type, version+flags, times and ids (v0: 5 x 4 bytes, v1: 8 + 8 + 4 + 4 + 8), reserved 8,
    # layer, alternate group, volume, reserved (2 bytes each), then the 3x3 matrix (36 bytes).
    offset = i + 8 + (20 if version == 0 else 32) + 8 + 8
    one = 1 << 16
    matrices = {
        0: (one, 0, 0, 0, one, 0),
        90: (0, one, 0, -one, 0, 0),
        180: (-one, 0, 0, 0, -one, 0),
        270: (0, -one, 0, one, 0, 0),
    }
    data[offset : offset + 36] = struct.pack(">9i", *matrices[degrees_clockwise], 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def shift_composition_time(path: Path, entry: int = 5, high_byte: int = 2) -> Path:
    """Byte surgery: damage one `ctts` entry of an mp4 (its offset's high byte), as a bit flip in
    the index does: that sample's presentation time moves far past the others."""
    data = bytearray(path.read_bytes())
    i = data.find(b"ctts")
    # type, version+flags, entry count, then (sample_count, sample_offset) pairs of 4 bytes each
    data[i + 12 + 8 * entry + 4] = high_byte
    path.write_bytes(bytes(data))
    return path


def reference_frame_count(path: Path) -> int | None:
    """Frames PyAV's plain high-level decode yields (default threading), None when it raises."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except Exception:  # noqa: BLE001 - any failure means: no reference count
        return None


__all__ = [
    "CONTAINERS",
    "cut",
    "flip",
    "reference_frame_count",
    "rotate_mp4",
    "shift_composition_time",
    "texture_frames",
    "write_audio_only",
    "write_frames",
    "write_video",
]
