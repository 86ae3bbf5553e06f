"""Alerts: each run of consecutive anomalous clips of a video becomes one interval.

    alerts = alert_intervals(clips, boxes, model_version="3")    # -> DataFrame, ALERT_COLUMNS

`clips` is a decided clip table (`video_id, clip, start_frame, end_frame, score, tile,
anomalous`, e.g. `LiveScores.clips`); consecutive means consecutive clip indices of one video.
An interval runs from the first frame of its first clip to the last frame (inclusive) of its
last clip, and carries its peak clip's score, tile and that tile's box `(x, y, w, h)` in frame
pixels (-1s when the box is unknown, as for imported features). The same function serves the
batch path (`live_alerts` asset), `vad score` and `vad score-stream`, so all three agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from vad_core.errors import VADInputError

ALERT_COLUMNS = [
    "video_id",
    "first_frame",
    "last_frame",
    "first_clip",
    "last_clip",
    "peak_score",
    "peak_clip",
    "peak_tile",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "threshold",
    "model_version",
]
ALERT_DTYPES = {
    "video_id": "object",
    **{c: "int64" for c in ALERT_COLUMNS if c not in ("video_id", "peak_score", "threshold", "model_version")},
    "peak_score": "float64",
    "threshold": "float64",
    "model_version": "object",
}

Box = tuple[int, int, int, int]


def empty_alerts() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=ALERT_DTYPES[c]) for c in ALERT_COLUMNS})


def _box(boxes: Mapping[int, Box] | Sequence[Box] | None, tile: int) -> Box:
    if boxes is None:
        return (-1, -1, -1, -1)
    if isinstance(boxes, Mapping):
        found = boxes.get(tile)
        return tuple(int(v) for v in found) if found is not None else (-1, -1, -1, -1)  # type: ignore[return-value]
    return tuple(int(v) for v in boxes[tile]) if 0 <= tile < len(boxes) else (-1, -1, -1, -1)  # type: ignore[return-value]


def alert_intervals(
    clips: pd.DataFrame,
    boxes: Mapping[int, Box] | Sequence[Box] | None = None,
    model_version: str = "",
) -> pd.DataFrame:
    """One row per run of consecutive anomalous clips of each video (ALERT_COLUMNS), in video and time order.

    `boxes` maps a tile index to its box (a list indexed by tile, or a dict); None leaves -1s.
    """
    need = ["video_id", "clip", "start_frame", "end_frame", "score", "tile", "anomalous"]
    missing = [c for c in need if c not in clips.columns]
    if missing:
        raise VADInputError(f"alerts: clip table misses column(s) {missing}")
    table = clips.sort_values(["video_id", "clip"], kind="stable").reset_index(drop=True)
    flagged = table[table["anomalous"].astype(bool).to_numpy()]
    if flagged.empty:
        return empty_alerts()
    out = []
    for vid, part in flagged.groupby("video_id", sort=True):
        clip_idx = part["clip"].to_numpy(np.int64)
        # A new interval starts wherever the clip index jumps by more than one.
        run_id = np.concatenate([[0], np.cumsum(np.diff(clip_idx) > 1)])
        for _, run in part.groupby(run_id, sort=True):
            peak = run.iloc[int(np.argmax(run["score"].to_numpy(np.float64)))]
            x, y, w, h = _box(boxes, int(peak["tile"]))
            out.append(
                {
                    "video_id": str(vid),
                    "first_frame": int(run["start_frame"].iloc[0]),
                    "last_frame": int(run["end_frame"].iloc[-1]) - 1,  # end_frame is exclusive
                    "first_clip": int(run["clip"].iloc[0]),
                    "last_clip": int(run["clip"].iloc[-1]),
                    "peak_score": float(peak["score"]),
                    "peak_clip": int(peak["clip"]),
                    "peak_tile": int(peak["tile"]),
                    "box_x": x,
                    "box_y": y,
                    "box_w": w,
                    "box_h": h,
                    "threshold": float(peak["threshold"]) if "threshold" in run.columns else float("nan"),
                    "model_version": str(model_version),
                }
            )
    return pd.DataFrame(out, columns=ALERT_COLUMNS).astype(ALERT_DTYPES)


def boxes_from_rows(rows: pd.DataFrame) -> dict[int, Box]:
    """Tile index -> box from a feature-row table's `tile, x, y, w, h` columns (first row of each tile)."""
    if not {"tile", "x", "y", "w", "h"} <= set(rows.columns):
        return {}
    first = rows.drop_duplicates("tile")
    return {
        int(t): (int(x), int(y), int(w), int(h))
        for t, x, y, w, h in first[["tile", "x", "y", "w", "h"]].itertuples(index=False)
    }


__all__ = ["ALERT_COLUMNS", "ALERT_DTYPES", "alert_intervals", "boxes_from_rows", "empty_alerts"]
