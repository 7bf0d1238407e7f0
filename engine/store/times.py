"""Instants as fixed-width UTC text, identical in SQLite and PostgreSQL and sortable as text."""

from __future__ import annotations

from datetime import UTC, datetime


def to_text(moment: datetime) -> str:
    """`2026-01-09T15:00:00.000000+00:00` (the strftime pattern `%Y-%m-%dT%H:%M:%S.%f+00:00`
    for years 1000-9999; isoformat is several times faster, and this runs for every stored
    instant)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)
