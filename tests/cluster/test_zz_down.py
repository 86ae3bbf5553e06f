"""Last in the package: `down` stops every process the cluster started, and pgrep finds none of them."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import pgrep
from vad_pipeline.cluster.lifecycle import Cluster

pytestmark = pytest.mark.cluster


def test_down_leaves_no_process(cluster: Cluster) -> None:
    groups = {name: p.pgid for name, p in cluster.table.processes.items()}
    assert {"postgres", "redis", "s3", "mlflow", "daemon", "webserver", "worker-runs", "worker-cpu-0"} <= set(groups)
    pg_dir, root = cluster.state["pg_dir"], str(cluster.root)
    assert all(pgrep("-g", str(pgid)) for pgid in groups.values())  # all up before
    assert cluster.down(echo=lambda _line: None) == []
    for name, pgid in groups.items():
        assert pgrep("-g", str(pgid)) == [], f"{name}: processes left in group {pgid}"
    assert pgrep("-f", root) == [] and pgrep("-f", pg_dir) == []
    assert not cluster.state_file.exists() and not cluster.env_file.exists()
