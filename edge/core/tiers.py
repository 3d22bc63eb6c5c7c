"""A policy tier as the controller sees it (pure record)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    """One runnable tier; `index` is its position in the configured list of its class."""

    index: int
    model: str
    precision: str
    engine: str
    input: int
    frame_skip: int
    dla: bool = False

    @property
    def name(self) -> str:
        dla = "+dla" if self.dla else ""
        return f"{self.model}@{self.input} {self.engine}{dla}/{self.precision} skip{self.frame_skip}"

    @property
    def key(self) -> str:
        """Identity of the detector a tier runs (its frame-skip is not part of it)."""
        return f"{self.model}|{self.engine}|{self.precision}|{self.input}|dla={self.dla}"
