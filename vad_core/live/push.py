"""Push a video file to an RTSP server as a camera would: packet for packet, at its own pace (PyAV only).

    push_file("cam7.mp4", "rtsp://127.0.0.1:8554/live")              # real time, over TCP
    python -m vad_core.live.push cam7.mp4 rtsp://127.0.0.1:8554/live --speed 4

The packets are remuxed, not re-encoded, so whoever decodes the stream gets the file's own
frames (what the loopback tests and `benchmarks/live.py` compare with the file path). Each packet
is sent when its timestamp falls due (`speed` times real time; 0: as fast as the link takes
them). The server may not be listening yet (`vad score-stream --listen` starting up): connecting
is retried every 0.2 s for `connect_timeout_s`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import av

from vad_core.errors import VADInputError
from vad_core.footage.integrity import DECODE_ERRORS

__all__ = ["main", "push_file"]


def _connect(url: str, template: av.VideoStream, timeout_s: float) -> tuple[av.container.OutputContainer, Any]:
    """An RTSP output carrying a copy of `template`, its session set up: the muxer connects when it
    writes its header (`start_encoding`), so that is what is retried until the server answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = None
        try:
            out = av.open(url, "w", format="rtsp", options={"rtsp_transport": "tcp"}, timeout=10.0)
            copy = out.add_stream_from_template(template)
            out.start_encoding()
            return out, copy
        except (*DECODE_ERRORS, OSError) as exc:  # type: ignore[misc]  # mypy cannot unpack a tuple of classes here
            if out is not None:
                try:
                    out.close()
                except (*DECODE_ERRORS, OSError):  # type: ignore[misc]  # a half-open session: nothing to flush
                    pass
            if time.monotonic() >= deadline:
                raise VADInputError(f"{url}: no RTSP server took the stream within {timeout_s:g} s ({exc})") from None
            time.sleep(0.2)


def push_file(path: str | Path, url: str, *, speed: float = 1.0, connect_timeout_s: float = 30.0) -> int:
    """Send `path`'s first video stream to `url` (RTSP ANNOUNCE/RECORD over TCP); returns packets sent."""
    if speed < 0:
        raise VADInputError(f"push: speed must be >= 0, got {speed!r}")
    try:
        source = av.open(str(path))
    except (*DECODE_ERRORS, OSError) as exc:  # type: ignore[misc]  # mypy cannot unpack a tuple of classes here
        raise VADInputError(f"{path}: not a readable video ({exc})") from None
    with source:
        if not source.streams.video:
            raise VADInputError(f"{path}: has no video stream")
        stream = source.streams.video[0]
        sent = 0
        out, copy = _connect(url, stream, connect_timeout_s)
        with out:
            t0, first = time.monotonic(), None
            for packet in source.demux(stream):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                if speed > 0 and packet.pts is not None and packet.time_base is not None:
                    at = float(packet.pts * packet.time_base)
                    first = at if first is None else first
                    delay = t0 + (at - first) / speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                packet.stream = copy
                out.mux(packet)
                sent += 1
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vad_core.live.push", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="video file to push")
    parser.add_argument("url", help="rtsp:// URL of the server (e.g. `vad score-stream --listen`)")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time (0: as fast as possible)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    try:
        sent = push_file(args.path, args.url, speed=args.speed, connect_timeout_s=args.connect_timeout)
    except VADInputError as exc:
        print(f"push: error: {exc}", file=sys.stderr)
        return 2
    print(f"push: sent {sent} packets to {args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
