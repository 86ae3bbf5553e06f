"""The demo dataset on the cluster profile (2 Celery workers, S3 tables, Postgres instance, MLflow
server) gives the local profile's answers: byte-identical feature tables, equal report AUCs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, instance_for_test

from tests.cluster.conftest import BACKBONE, QUICK, environment
from vad_pipeline.cli.demo import PipelineSummary, materialize_all
from vad_pipeline.cluster.lifecycle import Cluster
from vad_pipeline.definitions import make_definitions
from vad_pipeline.resources import BackboneResource, DatasetResource, RecordingTracker, VadStorage
from vad_pipeline.specs import ensure_footage, load_spec

pytestmark = pytest.mark.cluster


def aucs(report: dict) -> dict[str, float]:
    return {name: r["metrics"]["roc_auc"] for name, r in report["scorers"].items() if r.get("metrics")}


def test_demo_on_the_cluster_equals_the_local_profile(
    cluster: Cluster, cluster_demo: PipelineSummary, tmp_path: Path
) -> None:
    env = cluster.env()
    home = Path(env["VAD_HOME"])
    spec = load_spec("demo", home=home)
    ensure_footage(spec)  # shared by both runs: same paths, so the tables' metadata match too

    # Local profile: in this process, SQLite instance, tables on local disk.
    local_storage = VadStorage(home=str(home), location=str(tmp_path / "local"))
    resources = {
        "storage": local_storage,
        "dataset": DatasetResource(spec="demo"),
        "backbone": BackboneResource(name=BACKBONE, device="cpu"),
        "tracker": RecordingTracker(name="same-answers"),
    }
    with environment({"VAD_HOME": str(home)}), instance_for_test() as instance:
        local = materialize_all(make_definitions(resources), instance, spec, local_storage, QUICK)

    # Cluster profile: runs submitted to the webserver, queued in Postgres, executed by Celery.
    remote = cluster_demo
    with environment(env):
        storage = VadStorage()
        with DagsterInstance.get() as instance:
            workers, threads, launched = set(), set(), set()
            for run_id in remote.run_ids:
                run = instance.get_run_by_id(run_id)
                assert run is not None
                launched.add("dagster-celery/task_id" in run.tags)  # started by the CeleryRunLauncher
                for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records:
                    meta = record.event_log_entry.dagster_event.event_specific_data.metadata
                    if "Celery worker" in meta and run.job_name == "features_job":
                        workers.add(meta["Celery worker"].value)
                materialized = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
                for record in materialized.records:
                    data = record.event_log_entry.dagster_event.step_materialization_data.materialization
                    if "torch_threads" in data.metadata:
                        threads.add(data.metadata["torch_threads"].value)
        store = storage.store()
        assert store.location("demo/x").startswith("s3://vad/tables/")

        keys = local_storage.store().list("demo/features", ".parquet")
        assert len(keys) == 10 and store.list("demo/features", ".parquet") == keys
        for key in keys:
            assert store.sha256(key) == local_storage.store().sha256(key), key

    assert local.report is not None and remote.report is not None
    assert aucs(remote.report) == aucs(local.report)
    assert len(aucs(local.report)) >= 5 and 0.5 < aucs(local.report)["knn"] <= 1.0
    # Real fan-out: both step workers extracted, each with one torch thread (2 cores / 2 workers).
    assert launched == {True}
    assert {w.split("@")[0] for w in workers} == {"vad-cpu-0", "vad-cpu-1"}
    assert threads == {1}
