"""The durable outbox: every data message is committed here before it is published.

SQLite in WAL mode with `synchronous=FULL`, so `append` returns only once the record is fsynced.
The next `seq` and the drop counter live in the same database and are updated in the same
transaction as the record, so seq keeps increasing across restarts and crashes.

The spool is bounded by the summed size of its records (payload + topic + a fixed per-row
overhead), kept as a running total so appending stays O(1). When full, `drop_oldest` deletes the
oldest records (counted) and `reject_new` refuses the new one (counted, `SpoolFullError`).
A full disk becomes `SpoolError` with one line naming the file and what failed (storing a new
message, deleting delivered ones, reading); SQLite rolls the transaction back, so records already
accepted stay intact.

A spool file that is not a readable SQLite database (torn by a power cut, overwritten) is moved
aside as `<name>.corrupt-<unix time>` (kept for inspection, with its -wal/-shm files) and a new
spool is started; `quarantined` names the moved file so the daemon can report it.

The `aggregator` counter remembers that an aggregator has acknowledged this device once (the
`auto` ack mode's switch), across restarts.

One connection guarded by a lock: the pipeline thread appends, the MQTT thread reads and removes.
"""

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union

from edge.delivery.errors import SpoolError, SpoolFullError

if TYPE_CHECKING:
    from edge.config import Config

log = logging.getLogger(__name__)

