"""The cluster instance's pooled PostgreSQL storage against the cluster's real server: one process
reuses its connections instead of opening one per query (dagster-postgres' own storage, measured
beside it, opens at least one per query), and a pooled connection that died with a PostgreSQL
restart is replaced at checkout, so the next query succeeds."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance
from dagster_postgres import DagsterPostgresStorage
from sqlalchemy import event

from vad_pipeline.cluster.lifecycle import Cluster
from vad_pipeline.cluster.pg_storage import POOL_SIZE, pooled_engine

pytestmark = pytest.mark.cluster

QUERIES = 40


def connections_opened(engine, work) -> int:  # type: ignore[no-untyped-def]
    """DBAPI connections `engine` opens while `work()` runs (SQLAlchemy's pool `connect` event)."""
    opened: list[int] = []

    def count(*_args: object) -> None:
        opened.append(1)

    event.listen(engine, "connect", count)
    try:
        work()
    finally:
        event.remove(engine, "connect", count)
    return len(opened)


def engine_of(instance: DagsterInstance):  # type: ignore[no-untyped-def]
    """The engine the instance's run, event-log and schedule storages query through (one, pooled)."""
    engines = {
        id(s._engine): s._engine for s in (instance._run_storage, instance._event_storage, instance._schedule_storage)
    }  # type: ignore[attr-defined]
    assert len(engines) == 1
    return next(iter(engines.values()))


def test_the_cluster_instance_pools_its_connections(cluster: Cluster, cluster_env: dict) -> None:
    with DagsterInstance.get() as instance:
        engine = engine_of(instance)
        assert engine is pooled_engine(instance._run_storage.postgres_url, pool_size=POOL_SIZE)  # type: ignore[attr-defined]

        def queries() -> None:
            for _ in range(QUERIES):
                instance.get_runs(limit=1)
                instance.get_latest_materialization_events([])
                instance.all_instigator_state()

        pooled = connections_opened(engine, queries)
        assert pooled <= POOL_SIZE  # 120 queries, at most the pool's connections (0 if already open)
        plain = DagsterPostgresStorage(
            instance._run_storage.postgres_url,  # type: ignore[attr-defined]
            should_autocreate_tables=False,
        )
        opened = connections_opened(
            plain._run_storage._engine, lambda: [plain.run_storage.get_runs(limit=1) for _ in range(QUERIES)]
        )
        assert opened >= QUERIES  # dagster-postgres' NullPool: a new connection (a server process) per query


def test_a_pooled_connection_survives_a_postgres_restart(cluster: Cluster, cluster_env: dict) -> None:
    with DagsterInstance.get() as instance:
        engine = engine_of(instance)
        before = len(instance.get_runs())
        assert engine.pool.checkedin() >= 1  # an idle pooled connection, about to die
        cluster.stop("postgres")
        cluster.start("postgres")
        # pool_pre_ping: the dead connection is found at checkout and replaced; the query succeeds
        reopened = connections_opened(engine, lambda: instance.get_runs())
        assert reopened >= 1 and len(instance.get_runs()) == before
