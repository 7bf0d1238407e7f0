"""Durations and masses, parsed strictly.

Durations, as a clinical lead writes them:

    48h  48 hours  90 minutes  7d  7 days  2 weeks    exact: added as elapsed time
    2 business days                                    Monday-Friday, skipping configured holidays
    3 months  1 year                                   calendar: same day and time, clamped to
                                                       the month's last day

`m` alone is refused (minutes or months?), as are fractions, signs and anything else: a
duration that does not parse is an error, never a guess. Calendar arithmetic keeps the time
zone offset of the instant it starts from, so "Friday 15:00 + 2 business days" is judged on the
patient's local Friday, not on UTC's.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

__all__ = ["Duration", "DurationKind", "Mass", "parse_duration", "parse_mass"]


class DurationKind(StrEnum):
    EXACT = "exact"
    BUSINESS_DAYS = "business_days"
    MONTHS = "months"


_EXACT_UNITS: dict[str, int] = {
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 7 * 86400,
    "week": 7 * 86400,
    "weeks": 7 * 86400,
}
_MONTH_UNITS: dict[str, int] = {"month": 1, "months": 1, "year": 12, "years": 12}
_BUSINESS_UNITS = frozenset({"business day", "business days", "working day", "working days"})

_DURATION = re.compile(r"^(\d+)\s*([a-z]+(?: [a-z]+)?)$")


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed duration. `text` is what the author wrote, for messages and diagrams."""

    kind: DurationKind
    amount: int  # seconds (EXACT), business days, or months
    text: str

    def add_to(self, start: datetime, holidays: Collection[date] = ()) -> datetime:
        """The instant this duration after `start` (which must be timezone-aware)."""
        if start.tzinfo is None:
            raise ValueError("durations are added to timezone-aware instants only")
        if self.kind is DurationKind.EXACT:
            return start + timedelta(seconds=self.amount)
        if self.kind is DurationKind.MONTHS:
            return _add_months(start, self.amount)
        return _add_business_days(start, self.amount, holidays)

    @property
    def seconds(self) -> int | None:
        """Length in seconds for exact durations; None for calendar ones."""
        return self.amount if self.kind is DurationKind.EXACT else None

    def __str__(self) -> str:
        return self.text


def parse_duration(text: object) -> Duration:
    """Parse a duration or raise ValueError with a message an author can act on."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(
            f"expected a duration such as '48h', '7 days' or '2 business days', got {text!r}"
        )
    cleaned = " ".join(text.strip().lower().split())
    match = _DURATION.match(cleaned)
    if not match:
        raise ValueError(
            f"'{text}' is not a duration: write a whole number and a unit, "
            "such as '48h', '7 days', '2 business days' or '3 months'"
        )
    count, unit = int(match.group(1)), match.group(2)
    if unit in _EXACT_UNITS:
        return Duration(DurationKind.EXACT, count * _EXACT_UNITS[unit], text.strip())
    if unit in _MONTH_UNITS:
        return Duration(DurationKind.MONTHS, count * _MONTH_UNITS[unit], text.strip())
    if unit in _BUSINESS_UNITS:
        return Duration(DurationKind.BUSINESS_DAYS, count, text.strip())
    if unit == "m":
        raise ValueError(f"'{text}' is ambiguous: write 'minutes' or 'months'")
    raise ValueError(
        f"'{text}' has an unknown unit '{unit}': use minutes, h/hours, d/days, weeks, "
        "business days, months or years"
    )


def _add_months(start: datetime, months: int) -> datetime:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def _add_business_days(start: datetime, days: int, holidays: Collection[date]) -> datetime:
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5 and current.date() not in holidays:
            remaining -= 1
    return current


# -- masses ------------------------------------------------------------------------------------

KG_PER_LB = 0.45359237
_MASS_UNITS: dict[str, float] = {"kg": 1.0, "g": 0.001, "lb": KG_PER_LB, "lbs": KG_PER_LB}
_MASS = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$")


@dataclass(frozen=True, slots=True)
class Mass:
    kg: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_mass(text: object) -> Mass:
    """Parse '1.0 kg', '2 lb' or '500 g' into kilograms; a bare number is refused."""
    if isinstance(text, bool):
        raise ValueError(f"expected a mass such as '1.0 kg', got {text!r}")
    if isinstance(text, (int, float)):
        raise ValueError(f"{text} has no unit: write it with one, such as '{text} kg'")
    if not isinstance(text, str):
        raise ValueError(f"expected a mass such as '1.0 kg', got {text!r}")
    match = _MASS.match(text.strip().lower())
    if not match:
        raise ValueError(f"'{text}' is not a mass: write a number and a unit, such as '1.0 kg'")
    unit = match.group(2)
    if unit not in _MASS_UNITS:
        raise ValueError(f"'{text}' has an unknown mass unit '{unit}': use kg, g or lb")
    return Mass(round(float(match.group(1)) * _MASS_UNITS[unit], 9), text.strip())
