"""Delivery errors, apart from the spool's SQLite code so the pure outbox can catch them."""

from edge.core.errors import VideoAnalysisError


class SpoolError(VideoAnalysisError):
    """The spool cannot accept or keep a record (disk full, unreadable database)."""


class SpoolFullError(SpoolError):
    """The spool is at its size cap and its policy is reject_new."""
