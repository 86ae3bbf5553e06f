"""A report never outlives the scores it describes.

Every scoring asset calls `invalidate_report` before it writes new scores, so a run that
rescored and then failed leaves no report at all rather than one that disagrees with the
tables; the evaluation asset (and `vad report`) record `scores_fingerprint` in report.json, and
the `report_matches_scores` check compares it with the tables as stored now.
"""

from __future__ import annotations

import hashlib

from vad_core.io.store import TableStore
from vad_pipeline.resources.storage import DatasetKeys


def score_keys(keys: DatasetKeys) -> tuple[str, ...]:
    """The tables a report is built from that scoring rewrites."""
    return (keys.segment_scores, keys.tile_scores, keys.frame_scores, keys.baseline_scores)


def scores_fingerprint(store: TableStore, keys: DatasetKeys) -> str:
    """sha256 over the stored score tables' digests (a missing table counts as missing)."""
    h = hashlib.sha256()
    for key in score_keys(keys):
        h.update(f"{key}\t{store.sha256(key) if store.exists(key) else 'missing'}\n".encode())
    return h.hexdigest()


def report_keys(store: TableStore, keys: DatasetKeys) -> list[str]:
    """report.json, report.md, report.html, promotion.json and every plot stored beside them."""
    plots = store.list(keys.report_plot("").rstrip("/"))
    return [keys.report_json, keys.report_md, keys.report_html, keys.promotion, *plots]


def invalidate_report(store: TableStore, keys: DatasetKeys) -> list[str]:
    """Delete the stored report (JSON, Markdown, HTML, the promotion decided on it, plots); returns the keys
    that were there."""
    present = [k for k in report_keys(store, keys) if store.exists(k)]
    for key in present:
        store.delete(key)
    return present


__all__ = ["invalidate_report", "report_keys", "score_keys", "scores_fingerprint"]
