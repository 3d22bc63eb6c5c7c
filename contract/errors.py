"""The one error of the wire contract."""


class MessageError(ValueError):
    """A payload or topic that does not follow the wire contract; the message names the field."""
