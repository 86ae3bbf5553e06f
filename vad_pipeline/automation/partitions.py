"""Partitions: one dynamic partition per video, keyed by its `video_id`.

Video ids are paths under the footage root without extension (`testing/frames/01`), which
Dagster accepts as partition keys; the sensor (or the demo runner) adds them as footage appears.
"""

from __future__ import annotations

from dagster import DynamicPartitionsDefinition

VIDEO_PARTITIONS_NAME = "videos"

video_partitions = DynamicPartitionsDefinition(name=VIDEO_PARTITIONS_NAME)


__all__ = ["VIDEO_PARTITIONS_NAME", "video_partitions"]
