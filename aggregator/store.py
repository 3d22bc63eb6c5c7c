"""The aggregator's storage: one interface over SQLite (the embedded default) and PostgreSQL.

Data messages are kept idempotently by (device, boot, seq); a record the ingest refused is kept
in `quarantine` with its reason. Per (device, boot) the store keeps the highest seq up to which
everything is settled: stored, quarantined, or below a `floor` the device sent. That watermark
is what the ingest acknowledges, so a refused record never blocks the records after it.

The engines differ only in connection handling, placeholders, locking and which errors mean
"the database is unavailable" (retry the whole batch later) rather than "this record cannot be
stored"; `open_store(url)` picks one: a path or `sqlite:///path`, or `postgresql://...`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from aggregator.migrations import Migration
from aggregator.validate import Rejection
from contract import DataMessage

WALK_CHUNK = 1000


class StoreUnavailable(Exception):
    """The database cannot take writes right now (full, read-only, locked, connection lost)."""


@dataclass(frozen=True)
class BatchResult:
    stored: int
    duplicates: int
    quarantined: int
    watermarks: dict[tuple[str, str], int]  # (device, boot) -> highest contiguous settled seq


@dataclass(frozen=True)
class StoredMessage:
    device: str
    boot: str
    seq: int
    kind: str
    camera: str
    window: tuple[float, float]
    body: dict[str, Any]


@dataclass(frozen=True)
class QuarantinedRecord:
    device: str
    boot: str
    seq: int
    camera: str | None
    kind: str | None
    reason: str
    detail: str
    payload: str
    received_at: float


@dataclass(frozen=True)
class DeviceUpdate:
    """What a status or telemetry message says about a device (None: unchanged)."""

    device: str
    seen_at: float
    state: str | None = None
    boot: str | None = None
    version: str | None = None
    status_ts: float | None = None
    telemetry: str | None = None


@dataclass(frozen=True)
class Snapshot:
    device: str
    camera: str
    jpeg: bytes
    received_at: float


@dataclass(frozen=True)
class DeviceRow:
    device: str
    state: str | None
    boot: str | None
    version: str | None
    last_seen: float | None
    last_window_end: float | None
    telemetry: dict[str, Any] | None
    cameras: list[str]


class Tx(Protocol):
    """A connection in a transaction: `execute` returns a DB-API cursor."""

    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...


class Store(ABC):
    """The engine-independent part: SQL written once with `?` placeholders; each engine
    (SqliteStore, PostgresStore) implements the abstract hooks."""

    greatest = "GREATEST"
    migrations: tuple[Migration, ...] = ()

    # --- engine hooks ---------------------------------------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]:
        """A connection in a committed-or-rolled-back transaction."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Tx]:
        """A connection for reads."""

    @abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Whether a database error is worth retrying (full, read-only, locked, connection lost)."""

    def lock_keys(self, tx: Tx, keys: list[tuple[str, str]]) -> None:  # noqa: B027 (optional hook)
        """Serialise concurrent writers of the same (device, boot) (replicas on one database).
        SQLite has one writer and needs nothing; PostgresStore takes row locks."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s)."""

    # --- schema ---------------------------------------------------------------------------
    def migrate(self, tx: Tx) -> int:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for migration in self.migrations:
            if migration.version > current:
                for statement in migration.statements:
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_version VALUES (?)", (migration.version,))
                current = migration.version
        return int(current)

    def schema_version(self) -> int:
        with self.reading() as tx:
            return int(tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # --- writes ---------------------------------------------------------------------------
    def store_batch(
        self, messages: list[DataMessage], rejected: list[Rejection], received_at: float
    ) -> BatchResult:
        """Insert the messages (ignoring ones already stored), quarantine the attributable
        rejections and advance the watermarks, in one committed transaction. Raises
        `StoreUnavailable` when the database cannot take it (nothing of the batch is kept)."""
        floors: dict[tuple[str, str], int] = {}
        for message in messages:
            env = message.envelope
            key = (env.device, env.boot)
            floors[key] = max(floors.get(key, 0), (env.floor or 1) - 1)
        for rejection in rejected:
            if rejection.key is not None:
                floors.setdefault((rejection.key.device, rejection.key.boot), 0)
        try:
            with self.transaction() as tx:
                self.lock_keys(tx, sorted(floors))
                stored = sum(self._insert_message(tx, m, received_at) for m in messages)
                quarantined = sum(self._quarantine(tx, r, received_at) for r in rejected)
                self._touch_devices(tx, messages, received_at)
                watermarks = {key: self._advance(tx, key, floor) for key, floor in floors.items()}
        except Exception as exc:
            if self.is_transient(exc):
                raise StoreUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
            raise
        return BatchResult(stored, len(messages) - stored, quarantined, watermarks)

    def _insert_message(self, tx: Tx, message: DataMessage, received_at: float) -> int:
        env = message.envelope
        cursor = tx.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                env.device,
                env.boot,
                env.seq,
                message.kind,
                env.camera,
                env.window[0],
                env.window[1],
                json.dumps(message.body.to_dict(), separators=(",", ":")),
                received_at,
            ),
        )
        return max(cursor.rowcount, 0)

    def _quarantine(self, tx: Tx, rejection: Rejection, received_at: float) -> int:
        if rejection.key is None:
            return 0
        key = rejection.key
        cursor = tx.execute(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                key.device,
                key.boot,
                key.seq,
                rejection.camera,
                rejection.kind,
                rejection.reason,
                rejection.detail,
                rejection.payload_head,
                received_at,
            ),
        )
        return max(cursor.rowcount, 0)

    def _touch_devices(self, tx: Tx, messages: list[DataMessage], received_at: float) -> None:
        latest: dict[str, float] = {}
        for message in messages:
            env = message.envelope
            latest[env.device] = max(latest.get(env.device, 0.0), env.window[1])
        for device in sorted(latest):
            tx.execute(
                "INSERT INTO devices (device, last_seen, last_window_end) VALUES (?, ?, ?) "
                "ON CONFLICT (device) DO UPDATE SET "
                f"last_seen = {self.greatest}(COALESCE(devices.last_seen, 0), excluded.last_seen), "
                f"last_window_end = {self.greatest}(COALESCE(devices.last_window_end, 0), excluded.last_window_end)",
                (device, received_at, latest[device]),
            )

    def _advance(self, tx: Tx, key: tuple[str, str], floor: int) -> int:
        device, boot = key
        row = tx.execute("SELECT contiguous FROM progress WHERE device = ? AND boot = ?", key).fetchone()
        mark = max(row[0] if row else 0, floor)
        while True:
            seqs = [
                r[0]
                for r in tx.execute(
                    "SELECT seq FROM (SELECT seq FROM messages WHERE device = ? AND boot = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?) AS m UNION SELECT seq FROM (SELECT seq FROM quarantine "
                    "WHERE device = ? AND boot = ? AND seq > ? ORDER BY seq LIMIT ?) AS q ORDER BY 1",
                    (device, boot, mark, WALK_CHUNK, device, boot, mark, WALK_CHUNK),
                ).fetchall()
            ]
            before = mark
            for seq in seqs:
                if seq != mark + 1:
                    break
                mark = seq
            if mark - before < WALK_CHUNK:
                break
        tx.execute(
            "INSERT INTO progress VALUES (?, ?, ?) ON CONFLICT (device, boot) DO UPDATE SET "
            f"contiguous = {self.greatest}(progress.contiguous, excluded.contiguous)",
            (device, boot, mark),
        )
        return mark

    def record_devices(self, updates: list[DeviceUpdate], snapshots: list[Snapshot]) -> int:
        """Status, telemetry and snapshots, in one transaction (`StoreUnavailable` as above);
        returns how many were written."""
        try:
            with self.transaction() as tx:
                for u in updates:
                    tx.execute(
                        "INSERT INTO devices (device, state, boot, version, status_ts, last_seen, telemetry) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                        "state = COALESCE(excluded.state, devices.state), "
                        "boot = COALESCE(excluded.boot, devices.boot), "
                        "version = COALESCE(excluded.version, devices.version), "
                        "status_ts = COALESCE(excluded.status_ts, devices.status_ts), "
                        "telemetry = COALESCE(excluded.telemetry, devices.telemetry), "
                        f"last_seen = {self.greatest}(COALESCE(devices.last_seen, 0), excluded.last_seen)",
                        (u.device, u.state, u.boot, u.version, u.status_ts, u.seen_at, u.telemetry),
                    )
                for s in snapshots:
                    tx.execute(
                        "INSERT INTO snapshots VALUES (?, ?, ?, ?) ON CONFLICT (device, camera) DO UPDATE SET "
                        "jpeg = excluded.jpeg, received_at = excluded.received_at",
                        (s.device, s.camera, s.jpeg, s.received_at),
                    )
            return len(updates) + len(snapshots)
        except Exception as exc:
            if self.is_transient(exc):
                raise StoreUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
            raise

    # --- reads ----------------------------------------------------------------------------
    def messages(
        self,
        device: str | None = None,
        kind: str | None = None,
        camera: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[StoredMessage]:
        """Stored messages ordered by (device, boot, seq); optionally of one device, kind and
        camera, with windows starting in [start, end)."""
        clauses, args = _where(device=device, kind=kind, camera=camera)
        if start is not None:
            clauses.append("window_start >= ?")
            args.append(start)
        if end is not None:
            clauses.append("window_start < ?")
            args.append(end)
        query = "SELECT device, boot, seq, kind, camera, window_start, window_end, body FROM messages"
        query += (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY device, boot, seq"
        with self.reading() as tx:
            rows = tx.execute(query, tuple(args)).fetchall()
        return [StoredMessage(d, b, s, k, c, (ws, we), json.loads(body)) for d, b, s, k, c, ws, we, body in rows]

    def seqs(self, device: str) -> list[int]:
        with self.reading() as tx:
            rows = tx.execute("SELECT seq FROM messages WHERE device = ? ORDER BY seq", (device,)).fetchall()
        return [row[0] for row in rows]

    def count_messages(self) -> int:
        with self.reading() as tx:
            return int(tx.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def quarantined(self, device: str | None = None, limit: int = 100) -> list[QuarantinedRecord]:
        clauses, args = _where(device=device)
        query = "SELECT device, boot, seq, camera, kind, reason, detail, payload, received_at FROM quarantine"
        query += (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY received_at DESC LIMIT ?"
        with self.reading() as tx:
            rows = tx.execute(query, (*args, limit)).fetchall()
        return [QuarantinedRecord(*row) for row in rows]

    def count_quarantined(self) -> int:
        with self.reading() as tx:
            return int(tx.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    def devices(self) -> list[DeviceRow]:
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT device, state, boot, version, last_seen, last_window_end, telemetry FROM devices "
                "ORDER BY device"
            ).fetchall()
            cameras: dict[str, list[str]] = {}
            for device, camera in tx.execute(
                "SELECT DISTINCT device, camera FROM messages ORDER BY device, camera"
            ).fetchall():
                cameras.setdefault(device, []).append(camera)
        return [
            DeviceRow(d, st, b, v, seen, wend, json.loads(tel) if tel else None, cameras.get(d, []))
            for d, st, b, v, seen, wend, tel in rows
        ]

    def snapshot(self, device: str, camera: str) -> bytes | None:
        with self.reading() as tx:
            row = tx.execute(
                "SELECT jpeg FROM snapshots WHERE device = ? AND camera = ?", (device, camera)
            ).fetchone()
        return bytes(row[0]) if row else None


def _where(**equal: str | None) -> tuple[list[str], list[Any]]:
    clauses, args = [], []
    for column, value in equal.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return clauses, args


def open_store(url: str) -> Store:
    """A store for `url`: `postgresql://...` (or `postgres://`), else SQLite (`sqlite:///path` or a path)."""
    if url.startswith(("postgresql://", "postgres://")):
        from aggregator.postgres_store import PostgresStore

        return PostgresStore(url)
    from aggregator.sqlite_store import SqliteStore

    return SqliteStore(url.removeprefix("sqlite://"))

