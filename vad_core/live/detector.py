"""`LiveDetector`: the deployed detector plus what scoring new footage alone needs, saved as two files.

    live = LiveDetector(detector, DecisionRule.from_clip_scores(train_clips, k), feature_spec)
    result = live.score(rows, features)        # rows: (N,) keys + tile; features (N, D)
    result.rows["score"], result.clips[["score", "tile", "threshold", "anomalous"]]
    paths = save_live_detector(live, folder)   # detector.pt + live.json (with detector.pt's sha256)
    live = load_live_detector(folder)          # checks the format and the checksum first

A row's score is `Detector.score_new` (the mean of every member's score) with the row keys of
`vad_core.scoring.rows.row_keys_for`, so a video the detector never saw scores exactly as the
`segment_scores` asset scores it; a clip's score is the max over its tiles (arg-max tile kept)
and its decision is the stored training-batch rule (`vad_core.live.decision`), not the paper's
per-batch rule, so one clip can be decided alone. `feature_spec` records how the feature rows
were made (backbone, weights, clip and region config: the feature tables' metadata) so a raw
video can be turned into the same rows; `info` carries provenance (model name, version, run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from vad_core.diffusion.detector import Detector, detector_bytes, load_detector
from vad_core.errors import VADInputError
from vad_core.io.hashing import sha256_bytes
from vad_core.live.decision import DecisionRule
from vad_core.scoring.rows import clip_scores, row_keys_for

LIVE_FORMAT = "vad_core.live/1"
DETECTOR_FILE = "detector.pt"
LIVE_FILE = "live.json"
# The feature-table metadata a live model must reproduce when it extracts features itself.
FEATURE_SPEC_KEYS = ("backbone", "weights_sha256", "dim", "clip_config", "region_config", "n_tiles", "tile_boxes")
CLIP_COLUMNS = ["video_id", "clip", "start_frame", "end_frame", "score", "tile", "threshold", "anomalous"]


class LiveScores(NamedTuple):
    """What scoring a set of feature rows gives."""

    rows: pd.DataFrame  # the input rows (N) with `score` added
    clips: pd.DataFrame  # one row per (video_id, clip): CLIP_COLUMNS, sorted by video and clip


@dataclass
class LiveDetector:
    """A `Detector`, its training-batch decision rule, and the feature spec and provenance to serve it."""

    detector: Detector
    rule: DecisionRule
    feature_spec: dict[str, str] = field(default_factory=dict)  # FEATURE_SPEC_KEYS from the feature tables
    info: dict[str, str] = field(default_factory=dict)  # model_name, model_version, run ids, dataset

    @property
    def dim(self) -> int:
        return self.detector.dim

    @property
    def n_tiles(self) -> int:
        return self.detector.n_tiles

    def score_rows(self, features: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
        """Scores `(N,)` of feature rows `(N, D)` keyed by `rows` (`video_id`, `clip`, `tile`)."""
        if len(rows) != len(features):
            raise VADInputError(f"live scoring: {len(rows)} key rows but {len(features)} feature rows")
        if "tile" not in rows.columns:
            raise VADInputError("live scoring: rows need a 'tile' column")
        tiles = rows["tile"].to_numpy(np.int64)
        if self.n_tiles and len(tiles) and (tiles.min() < 0 or tiles.max() >= self.n_tiles):
            raise VADInputError(
                f"live scoring: tile index out of range 0..{self.n_tiles - 1} (got {tiles.min()}..{tiles.max()})"
            )
        return self.detector.score_new(features, tiles if self.n_tiles else None, row_keys_for(rows))

    def score(self, rows: pd.DataFrame, features: np.ndarray) -> LiveScores:
        """Row scores, then clip scores (max over tiles), the stored threshold and each clip's decision."""
        need = ["video_id", "clip", "start_frame", "end_frame", "tile"]
        missing = [c for c in need if c not in rows.columns]
        if missing:
            raise VADInputError(f"live scoring: rows miss column(s) {missing}")
        scored = rows.reset_index(drop=True).assign(score=self.score_rows(features, rows.reset_index(drop=True)))
        clips = clip_scores(scored)
        clips = clips.assign(
            threshold=np.full(len(clips), self.rule.threshold), anomalous=self.rule.decide(clips["score"].to_numpy())
        )
        return LiveScores(scored, clips[CLIP_COLUMNS])

    def describe(self) -> dict[str, Any]:
        return {
            "format": LIVE_FORMAT,
            "rule": self.rule.to_dict(),
            "threshold": self.rule.threshold,
            "feature_spec": dict(self.feature_spec),
            "info": dict(self.info),
            "detector": self.detector.describe(),
        }


