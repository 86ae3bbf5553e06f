"""`vad demo`'s overhead line leaves out partition runs that found their tables up to date."""

from __future__ import annotations

import pytest

from vad_pipeline.cli.demo import PipelineSummary


def test_overhead_is_over_the_partitions_that_extracted() -> None:
    summary = PipelineSummary(
        "demo",
        partition_wall_s={"a": 12.0, "b": 9.0, "c": 4.0},
        partition_work_s={"a": 10.0, "b": 6.0, "c": 0.0},
        partition_skipped=["c"],  # extracted before by the sensor: 4 s of wall, no work
    )
    assert summary.overhead_per_partition_s == pytest.approx((2.0 + 3.0) / 2)
    assert summary.to_dict()["partition_skipped"] == ["c"]
    everything_skipped = PipelineSummary("demo", partition_wall_s={"c": 4.0}, partition_skipped=["c"])
    assert everything_skipped.overhead_per_partition_s is None
    assert PipelineSummary("demo").overhead_per_partition_s is None
