"""Live frames: a file or a stream read as its frames arrive, on a decoder thread, through a bounded queue.

    reader = FrameReader("rtsp://cam7/live", size_for, ReaderConfig(queue=32))
    with reader:                      # starts the decoder thread; leaving stops and joins it
        for frame in reader:          # Frame(index, segment, arrival, pixels)
            ...
    reader.stats                      # decoded, dropped, drop_events, reconnects, segments

Sources (`open_options` says what each is opened with): a local file; `rtsp://` as a client over
TCP (`rtsp_transport=tcp`: no lost UDP packets smearing the picture); `udp://` (overruns kept
non-fatal) or any other URL PyAV opens; and `listen=True`, where we are the RTSP server
(`rtsp_flags=listen`) and a camera or encoder pushes to us, waiting `listen_timeout_s` for it.

Frames are converted as `vad_core.footage.decode.iter_frames` converts a file's (`frame_to_rgb`,
scaled to `size_for(width, height)` of the displayed frame), so a streamed frame equals the
frame a file of the same packets gives. `index` counts decoded frames from 0 across
reconnects; `segment` counts connections, so a consumer sees a cut wherever the picture is not
continuous (a reconnect, or frames dropped between two indices).

When the consumer falls behind a live source, the queue fills and the decoder drops the newest
frames (counted; one warning when dropping starts, one when it stops) rather than let latency
grow; a file has no clock, so by default its decoder waits instead (`ReaderConfig.drop`).

A lost live source (an open or read error, or its end for a client URL) is reopened after
`backoff_s`, doubling up to `backoff_max_s`, for at most `reconnect_attempts` attempts in a row
(the count restarts once frames flow again), each logged; then the reader fails with
`VADInputError`. A file is never reopened (its frames would repeat). `stop` (an event, set by
`FrameReader.stop`, a signal handler or the caller) ends the iteration within one read timeout.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from vad_core.errors import VADInputError
from vad_core.footage.decode import displayed_size, frame_to_rgb
from vad_core.footage.integrity import DECODE_ERRORS

__all__ = ["Frame", "FrameReader", "Opener", "ReaderConfig", "ReaderStats", "is_live", "open_options", "pyav_opener"]

log = logging.getLogger(__name__)

# A function that opens the source and yields its decoded frames (closing it when the generator ends).
Opener = Callable[[], Iterator[av.VideoFrame]]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: `index` from 0, `segment` (connection) it came in, `arrival`
    (`time.perf_counter()` once decoded and converted), `pixels` `(H, W, 3)` uint8 scaled."""

    index: int
    segment: int
    arrival: float
    pixels: np.ndarray


