"""Which stored feature tables count: the current manifest decides, never the history of the store.

Footage changes under a running pipeline: videos are deleted, corrupted, replaced, renamed.
Their feature tables stay behind in the store (and their Dagster partitions in the instance),
and a model trained on "every table there is" would train on videos that no longer exist.
`feature_inventory` sorts every table under a prefix against the manifest:

- current: the table of a readable manifest video, written for the video's present content
  (the table's `video_fingerprint` equals the manifest row's `fingerprint`);
- outdated: a readable manifest video whose table was written for other content (it must be
  re-extracted before it counts);
- missing: a readable manifest video with no table yet;
- stale: a table whose video is unreadable now, excluded by the spec, or gone. A stale table
  whose content fingerprint matches a current video under another id (a renamed file, or an id
  from an older naming rule) says so: its features are not quietly reused under the new id.

Nothing here deletes anything: the pipeline reports stale tables and removes them only when
asked (its cleanup job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from vad_core.errors import VADInputError
from vad_core.io.feature_tables import feature_key
from vad_core.io.store import TableStore

__all__ = ["FeatureInventory", "StaleTable", "feature_inventory", "table_video_id"]

_SUFFIX = ".parquet"


@dataclass(frozen=True)
class StaleTable:
    """A stored table no current video owns: its key, the id it was written under, and why."""

    key: str
    video_id: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "video_id": self.video_id, "reason": self.reason}


@dataclass(frozen=True)
class FeatureInventory:
    """The tables under a prefix sorted against a manifest (see the module doc).

    `current`: `{video_id: key}`; `outdated`: `{video_id: reason}`; `missing`: video ids;
    `stale`: `StaleTable`s, sorted by key.
    """

    current: dict[str, str] = field(default_factory=dict)
    outdated: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    stale: tuple[StaleTable, ...] = ()

    @property
    def wanted(self) -> tuple[str, ...]:
        """Every readable manifest video the inventory was asked about, sorted."""
        return tuple(sorted({*self.current, *self.outdated, *self.missing}))


def table_video_id(prefix: str, key: str) -> str:
    """The video id a table key stands for: `<prefix>/<id>.parquet` -> `<id>`."""
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    if not key.startswith(base) or not key.endswith(_SUFFIX):
        raise VADInputError(f"feature table key {key!r} is not under {prefix!r} or not a .parquet table")
    return key[len(base) : -len(_SUFFIX)]


def _fingerprint_of(store: TableStore, key: str) -> str | None:
    try:
        return store.read_metadata(key).get("video_fingerprint") or None
    except VADInputError:
        return None  # unreadable: treated as written for no known content


def feature_inventory(
    store: TableStore,
    prefix: str,
    manifest: pd.DataFrame,
    keep: Callable[[str], bool] | None = None,
) -> FeatureInventory:
    """Sort every feature table under `prefix` of `store` against `manifest` (design.md columns).

    `keep(video_id)` narrows the videos that count (a dataset spec's include globs); None keeps
    every manifest row. Reads table footers only, never the features.
    """
    keep = keep or (lambda _vid: True)
    rows = {str(r["video_id"]): r for r in manifest.to_dict("records")}
    wanted = {vid: r for vid, r in rows.items() if r["status"] == "ok" and keep(vid)}
    by_fingerprint = {str(r["fingerprint"]): vid for vid, r in wanted.items() if not pd.isna(r["fingerprint"])}
    current: dict[str, str] = {}
    outdated: dict[str, str] = {}
    missing: list[str] = []
    for vid, row in sorted(wanted.items()):
        key = feature_key(prefix, vid)
        if not store.exists(key):
            missing.append(vid)
            continue
        written_for = _fingerprint_of(store, key)
        if written_for == row["fingerprint"]:
            current[vid] = key
        else:
            was = (written_for or "unknown")[:12]
            outdated[vid] = (
                f"written for other content of {row['path']} (fingerprint {was}, now {str(row['fingerprint'])[:12]})"
            )
    stale: list[StaleTable] = []
    wanted_keys = {feature_key(prefix, vid) for vid in wanted}
    for key in store.list(prefix, suffix=_SUFFIX):
        if key in wanted_keys:
            continue
        vid = table_video_id(prefix, key)
        row = rows.get(vid)  # type: ignore[assignment]  # None when the manifest lacks the id
        if row is not None and row["status"] != "ok":
            reason = f"its video {row['path']} is unreadable now: {row['error']}"
        elif row is not None:
            reason = f"its video {row['path']} is excluded by the dataset spec"
        else:
            reason = "no video with this id is in the manifest (deleted or renamed)"
            other = by_fingerprint.get(_fingerprint_of(store, key) or "")
            if other is not None:
                reason = (
                    f"the same video is now {other!r} ({wanted[other]['path']}); features stored under the old "
                    f"id {vid!r} are not reused"
                )
        stale.append(StaleTable(key, vid, reason))
    return FeatureInventory(current, outdated, tuple(missing), tuple(stale))
