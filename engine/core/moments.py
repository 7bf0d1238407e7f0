"""Instants the core keeps, with one shared tzinfo object per UTC offset.

Events carry pydantic's `TzInfo` (a new object per parsed timestamp). Two aware datetimes with
different tzinfo objects compare through `utcoffset()` calls on both; with the same object,
Python compares their fields directly, several times faster. Readings are bisected and timers
compared on every event, so the core re-labels each fixed offset with one shared
`datetime.timezone` (UTC itself for +00:00, the object `fromisoformat` gives back too).

Only the label changes: the instant, the offset (so `isoformat()`, the weekday and business-day
arithmetic) are the same. Zones whose offset varies (`zoneinfo`) are left alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

from pydantic_core import TzInfo

_ZONES: dict[timedelta, tzinfo] = {timedelta(0): UTC}
_FIXED = (timezone, TzInfo)


#: the last (instant given, instant returned): the engine loop and the core each ask for the
#: same event's occurred_at in turn (one tuple, so that threads never see half an update)
_last: tuple[datetime | None, datetime | None] = (None, None)


def fixed(moment: datetime) -> datetime:
    """`moment` with the shared tzinfo of its (fixed) UTC offset."""
    global _last
    zone = moment.tzinfo
    if zone is UTC or type(zone) not in _FIXED:
        return moment
    last = _last
    if last[0] is moment:
        assert last[1] is not None
        return last[1]
    offset = moment.utcoffset()
    assert offset is not None
    shared = _ZONES.get(offset)
    if shared is None:
        shared = _ZONES.setdefault(offset, timezone(offset))
    result = moment if zone is shared else moment.replace(tzinfo=shared)
    _last = (moment, result)
    return result