@dataclass(frozen=True)
class ReaderConfig:
    """How a source is read (see the module doc)."""

    queue: int = 32  # frames held between the decoder and the scorer (3.2 s at 10 fps)
    drop: bool | None = None  # drop new frames when full; None: for live sources only (a file waits)
    listen: bool = False  # we are the RTSP server: the source URL is where we listen
    listen_timeout_s: float = 30.0  # how long a listening open waits for a client
    open_timeout_s: float = 10.0  # opening a client URL
    read_timeout_s: float = 10.0  # a read that gets nothing for this long counts as a lost source
    reconnect_attempts: int = 5  # reopen attempts in a row before giving up (live sources only)
    backoff_s: float = 0.5  # wait before the first reopen; doubles each attempt
    backoff_max_s: float = 8.0
    reconnect_on_end: bool | None = None  # None: a client URL's end is a lost source; a file's or listen's ends

    def __post_init__(self) -> None:
        if not isinstance(self.queue, int) or self.queue < 1:
            raise VADInputError(f"ReaderConfig.queue must be a positive int, got {self.queue!r}")
        if not isinstance(self.reconnect_attempts, int) or self.reconnect_attempts < 0:
            raise VADInputError(f"ReaderConfig.reconnect_attempts must be an int >= 0, got {self.reconnect_attempts!r}")
        for name in ("listen_timeout_s", "open_timeout_s", "read_timeout_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise VADInputError(f"ReaderConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.backoff_s <= self.backoff_max_s:
            raise VADInputError(
                f"ReaderConfig.backoff_s must be in [0, backoff_max_s={self.backoff_max_s}], got {self.backoff_s!r}"
            )


@dataclass
class ReaderStats:
    """Counters of one reader (written by the decoder thread, read after it stopped or as a snapshot)."""

    decoded: int = 0  # frames decoded and converted
    dropped: int = 0  # of those, dropped because the queue was full
    drop_events: int = 0  # runs of consecutive drops
    reconnects: int = 0  # reopen attempts made
    segments: int = 0  # connections that gave at least one frame
    ended: str = ""  # "end" (the source ended), "stopped", "error", or "" while running
    errors: list[str] = field(default_factory=list)  # why each reopen was needed


def is_live(source: str, listen: bool = False) -> bool:
    """True for a URL (`scheme://`, not `file://`) or a listening source: it has its own clock."""
    return listen or ("://" in source and not source.lower().startswith("file://"))


def open_options(source: str, config: ReaderConfig) -> tuple[dict[str, str], tuple[float, float]]:
    """FFmpeg options and PyAV's (open, read) timeouts in seconds for `source` under `config`."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    read = config.read_timeout_s
    if config.listen:
        if scheme != "rtsp":
            raise VADInputError(f"{source}: listening needs an rtsp:// URL to listen on (rtsp://127.0.0.1:8554/live)")
        # ffmpeg's RTSP demuxer as a server: wait listen_timeout seconds for the client's ANNOUNCE/RECORD.
        options = {"rtsp_flags": "listen", "listen_timeout": str(max(1, round(config.listen_timeout_s)))}
        return options, (config.listen_timeout_s + config.open_timeout_s, read)
    if scheme in ("rtsp", "rtsps"):
        return {"rtsp_transport": "tcp"}, (config.open_timeout_s, read)
    if scheme == "udp":
        return {"overrun_nonfatal": "1"}, (config.open_timeout_s, read)
    return {}, (config.open_timeout_s, read)


def pyav_opener(source: str, config: ReaderConfig) -> Opener:
    """The opener of a real source: `av.open` with `open_options`, the first video stream decoded
    packet by packet as it arrives (multi-threaded decoding off: it holds frames back)."""
    if not is_live(source, config.listen):
        path = Path(source[len("file://") :] if source.lower().startswith("file://") else source)
        if not path.is_file():
            raise VADInputError(f"{path}: no such video file")
        source = str(path)
    options, timeout = open_options(source, config)

    def frames() -> Iterator[av.VideoFrame]:
        with av.open(source, options=options, timeout=timeout) as container:
            if not container.streams.video:
                raise VADInputError(f"{source}: has no video stream")
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                yield from packet.decode()

    return frames


class FrameReader:
    """Decodes `source` on a thread into a bounded queue; iterate it for `Frame`s (see the module doc).

    `size_for(width, height) -> (w, h)`: the size frames are scaled to, given the displayed size
    (it may raise `VADInputError` to refuse a frame size: the reader then fails with it).
    `opener`: yields decoded frames (default `pyav_opener(source, config)`; tests pass fakes).
    `stop`: an event that ends reading when set (default: the reader's own).
    """

    def __init__(
        self,
        source: str,
        size_for: Callable[[int, int], tuple[int, int]],
        config: ReaderConfig = ReaderConfig(),
        *,
        opener: Opener | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.source = str(source)
        self.config = config
        self.live = is_live(self.source, config.listen)
        self.drop = self.live if config.drop is None else bool(config.drop)
        self.reconnect_on_end = (
            (self.live and not config.listen) if config.reconnect_on_end is None else config.reconnect_on_end
        )
        self._open = opener if opener is not None else pyav_opener(self.source, config)
        self._size_for = size_for
        self.stop_event = stop if stop is not None else threading.Event()
        self.stats = ReaderStats()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=config.queue)
        self._thread: threading.Thread | None = None
        self._dropping = 0  # drops in the current run

    # -- the decoder thread ----------------------------------------------------------------------------
    def _put(self, item: tuple[str, Any]) -> bool:
        """Hand an item over, waiting while the queue is full (false once stopped)."""
        while not self.stop_event.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _offer(self, frame: Frame) -> None:
        """A frame for a consumer that may be behind: dropped when the queue is full in drop mode."""
        if not self.drop:
            self._put(("frame", frame))
            return
        try:
            self._queue.put_nowait(("frame", frame))
        except queue.Full:
            self.stats.dropped += 1
            if self._dropping == 0:
                self.stats.drop_events += 1
                log.warning(
                    "%s: scoring is behind, the queue of %d frames is full: dropping frames from %d (%d dropped)",
                    self.source,
                    self.config.queue,
                    frame.index,
                    self.stats.dropped,
                )
            self._dropping += 1
            return
        if self._dropping:
            log.warning(
                "%s: caught up, %d frames were dropped before frame %d", self.source, self._dropping, frame.index
            )
            self._dropping = 0

    def _read_once(self, index: int) -> tuple[int, bool]:
        """One connection: frames until it ends. Returns (next index, whether any frame came)."""
        got = False
        frames = self._open()
        try:
            for video_frame in frames:
                if self.stop_event.is_set():
                    break
                pixels = frame_to_rgb(video_frame, self._size_for(*displayed_size(video_frame)))
                if not got:
                    got = True
                    self.stats.segments += 1
                self._offer(Frame(index, self.stats.segments - 1, time.perf_counter(), pixels))
                self.stats.decoded += 1
                index += 1
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # closes the container now, not when the generator is collected
                close()
        return index, got

    def _run(self) -> None:
        index, failures = 0, 0
        try:
            while not self.stop_event.is_set():
                try:
                    index, got = self._read_once(index)
                    if got:
                        failures = 0
                    if self.stop_event.is_set() or not self.reconnect_on_end:
                        break
                    reason = "the stream ended"
                except VADInputError:
                    raise  # a refused frame size, a source without video: reopening will not help
                except (*DECODE_ERRORS, OSError) as exc:  # type: ignore[misc]  # mypy cannot unpack a tuple of classes here
                    if not self.live:
                        raise VADInputError(f"{self.source}: decoding failed after {index} frames ({exc})") from None
                    reason = f"{type(exc).__name__}: {exc}"
                failures += 1
                self.stats.errors.append(reason)
                if failures > self.config.reconnect_attempts:
                    raise VADInputError(
                        f"{self.source}: lost and not back after {self.config.reconnect_attempts} reconnect "
                        f"attempts (last: {reason})"
                    )
                wait = min(self.config.backoff_s * 2 ** (failures - 1), self.config.backoff_max_s)
                log.warning(
                    "%s: %s; reconnecting in %.1f s (attempt %d of %d)",
                    self.source,
                    reason,
                    wait,
                    failures,
                    self.config.reconnect_attempts,
                )
                if self.stop_event.wait(wait):
                    break
                self.stats.reconnects += 1
            self.stats.ended = "stopped" if self.stop_event.is_set() else "end"
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.stats.ended = "error"
            self._put(("error", exc))

    # -- the consumer side -----------------------------------------------------------------------------
    def start(self) -> FrameReader:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vad-stream-decoder", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the decoder to stop and wait for it (at most `timeout`, default one read timeout + 1 s)."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(self.config.read_timeout_s + 1.0 if timeout is None else timeout)

    def __enter__(self) -> FrameReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        """Frames in decoding order until the source ends or `stop` is set; the decoder's error is re-raised."""
        self.start()
        while not self.stop_event.is_set():
            try:
                kind, item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
