"""The dataset resource: which dataset spec (YAML) the pipeline runs on."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from vad_pipeline.specs import DatasetSpec, load_spec


class DatasetResource(ConfigurableResource):
    """Which dataset spec the pipeline runs on: a YAML path or a name in `datasets/`.

    None reads `VAD_DATASET` at use time, then falls back to the demo spec.
    """

    spec: str | None = None

    def load(self, home: Path | None = None) -> DatasetSpec:
        return load_spec(self.spec, home=home)


__all__ = ["DatasetResource"]