ROW_OVERHEAD_BYTES = 64
MEGABYTE = 1024 * 1024
FULL_POLICIES = ("drop_oldest", "reject_new")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    boot TEXT NOT NULL,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_boot_seq ON outbox (boot, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('next_seq', 1), ('dropped', 0), ('aggregator', 0);
"""


@dataclass(frozen=True)
class SpoolRecord:
    seq: int
    boot: str
    kind: str
    topic: str
    payload: bytes


@dataclass(frozen=True)
class SpoolStats:
    depth: int
    bytes: int
    max_bytes: int
    dropped: int
    oldest_seq: Optional[int]
    next_seq: int


PayloadSource = Union[bytes, Callable[[int], bytes]]


class Spool:
    def __init__(
        self, path: Path, max_bytes: int, full_policy: str = "drop_oldest", clock: Callable[[], float] = time.time
    ) -> None:
        if full_policy not in FULL_POLICIES:
            raise ValueError(f"full_policy must be one of {FULL_POLICIES}, got {full_policy!r}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.full_policy = full_policy
        self.quarantined: Optional[Path] = None
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"{self.path}: cannot create the spool directory ({exc})") from None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "not a database" not in str(exc):
                raise SpoolError(f"{self.path}: cannot open spool ({exc})") from None
            self.quarantined = self._quarantine(exc, clock())
            try:
                self._db = self._open()
            except sqlite3.Error as again:
                raise SpoolError(f"{self.path}: cannot start a new spool ({again})") from None
        except OSError as exc:
            raise SpoolError(f"{self.path}: cannot open spool ({exc})") from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            db.executescript(_SCHEMA)
            self._bytes, self._depth = db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def _quarantine(self, exc: sqlite3.Error, now: float) -> Path:
        """Move a corrupt spool (and its WAL/shared-memory files) aside, kept for inspection."""
        moved = self.path.with_name(f"{self.path.name}.corrupt-{int(now)}")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = self.path.with_name(self.path.name + suffix)
                if source.exists():
                    source.rename(moved.with_name(moved.name + suffix))
        except OSError as move_error:
            raise SpoolError(
                f"{self.path}: spool is corrupt ({exc}) and cannot be moved aside ({move_error})"
            ) from None
        log.error("%s: spool is corrupt (%s); moved aside to %s and started a new one", self.path, exc, moved)
        return moved

    @classmethod
    def from_config(cls, config: "Config") -> "Spool":
        """Open the spool an `edge.config.Config` describes."""
        return cls(config.spool_path, int(config.spool.max_mb * MEGABYTE), config.spool.full_policy)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _counter(self, name: str) -> int:
        return int(self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])

    def _disk_error(self, exc: sqlite3.Error, what: str) -> SpoolError:
        """`what` failed: "message not spooled", "delivered messages not deleted", ..."""
        if "full" in str(exc):
            return SpoolError(f"{self.path}: disk full, {what} (records already spooled are intact)")
        return SpoolError(f"{self.path}: spool error, {what} ({exc})")

    def append(self, kind: str, topic: str, boot: str, payload: PayloadSource) -> int:
        """Commit a record and return its seq. `payload` may be a function of the seq, for
        payloads that carry their own seq. Raises SpoolFullError (reject_new) or SpoolError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seq = self._counter("next_seq")
                    data = payload(seq) if callable(payload) else payload
                    size = len(data) + len(topic) + ROW_OVERHEAD_BYTES
                    if size > self.max_bytes or (
                        self.full_policy == "reject_new" and self._bytes + size > self.max_bytes
                    ):
                        self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'dropped'")
                        self._db.execute("COMMIT")
                        raise SpoolFullError(
                            f"{self.path}: spool full ({self.max_bytes} bytes, {self.full_policy}), "
                            f"{size}-byte message refused"
                        )
                    freed, removed = self._drop_oldest_for(size)
                    self._db.execute(
                        "INSERT INTO outbox (seq, boot, kind, topic, payload, size) VALUES (?,?,?,?,?,?)",
                        (seq, boot, kind, topic, data, size),
                    )
                    self._db.execute("UPDATE counters SET value = ? WHERE name = 'next_seq'", (seq + 1,))
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._disk_error(exc, "message not spooled") from None
            self._bytes += size - freed
            self._depth += 1 - removed
            if removed:
                log.warning(
                    "spool full (%d bytes): dropped the %d oldest message(s)", self.max_bytes, removed
                )
            return seq

    def _drop_oldest_for(self, size: int) -> Tuple[int, int]:
        """Inside the append transaction: delete (and count) the oldest records until `size` more
        bytes fit. Returns (bytes freed, records dropped)."""
        if self._bytes + size <= self.max_bytes:
            return 0, 0
        freed = 0
        last_doomed = 0
        cursor = self._db.execute("SELECT seq, size FROM outbox ORDER BY seq")
        for seq, row_size in cursor:
            if self._bytes - freed + size <= self.max_bytes:
                break
            last_doomed = seq
            freed += row_size
        cursor.close()
        removed = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (last_doomed,)).rowcount
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (removed,))
        return freed, removed

    def pending(self, after_seq: int = 0, limit: int = 100) -> List[SpoolRecord]:
        """The oldest `limit` records with seq > after_seq (never the whole spool at once)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, boot, kind, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._disk_error(exc, "spooled messages not read") from None
        return [
            SpoolRecord(seq, boot, kind, topic, bytes(payload)) for seq, boot, kind, topic, payload in rows
        ]

    def floors(self, boots: List[str]) -> Dict[str, int]:
        """Per boot, the oldest seq still spooled (what the publisher sends as `floor`)."""
        with self._lock:
            result = {}
            try:
                for boot in set(boots):
                    row = self._db.execute("SELECT MIN(seq) FROM outbox WHERE boot = ?", (boot,)).fetchone()
                    if row[0] is not None:
                        result[boot] = int(row[0])
            except sqlite3.Error as exc:
                raise self._disk_error(exc, "spooled messages not read") from None
            return result

    def _delete(self, where: str, args: Tuple[object, ...]) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                freed, removed = self._db.execute(
                    f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox WHERE {where}", args
                ).fetchone()
                self._db.execute(f"DELETE FROM outbox WHERE {where}", args)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._disk_error(exc, "delivered messages not deleted (they will be sent again)") from None
            self._bytes -= freed
            self._depth -= removed
            return int(removed)

    def ack_through(self, boot: str, seq: int) -> int:
        """Remove the records of `boot` up to `seq` (an end-to-end ack); returns how many."""
        return self._delete("boot = ? AND seq <= ?", (boot, seq))

    def remove(self, seq: int) -> int:
        """Remove one record (PUBACK mode); returns 1 if it was there."""
        return self._delete("seq = ?", (seq,))

    @property
    def aggregator_seen(self) -> bool:
        """Whether an aggregator has acknowledged this device (ever, across restarts)."""
        with self._lock:
            return self._counter("aggregator") > 0

    def mark_aggregator_seen(self) -> None:
        """Remember that an aggregator acknowledges this device. Raises SpoolError (disk full)."""
        with self._lock:
            try:
                self._db.execute("UPDATE counters SET value = 1 WHERE name = 'aggregator'")
            except sqlite3.Error as exc:
                raise self._disk_error(exc, "the aggregator's first ack not remembered") from None

    def stats(self) -> SpoolStats:
        with self._lock:
            try:
                oldest = self._db.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
                return SpoolStats(
                    depth=self._depth,
                    bytes=self._bytes,
                    max_bytes=self.max_bytes,
                    dropped=self._counter("dropped"),
                    oldest_seq=oldest,
                    next_seq=self._counter("next_seq"),
                )
            except sqlite3.Error as exc:
                raise self._disk_error(exc, "spool counters not read") from None
