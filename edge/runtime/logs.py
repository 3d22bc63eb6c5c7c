"""Logging for the daemon and the commands, made for the journal.

When stderr is journald's stream (systemd sets `JOURNAL_STREAM=<device>:<inode>` to that of the
stream it connects), every line starts with a `<N>` syslog priority prefix, which journald turns
into the entry's priority (`journalctl -p err` then works), and carries no timestamp of its own
(journald adds one; ours would be doubled). Elsewhere lines carry a timestamp and the level name.
`json` writes one JSON object per line instead, for log shippers.

Every line is passed through `mask_urls`, which masks credentials in any URL it holds, so a
source URL with a password cannot reach the journal whichever module logs it.

Hand-written rather than python-systemd's JournalHandler: that package needs libsystemd headers
to build on a device, and the stderr protocol gives the same priorities.
"""

import json
import logging
import os
import sys
from typing import IO, Mapping, Optional

from edge.config import mask_urls

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("text", "json")

# Python level → syslog priority (sd-daemon(3)): err 3, warning 4, info 6, debug 7.
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    for threshold, priority in _PRIORITY:
        if levelno >= threshold:
            return priority
    return 7


def stream_is_journal(environ: Mapping[str, str], stream: IO[str]) -> bool:
    """True when `stream` is the journal stream systemd announced in JOURNAL_STREAM."""
    announced = environ.get("JOURNAL_STREAM", "")
    device, _, inode = announced.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return status.st_dev == int(device) and status.st_ino == int(inode)


class TextFormatter(logging.Formatter):
    """`<N>logger: message` for the journal, `time LEVEL logger: message` elsewhere."""

    def __init__(self, journal: bool) -> None:
        super().__init__("%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = mask_urls(super().format(record))
        if not self.journal:
            return text
        # Continuation lines (tracebacks) get the prefix too, or journald logs them at info.
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `ts` only outside the journal, which stamps entries itself."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": record.levelname.lower(),
            "priority": syslog_priority(record.levelno),
            "logger": record.name,
            "message": mask_urls(record.getMessage()),
        }
        if not self.journal:
            entry["ts"] = round(record.created, 3)
        if record.exc_info:
            entry["exception"] = mask_urls(self.formatException(record.exc_info))
        text = json.dumps(entry, ensure_ascii=False)
        return f"<{entry['priority']}>{text}" if self.journal else text


class _OwnHandler(logging.StreamHandler):
    """The stderr handler `setup_logging` installs (told apart from others when replacing it)."""


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    environ: Optional[Mapping[str, str]] = None,
    stream: Optional[IO[str]] = None,
) -> logging.Handler:
    """Log to stderr (or `stream`) at `level` in `fmt`; returns the handler."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    stream = stream if stream is not None else sys.stderr
    journal = stream_is_journal(os.environ if environ is None else environ, stream)
    handler = _OwnHandler(stream)
    handler.setFormatter(JsonFormatter(journal) if fmt == "json" else TextFormatter(journal))
    root = logging.getLogger()
    # Replace only our own earlier handler (a command sets up twice: defaults, then the config's);
    # handlers others installed (pytest's capture) stay.
    for old in [h for h in root.handlers if isinstance(h, _OwnHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler
