"""Decode integrity: how many frames a video file really holds, and every sign that some were lost.

FFmpeg recovers from damage quietly: a cut-off Matroska file just ends ("File ended prematurely"
goes to the log, the demuxer reports a clean end of file), a broken H.264 slice is concealed, a
lost transport-stream packet merges two frames into one. Counting decoded frames therefore
proves nothing on its own. `check_decode` decodes every frame once with slice threads only
(PyAV's default: frame threads swallow the errors of the frames they drop, and a single thread
accepts some damage slice threads reject, e.g. a broken VP8 partition count), and collects the
signs of damage, none of them a guess from the nominal frame rate:

- FFmpeg's own ERROR (or worse) log lines, captured from every thread while the file is read
  (PyAV's logging is switched on only for that time, repeated lines kept; one capture at a
  time, so a probe running beside other decoding in the same process may blame its lines);
- packets the demuxer flags corrupt, and packets that decode to no frame;
- an MP4/MOV index listing more samples than the file holds, or another container's header
  declaring more frames than decode;
- a transport stream that does not end on a whole 188/192/204-byte packet;
- in containers without a sample index (Matroska/WebM, MPEG-TS), where a damaged block header
  or start code drops a frame with no other trace: timestamps of a constant-rate stream that
  skip one or two frame intervals. Longer pauses are what variable-frame-rate recordings
  (motion-triggered cameras) do, and streams whose intervals vary are not judged at all; MP4/MOV
  timestamps come from the index, so a camera's own dropped frame there is never held against it,
  unless the demuxer also discarded packets: a damaged composition-time table moves a frame out
  of the edit list, and the hole it leaves is judged like a lost frame.

Packets before a stream's first keyframe are no exception: FFmpeg's own recordings start at a
keyframe (`-copyinkf` is off by default), and a first keyframe destroyed by damage looks just
the same, so leading packets that decode to nothing are reported like any others.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import av.logging
import numpy as np

__all__ = ["DecodeCheck", "check_decode", "ffmpeg_errors", "missing_frames"]

# The exceptions PyAV raises on damaged input: its own, and a few plain ones from streams or
# packets that make no sense (a packet naming a stream the header never declared: IndexError).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    av.FFmpegError,
    EOFError,
    IndexError,
    OverflowError,
    RuntimeError,
    UnicodeDecodeError,
    ValueError,
)
_INDEXED_FORMATS = ("mov", "mp4")
_TS_PACKET_SIZES = (188, 192, 204)  # plain, M2TS (timestamped), with Reed-Solomon parity
_UNINDEXED_FORMATS = ("matroska", "webm", "mpegts")  # where a lost frame leaves only a timestamp gap
_MAX_SKIP = 2  # frames: a longer jump is a pause of a variable-rate recording
_LOG_LOCK = threading.Lock()  # PyAV's log level is process-wide: one capture at a time


@dataclass(frozen=True)
class DecodeCheck:
    """What decoding a file found: `problem` is None when it is intact.

    `n_frames` counts decoded frames; `size` is the coded `(width, height)`; `rotation` the
    clockwise degrees (0, 90, 180, 270) the file's display matrix asks for; `fps` the stream's
    average (else guessed) rate, for information only: nothing here is inferred from it.
    """

    n_frames: int
    size: tuple[int, int] | None
    rotation: int
    problem: str | None
    fps: float | None = None


@contextmanager
def ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """Capture the `(level, source, message)` log lines at ERROR or worse that FFmpeg emits (in any
    thread: slice threads log from their own) while the block runs; PyAV's previous log settings
    are restored afterwards. PyAV releases the GIL while decoding, so worker threads can log."""
    with _LOG_LOCK:
        level, repeated = av.logging.get_level(), av.logging.get_skip_repeated()
        av.logging.set_level(av.logging.ERROR)
        av.logging.set_skip_repeated(False)  # the same message for the next file must still count
        try:
            with av.logging.Capture(local=False) as logs:
                yield logs
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(repeated)


def missing_frames(pts: list[int]) -> tuple[int, int] | None:
    """`(frames missing, index of the first frame after a jump)` for a constant-rate stream whose
    timestamps skip one or two whole intervals; None when nothing is missing or the rate is not
    constant (at least 90% of the other intervals within 10% of the median interval). A jump of
    more than `_MAX_SKIP` intervals is a pause, not a loss (see the module doc).
    """
    t = np.unique(np.asarray(pts, dtype=np.int64))
    if len(t) < 4:
        return None
    d = np.diff(t)
    step = float(np.median(d))
    if step <= 0:
        return None
    jumps = (d >= 1.9 * step) & (d <= (_MAX_SKIP + 1.4) * step)
    rest = d[(d < 1.9 * step)]
    if not jumps.any() or np.mean(np.abs(rest - step) <= 0.1 * step) < 0.9:
        return None
    return int(np.sum(np.round(d[jumps] / step) - 1)), int(np.flatnonzero(jumps)[0]) + 1


def _rotation(frame: av.VideoFrame) -> int | str:
    """Clockwise degrees to display the frame upright, or a message for an unsupported angle."""
    ccw = float(getattr(frame, "rotation", 0) or 0)  # FFmpeg's display-matrix angle, counter-clockwise
    clockwise = round(-ccw) % 360
    if clockwise % 90:
        return f"a display rotation of {clockwise} degrees (only multiples of 90 are supported)"
    return clockwise


def _first_problem(logs: list[tuple[int, str, str]]) -> str | None:
    errors = [msg.strip() for level, _, msg in logs if level <= av.logging.ERROR and msg.strip()]
    if not errors:
        return None
    more = f" (and {len(errors) - 1} more decoder errors)" if len(errors) > 1 else ""
    return f"corrupt or truncated: FFmpeg reports {errors[0]!r}{more}"


def check_decode(path: str, size_bytes: int) -> DecodeCheck:
    """Open and decode every frame of the video file at `path` (see the module doc).

    Never raises for a damaged file: what went wrong is in `problem`.
    """
    n, packets, discarded, corrupt = 0, 0, 0, 0
    shape: tuple[int, int] | None = None
    rotation = 0
    pts: list[int] = []
    with ffmpeg_errors() as logs:
        try:
            container = av.open(path)
        except DECODE_ERRORS as exc:
            return DecodeCheck(0, None, 0, f"not a readable video ({exc})")
        with container:
            if not container.streams.video:
                return DecodeCheck(0, None, 0, "no video stream found (not a video, or truncated before its index)")
            stream = container.streams.video[0]
            if stream.codec_context is None:
                return DecodeCheck(0, None, 0, "no decoder for its video codec")
            stream.thread_type = "SLICE"  # see the module doc
            declared = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else None
            try:
                for packet in container.demux(stream):
                    if packet.size:
                        packets += 1
                        discarded += packet.is_discard
                        corrupt += packet.is_corrupt
                    for frame in packet.decode():
                        if shape is None:
                            shape = (frame.width, frame.height)
                            angle = _rotation(frame)
                            if isinstance(angle, str):
                                return DecodeCheck(0, shape, 0, angle)
                            rotation = angle
                        elif (frame.width, frame.height) != shape:
                            return DecodeCheck(
                                n,
                                shape,
                                rotation,
                                f"frame size changes from {shape[0]}x{shape[1]} to "
                                f"{frame.width}x{frame.height} at frame {n}",
                            )
                        if frame.pts is not None:
                            pts.append(int(frame.pts))
                        n += 1
            except DECODE_ERRORS as exc:
                return DecodeCheck(
                    n, shape, rotation, f"decoding failed after {n} frames, truncated or corrupt ({exc})"
                )
            fmt = container.format.name.split(",")
    # The container's own account of what is missing reads best, so it comes first.
    problem: str | None = None
    if any(f in fmt for f in _INDEXED_FORMATS) and packets < declared:
        # MP4/MOV index every sample up front; samples past a cut are simply never returned.
        problem = f"truncated: the index lists {declared} frames but only {packets} are in the file"
    elif not any(f in fmt for f in _INDEXED_FORMATS) and declared > n:
        problem = f"truncated: the container declares {declared} frames but only {n} decode"
    elif "mpegts" in fmt and all(size_bytes % s for s in _TS_PACKET_SIZES):
        problem = "truncated: the transport stream ends inside a packet (its size is no multiple of 188 bytes)"
    if problem is None:
        problem = _first_problem(logs)
    if problem is None and corrupt:
        problem = f"corrupt: the demuxer flags {corrupt} of {packets} packets as damaged"
    if problem is None and n < packets - discarded:
        problem = f"corrupt: {packets - discarded - n} of {packets} packets decode to no frame"
    unindexed = any(f in fmt for f in _UNINDEXED_FORMATS)
    if problem is None and (unindexed or discarded) and (gap := missing_frames(pts)) is not None:
        # In MP4/MOV a gap alone is the camera's; with discarded packets it is a damaged timing
        # table (ctts/stts) that moved a frame out of the edit list: an edit-list trim cuts the
        # ends, never a hole inside the stream.
        why = f"{discarded} packets discarded by damaged timing, " if discarded and not unindexed else ""
        problem = f"corrupt: {why}{gap[0]} frames missing, the constant-rate timestamps jump after frame {gap[1] - 1}"
    return DecodeCheck(n, shape, rotation, problem, fps)
