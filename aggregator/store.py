"""The aggregator's SQLite store of data messages, idempotent by (device, boot, seq).

Besides the messages it keeps, per (device, boot), the highest seq up to which everything is
settled: committed here, or below a `floor` the device sent (records the device dropped or had
acknowledged earlier). That watermark is what the ingest acknowledges.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from contract import DataMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    device TEXT NOT NULL,
    boot TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    camera TEXT NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    body TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (device, boot, seq)
);
CREATE INDEX IF NOT EXISTS messages_camera_window ON messages (device, camera, kind, window_start);
CREATE TABLE IF NOT EXISTS progress (
    device TEXT NOT NULL,
    boot TEXT NOT NULL,
    contiguous INTEGER NOT NULL,
    PRIMARY KEY (device, boot)
);
"""


@dataclass(frozen=True)
class BatchResult:
    stored: int
    duplicates: int
    watermarks: dict[tuple[str, str], int]  # (device, boot) -> highest contiguous settled seq


@dataclass(frozen=True)
class StoredMessage:
    device: str
    boot: str
    seq: int
    kind: str
    camera: str
    window: tuple[float, float]
    body: dict[str, object]


class IngestStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def store_batch(self, messages: list[DataMessage], received_at: float) -> BatchResult:
        """Insert the messages (ignoring ones already stored) and advance the watermarks, in one
        committed transaction."""
        stored = 0
        floors: dict[tuple[str, str], int] = {}
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for message in messages:
                    env = message.envelope
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    stored += cursor.rowcount
                    key = (env.device, env.boot)
                    floors[key] = max(floors.get(key, 0), (env.floor or 1) - 1)
                watermarks = {key: self._advance(key, floor) for key, floor in floors.items()}
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return BatchResult(stored=stored, duplicates=len(messages) - stored, watermarks=watermarks)

    def _advance(self, key: tuple[str, str], floor: int) -> int:
        device, boot = key
        row = self._db.execute(
            "SELECT contiguous FROM progress WHERE device = ? AND boot = ?", key
        ).fetchone()
        mark = max(row[0] if row else 0, floor)
        while self._db.execute(
            "SELECT 1 FROM messages WHERE device = ? AND boot = ? AND seq = ?", (device, boot, mark + 1)
        ).fetchone():
            mark += 1
        self._db.execute("INSERT OR REPLACE INTO progress VALUES (?, ?, ?)", (device, boot, mark))
        return mark

    def messages(self, device: str | None = None, kind: str | None = None) -> list[StoredMessage]:
        """Stored messages ordered by (device, boot, seq), optionally of one device and kind."""
        query = "SELECT device, boot, seq, kind, camera, window_start, window_end, body FROM messages"
        clauses, args = [], []
        if device is not None:
            clauses.append("device = ?")
            args.append(device)
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY device, boot, seq"
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            StoredMessage(d, b, s, k, c, (ws, we), json.loads(body)) for d, b, s, k, c, ws, we, body in rows
        ]

    def seqs(self, device: str) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq FROM messages WHERE device = ? ORDER BY seq", (device,)
            ).fetchall()
        return [row[0] for row in rows]
