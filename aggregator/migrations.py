"""Versioned schema migrations, one list per engine, applied in order inside one transaction.

Version 1 uses `IF NOT EXISTS`, so a database made by the first ingest (its `messages` and
`progress` tables) is adopted as it is. A new version is appended, never edited.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    statements: tuple[str, ...]


def _v1(real: str, blob: str, bigint: str) -> Migration:
    return Migration(
        1,
        (
            f"""CREATE TABLE IF NOT EXISTS messages (
                device TEXT NOT NULL, boot TEXT NOT NULL, seq {bigint} NOT NULL, kind TEXT NOT NULL,
                camera TEXT NOT NULL, window_start {real} NOT NULL, window_end {real} NOT NULL,
                body TEXT NOT NULL, received_at {real} NOT NULL, PRIMARY KEY (device, boot, seq))""",
            "CREATE INDEX IF NOT EXISTS messages_camera_window ON messages (device, camera, kind, window_start)",
            f"""CREATE TABLE IF NOT EXISTS progress (
                device TEXT NOT NULL, boot TEXT NOT NULL, contiguous {bigint} NOT NULL,
                PRIMARY KEY (device, boot))""",
            f"""CREATE TABLE IF NOT EXISTS quarantine (
                device TEXT NOT NULL, boot TEXT NOT NULL, seq {bigint} NOT NULL, camera TEXT, kind TEXT,
                reason TEXT NOT NULL, detail TEXT NOT NULL, payload TEXT NOT NULL, received_at {real} NOT NULL,
                PRIMARY KEY (device, boot, seq))""",
            "CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine (received_at)",
            f"""CREATE TABLE IF NOT EXISTS devices (
                device TEXT PRIMARY KEY, state TEXT, boot TEXT, version TEXT, status_ts {real},
                last_seen {real}, last_window_end {real}, telemetry TEXT)""",
            f"""CREATE TABLE IF NOT EXISTS snapshots (
                device TEXT NOT NULL, camera TEXT NOT NULL, jpeg {blob} NOT NULL, received_at {real} NOT NULL,
                PRIMARY KEY (device, camera))""",
        ),
    )


SQLITE = (_v1("REAL", "BLOB", "INTEGER"),)
POSTGRES = (_v1("DOUBLE PRECISION", "BYTEA", "BIGINT"),)
