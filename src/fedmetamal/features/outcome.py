"""The result of extracting one file: a row of values or a reason it has none.

Extractors return these instead of raising, so one hostile file can never stop a run of
thousands; the reason is a short, stable phrase ("not a PE file: no MZ header") that the
summary table groups by its part before the first colon.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """Feature values in schema column order, and anything odd noticed while reading them."""

    values: tuple[int | float, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    """Why a file yields no row, in words a user can act on."""

    reason: str

    @property
    def kind(self) -> str:
        """The reason's category (text before the first colon), used to group failures."""
        return self.reason.split(":", 1)[0].strip()


Outcome = Row | Failure


@dataclass(frozen=True)
class FileRecord:
    """One input file after extraction: identity (path, size, sha256) and its outcome."""

    path: str
    size: int
    sha256: str | None
    outcome: Outcome

    @property
    def ok(self) -> bool:
        return isinstance(self.outcome, Row)
