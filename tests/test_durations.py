"""Durations and masses (engine/durations.py): strict parsing, and calendar arithmetic exactly as
shared/clinical/PATHWAYS.md gives it (business days, months clamped, the instant's own offset)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from engine.durations import Duration, DurationKind, parse_duration, parse_mass

EXACT, BUSINESS, MONTHS = DurationKind.EXACT, DurationKind.BUSINESS_DAYS, DurationKind.MONTHS
HOUR, DAY = 3600, 86400

# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "amount"),
    [
        ("48h", EXACT, 48 * HOUR),
        ("48 hours", EXACT, 48 * HOUR),
        ("1 hour", EXACT, HOUR),
        ("7d", EXACT, 7 * DAY),
        ("7 days", EXACT, 7 * DAY),
        ("1 day", EXACT, DAY),
        ("2 weeks", EXACT, 14 * DAY),
        ("90 minutes", EXACT, 90 * 60),
        ("10 min", EXACT, 600),
        ("2 business days", BUSINESS, 2),
        ("1 business day", BUSINESS, 1),
        ("1 working day", BUSINESS, 1),
        ("3 months", MONTHS, 3),
        ("1 month", MONTHS, 1),
        ("1 year", MONTHS, 12),
        ("2 years", MONTHS, 24),
        ("  7   Days ", EXACT, 7 * DAY),  # spacing and case are forgiven, nothing else
    ],
)
def test_a_duration_parses_strictly(text: str, kind: DurationKind, amount: int) -> None:
    duration = parse_duration(text)
    assert (duration.kind, duration.amount) == (kind, amount)
    assert duration.text == text.strip()
    assert str(duration) == text.strip()
    assert duration.seconds == (amount if kind is EXACT else None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.5d", "'1.5d' is not a duration: write a whole number and a unit"),
        ("-1d", "'-1d' is not a duration: write a whole number and a unit"),
        ("+1d", "'+1d' is not a duration"),
        ("7", "'7' is not a duration"),
        ("m", "'m' is not a duration"),
        ("d7", "'d7' is not a duration"),
        ("", "'' is not a duration"),
        ("3 m", "'3 m' is ambiguous: write 'minutes' or 'months'"),
        ("60m", "'60m' is ambiguous: write 'minutes' or 'months'"),
        ("2 buisness days", "'2 buisness days' has an unknown unit 'buisness days'"),
        ("1 fortnight", "'1 fortnight' has an unknown unit 'fortnight'"),
        ("7 days ago", "'7 days ago' has an unknown unit 'days ago'"),
        (7, "expected a duration such as '48h', '7 days' or '2 business days', got 7"),
        (None, "expected a duration such as '48h', '7 days' or '2 business days', got None"),
        (True, "expected a duration such as '48h', '7 days' or '2 business days', got True"),
    ],
)
def test_anything_else_is_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value).startswith(message)


# -- arithmetic ---------------------------------------------------------------------------------

FRIDAY = datetime(2025, 3, 7, 15, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        # PATHWAYS.md: "Friday 15:00 + 2 business days is Tuesday 15:00"
        ("2025-03-07T15:00:00+00:00", "2 business days", "2025-03-11T15:00:00+00:00"),
        # PATHWAYS.md: "Saturday 10:00 + 1 business day is Monday 10:00"
        ("2025-03-08T10:00:00+00:00", "1 business day", "2025-03-10T10:00:00+00:00"),
        ("2025-03-09T10:00:00+00:00", "1 business day", "2025-03-10T10:00:00+00:00"),  # Sunday
        ("2025-03-10T09:30:00+00:00", "1 business day", "2025-03-11T09:30:00+00:00"),  # Monday
        ("2025-03-07T15:00:00+00:00", "5 business days", "2025-03-14T15:00:00+00:00"),
        ("2025-03-07T15:00:00+00:00", "0 business days", "2025-03-07T15:00:00+00:00"),
        # exact durations are elapsed time, weekends or not
        ("2025-03-07T15:00:00+00:00", "2d", "2025-03-09T15:00:00+00:00"),
        ("2025-03-07T15:00:00+00:00", "48h", "2025-03-09T15:00:00+00:00"),
        ("2025-03-07T15:00:00+00:00", "90 minutes", "2025-03-07T16:30:00+00:00"),
        # months: same day and time, clamped to the month's last day
        ("2025-01-31T08:00:00+00:00", "1 month", "2025-02-28T08:00:00+00:00"),
        ("2024-01-31T08:00:00+00:00", "1 month", "2024-02-29T08:00:00+00:00"),  # leap year
        ("2025-03-31T08:00:00+00:00", "1 month", "2025-04-30T08:00:00+00:00"),
        ("2025-01-15T08:00:00+00:00", "3 months", "2025-04-15T08:00:00+00:00"),
        ("2025-11-30T08:00:00+00:00", "3 months", "2026-02-28T08:00:00+00:00"),  # over a year end
        ("2024-02-29T08:00:00+00:00", "1 year", "2025-02-28T08:00:00+00:00"),
        ("2025-10-31T23:30:00-05:00", "1 month", "2025-11-30T23:30:00-05:00"),
    ],
)
def test_adding_a_duration(start: str, duration: str, due: str) -> None:
    result = parse_duration(duration).add_to(at(start))
    assert result == at(due)
    assert result.utcoffset() == at(start).utcoffset()


def test_the_pathways_md_examples_fall_on_the_days_they_name() -> None:
    two = parse_duration("2 business days").add_to(FRIDAY)
    one = parse_duration("1 business day").add_to(at("2025-03-08T10:00:00+00:00"))
    assert FRIDAY.strftime("%A %H:%M") == "Friday 15:00"
    assert two.strftime("%A %H:%M") == "Tuesday 15:00"
    assert one.strftime("%A %H:%M") == "Monday 10:00"


def test_business_days_skip_holidays() -> None:
    easter_monday = date(2025, 4, 21)
    thursday = at("2025-04-17T15:00:00+01:00")
    good_friday = date(2025, 4, 18)
    due = parse_duration("2 business days").add_to(thursday, holidays={good_friday, easter_monday})
    assert due == at("2025-04-23T15:00:00+01:00")  # Tuesday and Wednesday count
    assert parse_duration("2 business days").add_to(thursday) == at("2025-04-21T15:00:00+01:00")


def test_a_holiday_on_a_weekend_changes_nothing() -> None:
    saturday = date(2025, 3, 8)
    assert parse_duration("2 business days").add_to(FRIDAY, holidays=[saturday]) == at(
        "2025-03-11T15:00:00+00:00"
    )


def test_the_weekday_is_judged_in_the_instant_s_own_offset() -> None:
    """Friday 23:00 in New York is already Saturday 04:00 in UTC. The patient's Friday counts:
    one business day later is Monday 23:00 there (judged in UTC it would be Sunday 23:00)."""
    friday_night = at("2025-03-07T23:00:00-05:00")
    assert friday_night.astimezone(UTC).strftime("%A") == "Saturday"

    due = parse_duration("1 business day").add_to(friday_night)

    assert due == at("2025-03-10T23:00:00-05:00")
    assert due.strftime("%A %H:%M") == "Monday 23:00"
    # and the other way: Monday 01:00 at +09:00 is still Sunday in UTC, but it is a Monday there
    monday_tokyo = datetime(2025, 3, 10, 1, 0, tzinfo=timezone(timedelta(hours=9)))
    assert parse_duration("1 business day").add_to(monday_tokyo) == datetime(
        2025, 3, 11, 1, 0, tzinfo=timezone(timedelta(hours=9))
    )


def test_a_holiday_is_judged_on_the_local_date() -> None:
    late_thursday = at("2025-04-17T22:00:00-05:00")  # Friday 03:00 in UTC
    good_friday = date(2025, 4, 18)
    due = parse_duration("1 business day").add_to(late_thursday, holidays=[good_friday])
    assert due == at("2025-04-21T22:00:00-05:00")


def test_durations_are_added_to_aware_instants_only() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_duration("1d").add_to(datetime(2025, 3, 7, 15, 0))  # naive on purpose


def test_a_duration_is_a_frozen_value() -> None:
    assert parse_duration("7d") == Duration(EXACT, 7 * DAY, "7d")
    assert parse_duration("7d") != parse_duration("1 week")  # same length, written differently
    assert parse_duration("7d").seconds == parse_duration("1 week").seconds


# -- masses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kg"),
    [
        ("1.0 kg", 1.0),
        ("1 kg", 1.0),
        ("2.3kg", 2.3),
        ("2 lb", 0.90718474),
        ("2 lbs", 0.90718474),
        ("5 lb", 2.26796185),
        ("500 g", 0.5),
        ("1.5 KG", 1.5),
    ],
)
def test_a_mass_parses_to_kilograms(text: str, kg: float) -> None:
    mass = parse_mass(text)
    assert mass.kg == kg
    assert str(mass) == text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1, "1 has no unit: write it with one, such as '1 kg'"),
        (1.5, "1.5 has no unit: write it with one, such as '1.5 kg'"),
        ("1", "'1' is not a mass: write a number and a unit, such as '1.0 kg'"),
        ("kg", "'kg' is not a mass"),
        ("-1 kg", "'-1 kg' is not a mass"),
        ("1,5 kg", "'1,5 kg' is not a mass"),
        ("150 stone", "'150 stone' has an unknown mass unit 'stone': use kg, g or lb"),
        (True, "expected a mass such as '1.0 kg', got True"),
        (None, "expected a mass such as '1.0 kg', got None"),
    ],
)
def test_a_mass_without_a_known_unit_is_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_mass(value)
    assert str(caught.value).startswith(message)
