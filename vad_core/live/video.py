"""Score one whole video with a live detector: the features the pipeline would make, then scores and alerts.

    result = score_video("cam7.mp4", live)             # a file, a frame folder or a URL PyAV opens
    result.rows      # (N,) feature-row keys, boxes x, y, w, h and `score`
    result.clips     # CLIP_COLUMNS: clip score (max over regions), arg-max tile, threshold, decision
    result.frames    # video_id, frame, score, anomalous: a frame takes the max of the clips covering it
    result.alerts    # ALERT_COLUMNS: runs of anomalous clips with the peak's tile box
    result.timings   # seconds: total, probe, extract, backbone, decode, score

The features come from `vad_core.features.extract.extract_features` itself, into a
`MemoryTableStore`, with the backbone, clip config and region config recorded in the model's
`feature_spec` (the training tables' metadata), so a video's rows and features are exactly the
rows the `clip_features` asset would store for it, and its scores exactly what the batch path
gives a video the detector never trained on (`LiveDetector.score`, keyed by the video id: pass
the pipeline's id, the path under the footage root, to reproduce its scores bit for bit).

A URL (`http://`, `rtsp://`, ...) is first copied packet for packet into a local Matroska file
(`local_video`; no re-encoding, so the decoded frames are the source's), which then is read as a
file; it must end (a camera stream is `vad score-stream`'s job).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import av
import pandas as pd

from vad_core.errors import VADInputError
from vad_core.evaluation.metrics import clips_to_frames
from vad_core.features.extract import BackboneLike, extract_features
from vad_core.features.regions import RegionConfig
from vad_core.footage.clips import ClipConfig
from vad_core.footage.discover import Kind, VideoSource
from vad_core.footage.integrity import DECODE_ERRORS
from vad_core.footage.probe import probe_video
from vad_core.io.feature_tables import COLUMNS, LEGACY_METADATA, read_feature_matrix
from vad_core.io.store import MemoryTableStore
from vad_core.live.alerts import alert_intervals, boxes_from_rows
from vad_core.live.detector import LiveDetector

__all__ = [
    "TIMING_KEYS",
    "FeatureSetup",
    "VideoScores",
    "build_backbone",
    "check_backbone",
    "clip_config_from_spec",
    "feature_setup",
    "is_url",
    "local_video",
    "redact",
    "region_config_from_spec",
    "score_video",
]

TIMING_KEYS = ("total", "probe", "extract", "backbone", "decode", "score")
_KEY = "live/features.parquet"  # the one table of the run's private store
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class VideoScores(NamedTuple):
    """What scoring one video gives (see the module doc); `timings` has at least TIMING_KEYS."""

    rows: pd.DataFrame  # video_id, clip, start_frame, end_frame, tile, x, y, w, h, score
    clips: pd.DataFrame  # CLIP_COLUMNS
    frames: pd.DataFrame  # video_id, frame, score, anomalous
    alerts: pd.DataFrame  # ALERT_COLUMNS
    timings: dict[str, float]


def _spec_json(spec: dict[str, str], key: str) -> dict[str, Any]:
    raw = spec.get(key)
    if raw is None:
        raise VADInputError(
            f"live model's feature spec has no {key!r}: it cannot reproduce the training features "
            f"(spec keys: {sorted(spec)})"
        )
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise VADInputError(f"live model's feature spec: {key} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise VADInputError(f"live model's feature spec: {key} must be a JSON object, got {raw!r}")
    return value


def clip_config_from_spec(spec: dict[str, str]) -> ClipConfig:
    """The `ClipConfig` the training features were cut with (`spec["clip_config"]`, `ClipConfig.to_dict` JSON)."""
    values = _spec_json(spec, "clip_config")
    try:
        return ClipConfig(**values)
    except TypeError as exc:
        raise VADInputError(f"live model's feature spec: clip_config {values} is not a ClipConfig ({exc})") from None


def region_config_from_spec(spec: dict[str, str]) -> RegionConfig:
    """The `RegionConfig` of the training features (`spec["region_config"]`, `RegionConfig.key` JSON).

    A spec without the key comes from tables written before regions were configurable: tile
    crops (`LEGACY_METADATA`), as the up-to-date check reads them.
    """
    values = _spec_json({"region_config": LEGACY_METADATA["region_config"], **spec}, "region_config")
    try:
        return RegionConfig(**values)
    except TypeError as exc:
        raise VADInputError(
            f"live model's feature spec: region_config {values} is not a RegionConfig ({exc})"
        ) from None


def build_backbone(
    spec: dict[str, str], device: str | None = None, weights: str | os.PathLike[str] | None = None
) -> BackboneLike:
    """The backbone `spec["backbone"]` names (`load_backbone`), checked against the spec's weights
    sha256 and dimension: features of other weights would be scored as if they were the training's."""
    from vad_core.features.backbones import load_backbone

    name = spec.get("backbone")
    if not name:
        raise VADInputError(f"live model's feature spec names no backbone (spec keys: {sorted(spec)})")
    backbone = load_backbone(name, device=device, weights=weights)
    check_backbone(backbone, spec)
    return backbone


