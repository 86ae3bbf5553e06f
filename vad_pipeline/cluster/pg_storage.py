"""dagster-postgres' instance storage with each process's connections pooled (the cluster profile).

`dagster_postgres.DagsterPostgresStorage` opens its engines with SQLAlchemy's `NullPool`: every
query of every Dagster process opens a new PostgreSQL connection, i.e. a forked server process and
a SCRAM handshake (about 3 ms of CPU on each side here). Only dagster-webserver pools
(`optimize_for_webserver`). Measured on the 2-core machine (benchmarks/cluster.py, 8 Ped2 videos,
`log_connections`): 4,300 connections in 6 minutes, over half from the daemon's idle polling (8-9
a second), the rest from the run and step workers (about 35 per step) and the benchmark's own
polling. On a machine whose cores all extract features, that CPU comes out of the extraction.

`PooledPostgresStorage` is the same storage (same tables, same config, same migrations) whose three
sub-storages share one pooled engine per process: `pool_size` connections held open, `pool_pre_ping`
so a connection that died with a PostgreSQL restart is replaced at checkout instead of failing the
query (the cluster's fault test restarts PostgreSQL with runs queued), and `pool_recycle`. The engine
is keyed by process id: a forked child (Celery's prefork pool) never uses its parent's sockets.
Selected in `vad_pipeline/cluster/dagster.yaml` through Dagster's `storage: custom:` extension point.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast

import sqlalchemy
from dagster import Field, IntSource
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

__all__ = ["PooledPostgresStorage", "pooled_engine"]

# Connections each process keeps open (the daemon's threads poll one at a time, a Celery task is one
# thread); more are opened under contention, up to MAX_OVERFLOW, and closed when returned.
POOL_SIZE = 2
MAX_OVERFLOW = 10
# Seconds after which a pooled connection is replaced (bounds a backend's memory growth).
POOL_RECYCLE_S = 3600

_ENGINES: dict[tuple[int, str, int, int, int], sqlalchemy.engine.Engine] = {}
_LOCK = threading.Lock()


def pooled_engine(
    postgres_url: str,
    token_provider: Any = None,
    pool_size: int = POOL_SIZE,
    max_overflow: int = MAX_OVERFLOW,
    pool_recycle: int = POOL_RECYCLE_S,
) -> sqlalchemy.engine.Engine:
    """This process's pooled engine for `postgres_url` (one per process id and settings)."""
    key = (os.getpid(), postgres_url, pool_size, max_overflow, pool_recycle)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            # A fork inherits its parent's entries: forget them without closing the parent's sockets.
            for stale in [k for k in _ENGINES if k[0] != key[0]]:
                _ENGINES.pop(stale).dispose(close=False)
            engine = create_pg_engine(
                postgres_url,
                token_provider,
                isolation_level="AUTOCOMMIT",  # as dagster-postgres' own engines
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_recycle=pool_recycle,
                pool_pre_ping=True,
            )
            _ENGINES[key] = engine
        return engine


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` whose run, event-log and schedule storages share one pooled engine."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
        pool_size: int = POOL_SIZE,
        max_overflow: int = MAX_OVERFLOW,
        pool_recycle: int = POOL_RECYCLE_S,
    ) -> None:
        # The parent creates the tables (if missing) through its NullPool engines, then they are swapped.
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self.engine = pooled_engine(postgres_url, token_provider, pool_size, max_overflow, pool_recycle)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage._engine.dispose()  # a NullPool holds nothing: this only drops the reference
            # dagster-postgres' sub-storages run every query through `self._engine` (as their own
            # optimize_for_webserver does when it swaps in a pooled engine); dagster is pinned exactly.
            storage._engine = self.engine

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        from dagster._core.storage.config import pg_config

        return {
            **cast("dict[str, Any]", pg_config()),
            "pool_size": Field(IntSource, is_required=False, default_value=POOL_SIZE),
            "max_overflow": Field(IntSource, is_required=False, default_value=MAX_OVERFLOW),
            "pool_recycle": Field(IntSource, is_required=False, default_value=POOL_RECYCLE_S),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
            pool_size=int(config_value.get("pool_size", POOL_SIZE)),
            max_overflow=int(config_value.get("max_overflow", MAX_OVERFLOW)),
            pool_recycle=int(config_value.get("pool_recycle", POOL_RECYCLE_S)),
        )