def feature_spec_from_metadata(meta: dict[str, str]) -> dict[str, str]:
    """The FEATURE_SPEC_KEYS of a feature table's metadata (missing ones left out)."""
    return {k: str(meta[k]) for k in FEATURE_SPEC_KEYS if k in meta}


def live_model_files(live: LiveDetector) -> dict[str, bytes]:
    """{DETECTOR_FILE: checkpoint bytes, LIVE_FILE: JSON with rule, spec, info and the checkpoint's sha256}.

    Write DETECTOR_FILE first and LIVE_FILE last: a reader of a half-replaced pair then fails the
    checksum instead of mixing an old rule with a new checkpoint.
    """
    blob = detector_bytes(live.detector)
    meta = {
        "format": LIVE_FORMAT,
        "detector_sha256": sha256_bytes(blob),
        "rule": live.rule.to_dict(),
        "feature_spec": dict(live.feature_spec),
        "info": dict(live.info),
        "dim": live.dim,
        "n_tiles": live.n_tiles,
    }
    return {DETECTOR_FILE: blob, LIVE_FILE: json.dumps(meta, indent=2, sort_keys=True).encode()}


def save_live_detector(live: LiveDetector, folder: str | os.PathLike[str]) -> dict[str, str]:
    """Write `live_model_files` into `folder`, each beside itself then renamed (never half a file).

    Returns {"detector": path, "live": path}.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"detector": out / DETECTOR_FILE, "live": out / LIVE_FILE}
    files = live_model_files(live)
    for path in (paths["detector"], paths["live"]):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(files[path.name])
        os.replace(tmp, path)
    return {k: str(v) for k, v in paths.items()}


def load_live_detector(folder: str | os.PathLike[str], device: str | None = None) -> LiveDetector:
    """A `LiveDetector` from `save_live_detector`'s folder (see `live_model_from_files`)."""
    root = Path(folder)
    files = {}
    for name in (LIVE_FILE, DETECTOR_FILE):
        if not (root / name).is_file():
            raise VADInputError(f"live model {root}: {name} is missing")
        files[name] = (root / name).read_bytes()
    return live_model_from_files(files, device=device, where=str(root))


def live_model_from_files(
    files: dict[str, bytes], device: str | None = None, where: str = "live model"
) -> LiveDetector:
    """A `LiveDetector` from `live_model_files`' two files; a clear error naming `where` on a missing
    file, another format or a checkpoint whose sha256 differs from the one recorded beside it."""
    missing = [n for n in (LIVE_FILE, DETECTOR_FILE) if n not in files]
    if missing:
        raise VADInputError(f"live model {where}: {', '.join(missing)} missing")
    try:
        meta = json.loads(files[LIVE_FILE])
    except ValueError as exc:
        raise VADInputError(f"live model {where}: {LIVE_FILE} unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != LIVE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise VADInputError(f"live model {where}: format {found!r}, expected {LIVE_FORMAT!r}")
    blob = files[DETECTOR_FILE]
    if sha256_bytes(blob) != meta.get("detector_sha256"):
        raise VADInputError(f"live model {where}: {DETECTOR_FILE} sha256 differs from the one recorded in {LIVE_FILE}")
    detector = load_detector(blob, device=device, name=f"{where}/{DETECTOR_FILE}")
    return LiveDetector(
        detector,
        DecisionRule.from_dict(meta.get("rule") or {}),
        feature_spec={str(k): str(v) for k, v in (meta.get("feature_spec") or {}).items()},
        info={str(k): str(v) for k, v in (meta.get("info") or {}).items()},
    )


__all__ = [
    "CLIP_COLUMNS",
    "DETECTOR_FILE",
    "FEATURE_SPEC_KEYS",
    "LIVE_FILE",
    "LIVE_FORMAT",
    "LiveDetector",
    "LiveScores",
    "feature_spec_from_metadata",
    "live_model_files",
    "live_model_from_files",
    "load_live_detector",
    "save_live_detector",
]
