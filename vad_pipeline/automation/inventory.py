"""The dataset's inventory as the pipeline sees it: the current manifest decides which feature
tables and video partitions count (`vad_core.features.inventory`), and what is stale.

Shared by the `feature_index` asset, its staleness check, the retraining schedule and the
cleanup job, so that all four agree on what "current" means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from vad_core.errors import VADInputError
from vad_core.features.inventory import FeatureInventory, feature_inventory
from vad_core.io.store import TableStore
from vad_pipeline.resources.storage import DatasetKeys
from vad_pipeline.specs import DatasetSpec

CLEANUP_HINT = "run the cleanup_stale_job to delete them"


@dataclass(frozen=True)
class DatasetInventory:
    """`features`: the tables sorted against the manifest; `stale_partitions`: `{partition: reason}`
    for video partitions no readable manifest video of the spec has."""

    features: FeatureInventory
    stale_partitions: dict[str, str]

    @property
    def stale_count(self) -> int:
        return len(self.features.stale) + len(self.stale_partitions)

    def summary(self, limit: int = 10) -> str:
        """One line naming what is stale (or that nothing is)."""
        parts = []
        if self.features.stale:
            ids = [t.video_id for t in self.features.stale]
            parts.append(
                f"{len(ids)} stale feature tables ({', '.join(ids[:limit])}{' ...' if len(ids) > limit else ''})"
            )
        if self.stale_partitions:
            ids = sorted(self.stale_partitions)
            parts.append(
                f"{len(ids)} stale video partitions ({', '.join(ids[:limit])}{' ...' if len(ids) > limit else ''})"
            )
        return "; ".join(parts) + f": left out of training and scoring; {CLEANUP_HINT}" if parts else "nothing stale"


def read_manifest(store: TableStore, keys: DatasetKeys) -> pd.DataFrame:
    """The stored manifest; a one-line error saying to materialize it when it is missing."""
    try:
        return store.read_frame(keys.manifest)[0]
    except VADInputError:
        where = store.location(keys.manifest)
        raise VADInputError(
            f"video_manifest table {where} is missing or unreadable: materialize video_manifest first"
        ) from None


def dataset_inventory(
    store: TableStore, keys: DatasetKeys, spec: DatasetSpec, partitions: Iterable[str] = ()
) -> DatasetInventory:
    """Sort the dataset's feature tables and `partitions` against its stored manifest."""
    manifest = read_manifest(store, keys)
    features = feature_inventory(store, keys.features_prefix, manifest, keep=spec.includes)
    wanted = set(features.wanted)
    status = {
        str(v): (str(p), s, e)
        for v, p, s, e in manifest[["video_id", "path", "status", "error"]].itertuples(index=False)
    }
    stale: dict[str, str] = {}
    for part in sorted(set(partitions) - wanted):
        if part in status and status[part][1] != "ok":
            stale[part] = f"its video {status[part][0]} is unreadable now: {status[part][2]}"
        elif part in status or not spec.includes(part):
            stale[part] = "excluded by the dataset spec"
        else:
            stale[part] = "no video with this id is in the manifest (deleted or renamed)"
    return DatasetInventory(features, stale)


__all__ = ["CLEANUP_HINT", "DatasetInventory", "dataset_inventory", "read_manifest"]
