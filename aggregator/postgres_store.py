"""The PostgreSQL store (psycopg 3 with a connection pool), for replicas sharing one database.

Replicas on one shared subscription write the same devices concurrently. Each batch first
locks its (device, boot) progress rows in sorted order (`SELECT ... FOR UPDATE`), so writers of
one device take turns and each one's watermark walk sees the other's committed rows: no
watermark stalls behind a concurrent batch, and sorted locking cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from aggregator import migrations
from aggregator.store import Store, Tx

MIGRATION_LOCK = 7_461_001  # pg_advisory_xact_lock key: replicas starting together migrate once


class _PgTx:
    """`?` placeholders (the shared SQL) translated to psycopg's `%s`."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), parameters)


class PostgresStore(Store):
    greatest = "GREATEST"
    migrations = migrations.POSTGRES

    def __init__(self, url: str, pool_size: int = 4, connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, timeout=connect_timeout_s, open=False, kwargs={"autocommit": False}
        )
        self._pool.open(wait=True, timeout=connect_timeout_s)
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            self.migrate(tx)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self._pool.connection() as conn:
            yield _PgTx(conn)

    def lock_keys(self, tx: Tx, keys: list[tuple[str, str]]) -> None:
        for device, boot in keys:
            tx.execute("INSERT INTO progress VALUES (?, ?, 0) ON CONFLICT DO NOTHING", (device, boot))
            tx.execute("SELECT contiguous FROM progress WHERE device = ? AND boot = ? FOR UPDATE", (device, boot))

    def is_transient(self, exc: BaseException) -> bool:
        # Connection lost, server shutting down, disk full (DiskFull is an OperationalError),
        # read-only transaction or recovery (InternalError), no pooled connection in time.
        return isinstance(exc, (psycopg.OperationalError, psycopg.InternalError, PoolTimeout))

    def close(self) -> None:
        self._pool.close()