class FeatureSetup(NamedTuple):
    """What remakes a live model's training features: the backbone and the clip and region config."""

    backbone: BackboneLike
    clip_config: ClipConfig
    regions: RegionConfig


def feature_setup(
    spec: dict[str, str], device: str | None = None, backbone: BackboneLike | None = None
) -> FeatureSetup:
    """The spec's clip and region config, and `backbone` checked against the spec (None: built from it
    with `build_backbone` on `device`). `score_video` and `score_stream` both start here."""
    clip_config, regions = clip_config_from_spec(spec), region_config_from_spec(spec)
    if backbone is None:
        backbone = build_backbone(spec, device)
    else:
        check_backbone(backbone, spec)
    return FeatureSetup(backbone, clip_config, regions)


def check_backbone(backbone: BackboneLike, spec: dict[str, str]) -> None:
    """Refuse a backbone whose name, weights or dimension differ from the training features' spec."""
    wanted = {"backbone": backbone.name, "weights_sha256": backbone.weights_sha256, "dim": str(int(backbone.dim))}
    for key, have in wanted.items():
        if key in spec and str(spec[key]) != have:
            raise VADInputError(
                f"backbone {backbone.name!r}: {key} {have} differs from the live model's training features "
                f"({spec[key]}): these features would not be the ones the detector learned"
            )


def is_url(source: str | os.PathLike[str]) -> bool:
    """True for `<scheme>://...` other than `file://` (a local path otherwise)."""
    text = str(source)
    return bool(_URL.match(text)) and not text.lower().startswith("file://")


def _local_path(source: str | os.PathLike[str]) -> Path:
    text = str(source)
    return Path(urlparse(text).path) if text.lower().startswith("file://") else Path(text)


def _url_id(url: str) -> str:
    stem = Path(urlparse(url).path).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "stream"


