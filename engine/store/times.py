"""Instants as fixed-width UTC text, identical in SQLite and PostgreSQL and sortable as text."""

from __future__ import annotations

from datetime import UTC, datetime


def to_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)
