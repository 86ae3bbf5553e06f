"""The storage resource: where a dataset's tables, checkpoint and report live, by key.

`VadStorage.store()` is the `vad_core.io.store.TableStore` every asset, sensor and schedule reads
and writes through; `DatasetKeys` fixes the layout under it (design.md). Assets name outputs by
key and never touch a path for them, so another backend (an object store) is a different store,
not an edit of the assets: `location` (or `VAD_STORE`) is any location `vad_core.io.store.open_store`
knows, a local folder by default or `s3://bucket/prefix`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dagster import ConfigurableResource

from vad_core.errors import VADInputError
from vad_core.io.feature_tables import feature_key
from vad_core.io.store import TableStore, join_key, open_store
from vad_pipeline.specs import default_home

LIVE_TABLES = ("clips", "frames", "alerts")


@dataclass(frozen=True)
class DatasetKeys:
    """The keys of one dataset's outputs: `<dataset>/...`, the layout README.md documents."""

    dataset: str

    def _key(self, *parts: str) -> str:
        return join_key(self.dataset, *parts)

    @property
    def manifest(self) -> str:
        return self._key("video_manifest.parquet")

    @property
    def ground_truth(self) -> str:
        return self._key("ground_truth.parquet")

    @property
    def features_prefix(self) -> str:
        return self._key("features")

    def features(self, video_id: str) -> str:
        """`<dataset>/features/<video_id>.parquet` (sub-folders of the id kept)."""
        return feature_key(self.features_prefix, video_id)

    @property
    def feature_index(self) -> str:
        return self._key("feature_index.parquet")

    @property
    def denoiser(self) -> str:
        return self._key("denoiser", "denoiser.pt")

    @property
    def denoiser_info(self) -> str:
        """JSON beside the checkpoint: fingerprints, figures and the MLflow run/model version."""
        return self._key("denoiser", "denoiser.json")

    @property
    def loss_curve(self) -> str:
        return self._key("denoiser", "loss_curve.png")

    @property
    def segment_scores(self) -> str:
        return self._key("scores", "segment_scores.parquet")

    @property
    def tile_scores(self) -> str:
        """Companion of the segment scores: the score of every (clip, tile), for localization."""
        return self._key("scores", "segment_tile_scores.parquet")

    @property
    def frame_scores(self) -> str:
        return self._key("scores", "frame_scores.parquet")

    @property
    def baseline_scores(self) -> str:
        return self._key("scores", "baseline_scores.parquet")

    @property
    def report_json(self) -> str:
        return self._key("report", "report.json")

    @property
    def report_md(self) -> str:
        return self._key("report", "report.md")

    @property
    def report_html(self) -> str:
        """The report as one HTML page with its plots embedded (open it in a browser, or in MLflow)."""
        return self._key("report", "report.html")

    @property
    def promotion(self) -> str:
        """The challenger's promotion decision beside the report it was judged on (part of the report)."""
        return self._key("report", "promotion.json")

    def report_plot(self, name: str) -> str:
        return self._key("report", "plots", name)

    def footage_state(self, digest: str) -> str:
        """`<dataset>/automation/footage_<digest>.json`: the new-footage sensor's per-video fingerprints."""
        return self._key("automation", f"footage_{digest}.json")

    def live_model(self, slot: str, file: str) -> str:
        """`<dataset>/models/<slot>/<file>`: a live model's files (`vad_core.live.live_model_files`) under the
        slot `challenger` (the newest trained) or `champion` (the promoted one the live assets score with)."""
        if slot not in ("challenger", "champion"):
            raise ValueError(f"live model slot must be 'challenger' or 'champion', got {slot!r}")
        return self._key("models", slot, file)

    def live(self, video_id: str, table: str) -> str:
        """`<dataset>/live/<video_id>/<table>.parquet`: one video's live-scoring tables, `table` one of
        LIVE_TABLES (`clips`: clip scores and decisions; `frames`: frame scores; `alerts`: alert intervals)."""
        if table not in LIVE_TABLES:
            raise ValueError(f"live table must be one of {LIVE_TABLES}, got {table!r}")
        parts = PurePosixPath(str(video_id).replace("\\", "/")).parts
        if not parts or any(p in ("", ".", "..") for p in parts) or str(video_id).startswith("/"):
            raise VADInputError(f"video_id {video_id!r} cannot name a live table (empty, absolute or '..')")
        return self._key("live", *parts, f"{table}.parquet")

    def study(self, name: str) -> str:
        """`<dataset>/study/<name>` (results tables, comparison.md, label_free.json, figures/<png>)."""
        return self._key("study", name)


class VadStorage(ConfigurableResource):
    """Every table, checkpoint and report of a dataset lives under `<location>/<dataset name>/`.

    `home` (default `VAD_HOME`, else `./vad_home`) is the local folder of the instance state and,
    by default, of the tables. `location` (default `VAD_STORE`) puts the tables elsewhere: any
    location `vad_core.io.store.open_store` knows, e.g. `s3://bucket/prefix` (the cluster profile's
    object store). Both are read when the resource is used, so a test or a shell can point them
    elsewhere. All writes are atomic (see `vad_core.io.store`).
    """

    home: str | None = None
    location: str | None = None

    def root(self) -> Path:
        """The local folder of the instance state (Dagster home, MLflow store, logs) and the tables."""
        return Path(self.home).expanduser().resolve() if self.home else default_home()

    def store_location(self) -> str:
        """Where the tables live: `location`, else `VAD_STORE`, else the local `root()`."""
        return self.location or os.environ.get("VAD_STORE") or str(self.root())

    def store(self) -> TableStore:
        return open_store(self.store_location())

    def dataset_keys(self, dataset: str) -> DatasetKeys:
        return DatasetKeys(dataset)


__all__ = ["LIVE_TABLES", "DatasetKeys", "VadStorage"]