def redact(url: str) -> str:
    """The URL without the password of its user info (`rtsp://user:***@host/...`), for messages and logs."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _copy_url(url: str, dest: Path) -> None:
    """Remux the URL's first video stream into `dest` (Matroska), packet by packet."""
    shown = redact(url)
    try:
        source = av.open(url, timeout=30.0)
    except (*DECODE_ERRORS, OSError) as exc:  # type: ignore[misc]  # mypy cannot unpack a tuple of classes here
        raise VADInputError(f"{shown}: cannot be opened ({str(exc).replace(url, shown)})") from None
    with source:
        if not source.streams.video:
            raise VADInputError(f"{shown}: has no video stream")
        stream = source.streams.video[0]
        try:
            with av.open(str(dest), "w", format="matroska") as out:
                copy = out.add_stream_from_template(stream)
                for packet in source.demux(stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.stream = copy
                    out.mux(packet)
        except DECODE_ERRORS as exc:
            raise VADInputError(f"{shown}: reading the stream failed ({str(exc).replace(url, shown)})") from None


@contextmanager
def local_video(
    source: str | os.PathLike[str], video_id: str | None = None, workdir: str | os.PathLike[str] | None = None
) -> Iterator[VideoSource]:
    """The video as a local `VideoSource`: a path as it is (a folder is a frame folder), a URL copied
    into a temporary file under `workdir` that is removed on exit. `video_id` defaults to the file's
    stem, the folder's name, or the URL path's stem."""
    if is_url(source):
        url = str(source)
        tmp = Path(tempfile.mkdtemp(prefix="vad-url-", dir=workdir))
        try:
            path = tmp / f"{_url_id(url)}.mkv"
            _copy_url(url, path)
            yield VideoSource(video_id or _url_id(url), path, "file")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    path = _local_path(source)
    if not path.exists():
        raise VADInputError(f"{path}: no such video file or frame folder")
    kind: Kind = "frames" if path.is_dir() else "file"
    yield VideoSource(video_id or (path.name if kind == "frames" else path.stem), path, kind)


class _TimedBackbone:
    """The backbone with the seconds spent inside `embed`/`embed_regions` counted; all else passes through."""

    def __init__(self, inner: BackboneLike) -> None:
        self._inner = inner
        self.seconds = 0.0
        self.name, self.dim, self.weights_sha256 = inner.name, inner.dim, inner.weights_sha256

    def _timed(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    def embed(self, clips: Any, resize: bool = True) -> Any:
        return self._timed(self._inner.embed, clips, resize=resize)

    def __getattr__(self, name: str) -> Any:
        # Only what the class does not define: `embed_regions`, `map_stride`, `to`, `device`, ...
        value = getattr(self._inner, name)
        if name == "embed_regions":
            return lambda *args, **kwargs: self._timed(value, *args, **kwargs)
        return value


def _check_layout(live: LiveDetector, meta: dict[str, str], where: str) -> None:
    n_tiles = int(meta["n_tiles"])
    if live.n_tiles and n_tiles != live.n_tiles:
        raise VADInputError(
            f"{where}: its {meta['width']}x{meta['height']} frames give {n_tiles} regions per clip under the "
            f"model's clip and region config, the detector knows {live.n_tiles}"
        )


def score_video(
    source: str | os.PathLike[str],
    live: LiveDetector,
    *,
    video_id: str | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    backbone: BackboneLike | None = None,
    batch_size: int = 8,
) -> VideoScores:
    """Score every clip of one video with `live` (see the module doc).

    `source`: a video file, a frame folder or a URL. `video_id`: the id the rows carry (and the
    row keys are hashed from); default as `local_video`. `device`: where the backbone runs.
    `progress(clips_done, clips_total)` is called as batches finish. `backbone`: an already
    loaded one (checked against the spec), else `build_backbone(live.feature_spec, device)`.
    `batch_size`: backbone inputs per `embed` call (the `clip_features` asset's default: 8).
    Raises `VADInputError` for an unreadable video, a model whose spec cannot rebuild the
    features, or a video whose frame size gives another number of regions than the detector's.
    """
    t0 = time.perf_counter()
    backbone, clip_config, regions = feature_setup(dict(live.feature_spec), device, backbone)
    timed = _TimedBackbone(backbone)
    with local_video(source, video_id) as video:
        t_probe = time.perf_counter()
        row = probe_video(video)
        probe_s = time.perf_counter() - t_probe
        if row["status"] != "ok":
            raise VADInputError(str(row["error"]))
        store = MemoryTableStore()

        def relay(event: dict) -> None:
            if progress is not None and event.get("event") in ("batch", "video_done"):
                progress(int(event["clips_done"]), int(event["clips_total"]))

        t_extract = time.perf_counter()
        extract_features(
            row, timed, clip_config, store, _KEY, device=device, batch_size=batch_size, callback=relay, regions=regions
        )
        extract_s = time.perf_counter() - t_extract
    meta = store.read_metadata(_KEY)
    _check_layout(live, meta, str(source))
    t_score = time.perf_counter()
    keys = store.read_table(_KEY, columns=[c for c in COLUMNS if c != "feature"]).to_pandas()
    scored = live.score(keys, read_feature_matrix(store, _KEY))
    frames = clips_to_frames(scored.clips, {meta["video_id"]: int(meta["n_frames"])})
    alerts = alert_intervals(scored.clips, boxes_from_rows(scored.rows), live.info.get("model_version", ""))
    score_s = time.perf_counter() - t_score
    timings = {
        "total": time.perf_counter() - t0,
        "probe": probe_s,
        "extract": extract_s,
        "backbone": timed.seconds,
        # Probing plus the extraction's wall time outside the backbone's calls: decoding, scaling
        # and cutting regions (the decoder thread overlaps the backbone; this is what it did not hide).
        "decode": probe_s + max(extract_s - timed.seconds, 0.0),
        "score": score_s,
    }
    return VideoScores(scored.rows, scored.clips, frames, alerts, timings)
