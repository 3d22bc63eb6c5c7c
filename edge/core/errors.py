"""Error types and the exit codes they map to (DESIGN.md, CLI).

Every error carries a one-line message naming what went wrong and where; the CLI prints it
on stderr and exits with the class's code.
"""


class VideoAnalysisError(Exception):
    """Anything we expected could go wrong; exit code 1 unless a subclass says otherwise."""

    exit_code = 1


class ConfigError(VideoAnalysisError):
    """Usage or configuration error."""

    exit_code = 2


class ModelError(VideoAnalysisError):
    """A model or engine file is missing, corrupt or incompatible."""

    exit_code = 3


class SourceError(VideoAnalysisError):
    """A video source cannot be opened or read."""

    exit_code = 4
