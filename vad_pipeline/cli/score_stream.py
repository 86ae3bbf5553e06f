"""`vad score-stream`: watch a camera stream (or a file) and alert as anomalous intervals close.

    vad score-stream rtsp://cam7.local/live --model models:/vad-denoiser-ucsd_ped2@champion --out out/cam7
    vad score-stream rtsp://0.0.0.0:8554/live --listen --model vad_home/live_model --out out/push
    vad score-stream udp://0.0.0.0:5000 --model ... --out ...     |     vad score-stream cam7.mp4 ...

Frames are decoded as they arrive (PyAV, RTSP over TCP); each clip of the model's clip config is
embedded and decided alone by the threshold stored in the model (`vad_core.live.stream`). Each
alert is printed when its interval closes and appended to DIR/alerts.jsonl at once (one JSON
object a line, so a tail -f or a log shipper sees it). `--listen` makes this the RTSP server a
camera or encoder pushes to. When scoring falls behind, the queue of `--queue` frames drops new
frames with a warning; a lost stream is reopened with exponential back-off. Ctrl-C (or
`--max-clips`) stops cleanly: the open alert is closed, then DIR gets clip_scores and alerts
(Parquet and CSV, written atomically) and summary.json (frames, drops, reconnects, latency from a
clip's last frame to its decision, p50/p95). MODEL is resolved as `vad score` resolves it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from vad_core.errors import VADInputError
from vad_pipeline.cli.score import add_model_arguments, load_model


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`vad score-stream`."""
    parser = commands.add_parser(
        "score-stream",
        help="watch a stream (rtsp://, udp://, a file; --listen: be the RTSP server): alerts as they close",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("source", metavar="SOURCE", help="rtsp://... | udp://... | a URL PyAV opens | a video file")
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder (created; alerts.jsonl is appended to)")
    parser.add_argument("--listen", action="store_true", help="be the RTSP server: wait for a client to push SOURCE")
    parser.add_argument("--listen-timeout", type=float, default=30.0, help="seconds to wait for it (default 30)")
    parser.add_argument("--queue", type=int, default=32, help="frames held while scoring is busy (default 32)")
    parser.add_argument("--max-clips", type=int, help="stop after this many clips")
    parser.add_argument("--reconnect-attempts", type=int, default=5, help="reopen attempts in a row (default 5)")
    parser.add_argument("--video-id", help="id the rows carry (default: the URL path's or file's stem)")
    parser.add_argument("--quiet", action="store_true", help="alerts and the summary only, no progress lines")
    parser.set_defaults(run=run)


class _AlertLog:
    """Prints each alert and appends it to alerts.jsonl, flushed line by line."""

    def __init__(self, path: Path, source: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.source, self.count = path, source, 0

    def __call__(self, alert: dict[str, Any]) -> None:
        self.count += 1
        line = json.dumps({**alert, "source": self.source}, sort_keys=True, default=str)
        with open(self.path, "a", encoding="utf-8") as fh:  # one write of one whole line per alert
            fh.write(line + "\n")
            fh.flush()
        print(
            f"ALERT {alert['video_id']} frames {alert['first_frame']}-{alert['last_frame']} "
            f"(clips {alert['first_clip']}-{alert['last_clip']}): peak {alert['peak_score']:.4f} > "
            f"{alert['threshold']:.4f} at clip {alert['peak_clip']}, tile {alert['peak_tile']} "
            f"x={alert['box_x']} y={alert['box_y']} {alert['box_w']}x{alert['box_h']}",
            flush=True,
        )


def _progress(quiet: bool) -> Any:
    """Every 10th clip: one progress line on stderr (clips, latest latency)."""
    if quiet:
        return None

    def on_clip(clip: dict[str, Any]) -> None:
        if clip["clip"] % 10 == 9:
            print(
                f"  clip {clip['clip'] + 1} (frames to {clip['end_frame']}): score {clip['score']:.4f}, "
                f"latency {clip['latency_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )

    return on_clip


class _StopOnInterrupt:
    """The first Ctrl-C sets `stop` (a clean stop); a second one interrupts at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: Any = None  # the SIGINT handler to restore (a callable, SIG_DFL / SIG_IGN, or None)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        print("stopping (Ctrl-C again to abort)...", file=sys.stderr, flush=True)
        self.stop.set()

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run(args: argparse.Namespace) -> int:
    from vad_core.io.store import LocalTableStore
    from vad_core.live.source import ReaderConfig
    from vad_core.live.stream import score_stream

    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VADInputError(f"--out {out}: exists and is not a folder")
    if args.max_clips is not None and args.max_clips < 1:
        raise VADInputError(f"--max-clips must be >= 1, got {args.max_clips}")
    reader = ReaderConfig(
        queue=args.queue,
        listen=args.listen,
        listen_timeout_s=args.listen_timeout,
        reconnect_attempts=args.reconnect_attempts,
    )
    with tempfile.TemporaryDirectory(prefix="vad-stream-") as tmp:
        live = load_model(args.model, args.device, Path(tmp), args.threshold_k)
    alerts_log = _AlertLog(out / "alerts.jsonl", str(args.source))
    version = live.info.get("model_version", "")
    stop = threading.Event()
    with _StopOnInterrupt(stop):
        print(
            f"== watching {args.source}{' (listening)' if args.listen else ''} with {args.model}"
            f"{' v' + version if version else ''}, threshold {live.rule.threshold:.4f}; Ctrl-C stops",
            flush=True,
        )
        result = score_stream(
            str(args.source),
            live,
            video_id=args.video_id,
            reader=reader,
            device=args.device,
            stop=stop,
            max_clips=args.max_clips,
            on_clip=_progress(args.quiet),
            on_alert=alerts_log,
        )
    meta = {"source": str(args.source), "model": str(args.model), "model_version": version}
    meta["threshold"] = repr(live.rule.threshold)
    store = LocalTableStore(out)
    written: dict[str, str] = {"alerts_jsonl": str(alerts_log.path)}
    for name, table in (("clip_scores", result.clips), ("alerts", result.alerts)):
        store.write_table(f"{name}.parquet", table, meta)
        store.write_bytes(f"{name}.csv", table.to_csv(index=False).encode())
        written[name] = store.location(f"{name}.parquet")
        written[f"{name}_csv"] = store.location(f"{name}.csv")
    stats = {**result.stats, "command_s": time.perf_counter() - t0}
    summary = {"model": {"uri": str(args.model), **live.info}, "rule": live.rule.to_dict(), "stats": stats}
    store.write_json("summary.json", {**summary, "outputs": written})
    _report(stats)
    return 0


def _report(stats: dict[str, Any]) -> None:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    print(
        f"== {stats['video_id']}: {stats['frames']} frames ({stats['frames_dropped']} dropped, "
        f"{stats['reconnects']} reconnects), {stats['clips']} clips, {stats['alerts']} alerts; ended: {stats['ended']}"
    )
    print(
        f"   latency last frame -> decision: p50 {s(stats['latency_p50_s'])}, p95 {s(stats['latency_p95_s'])}, "
        f"max {s(stats['latency_max_s'])}; {stats['stream_s']:.1f} s watched"
    )


__all__ = ["add_parser", "run"]
