"""What the cluster's servers run while idle: no MLflow job runner (the pipeline has no server-side jobs)."""

from __future__ import annotations

from tests.cluster.conftest import pgrep
from vad_pipeline.cluster.lifecycle import Cluster


def test_the_tracking_server_runs_without_its_job_runner(cluster: Cluster) -> None:
    group = str(cluster.table.processes["mlflow"].pgid)
    # the server itself is in the group (so an empty answer below is not pgrep looking elsewhere)
    assert pgrep("-g", group, "-f", "uvicorn"), "no uvicorn process in the MLflow server's group"
    assert pgrep("-g", group, "-f", "huey_consumer|jobs._job_runner") == []
