"""The one error tree of Carepath.

    CarepathError
    ├── DefinitionError          an author's mistake in a pathway file: a list of located Problems
    ├── InputError               a bad inbound event (kept for review, never silently dropped)
    └── RuntimeFailure           something went wrong while running: store, rules engine, adapter
        ├── StoreError
        └── AdapterError

Author mistakes carry every problem at once, each with a stable code, a file, a line and column
and a location path (`rules[2].when.weight_gain`), so a clinical lead can fix them all in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass


class CarepathError(Exception):
    """Base of every error Carepath raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a pathway file."""

    code: str
    message: str
    file: str
    line: int  # 1-based
    column: int  # 1-based
    location: str  # e.g. "rules[2].when.weight_gain"; "" for the whole document

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{self.file}:{self.line}:{self.column}: {self.code} {where}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "location": self.location,
            "message": self.message,
        }


class DefinitionError(CarepathError):
    """A pathway definition is invalid. Holds every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.code))
        count = len(self.problems)
        lines = "\n".join(p.render() for p in self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in pathway definition:\n{lines}"
        )


class InputError(CarepathError):
    """An inbound event that cannot be accepted: malformed, unknown type, wrong fields."""

    def __init__(self, message: str, *, location: str = "") -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class RuntimeFailure(CarepathError):
    """A failure while running (not an author's or sender's mistake)."""


class StoreError(RuntimeFailure):
    """The store could not record or read something."""


class AdapterError(RuntimeFailure):
    """An outbound adapter could not carry out an action."""
