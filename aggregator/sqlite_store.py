"""The SQLite store: one file in WAL mode, one writer connection and one reader connection.

A failed write is rolled back; when even the rollback fails (SQLITE_FULL can leave the
connection unable to roll back), the connection is reopened, so the original error is the one
reported and the next attempt starts clean.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aggregator import migrations
from aggregator.store import Store, Tx

BUSY_TIMEOUT_S = 5.0


class SqliteStore(Store):
    greatest = "MAX"
    migrations = migrations.SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._reader = self._connect()
        with self.transaction() as tx:
            self.migrate(tx)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
        db.execute("PRAGMA synchronous=FULL")
        return db

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._write_lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    self._reopen()
                raise

    def _reopen(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass  # the connection is being replaced because it is already broken
        self._db = self._connect()

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self._read_lock:
            yield self._reader

    def is_transient(self, exc: BaseException) -> bool:
        # OperationalError covers full, read-only, locked/busy, I/O errors and a vanished file;
        # IntegrityError, InterfaceError and friends mean a record the database refuses.
        return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._db.close()
            self._reader.close()
