"""The public holidays business days are counted with are recorded in the store, from the input
on which they took effect: replay and a restart decide each input with the list it was first
decided with, and a command given none (dispatch, deadletter retry) uses the last recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from engine.catalogue import Event
from engine.core import Registry
from engine.definition.model import Pathway
from engine.replay import replay
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store

#: the day after the Monday discharges of the history: CHF's "interactive contact within 2
#: business days" moves from Wednesday to Thursday
HOLIDAY = date(2026, 3, 3)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def recorded(store: Store, pathways: list[Pathway]) -> Registry:
    """The registry of `store`, with the pathway versions recorded in it (replay reads them)."""
    return open_registry(store, pathways, T0)


def test_replay_and_a_restart_decide_with_the_holidays_recorded(
    store_url: str, tmp_path: Path, pathways: list[Pathway], history: list[Event]
) -> None:
    store = Store.open(store_url)
    registry = recorded(store, pathways)
    DurableEngine(store, registry, holidays=[HOLIDAY]).submit_many(history[:6])
    store.close()  # a crash: the restart re-decides those inputs
    again = Store.open(store_url)
    try:
        DurableEngine(again, registry).submit_many(history[6:])  # none given: the recorded
        assert again.calendar().at(again.last_seq) == {HOLIDAY}
        result = replay(again, keep_timeline=False)
        assert result.identical, result.divergence
        with_holiday = again.actions()
    finally:
        again.close()

    plain = Store.open(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        DurableEngine(plain, recorded(plain, pathways), holidays=[]).submit_many(history)
        assert plain.calendar().starts == []  # no list differing from none: nothing recorded
        without = plain.actions()
    finally:
        plain.close()
    # the holiday mattered: the same history counted without it decides otherwise
    assert [(a["action"], a["due_by"]) for a in with_holiday] != [
        (a["action"], a["due_by"]) for a in without
    ]


def test_a_changed_list_applies_from_the_next_input(
    store: Store, pathways: list[Pathway], history: list[Event]
) -> None:
    registry = recorded(store, pathways)
    DurableEngine(store, registry, holidays=[HOLIDAY]).submit_many(history[:3])
    first = store.last_seq
    store.snapshot()
    DurableEngine(store, registry, holidays=[]).submit_many(history[3:])
    calendar = store.calendar()
    assert calendar.starts == [1, first + 1]
    assert calendar.at(first) == {HOLIDAY}
    assert calendar.at(first + 1) == frozenset()
    assert replay(store, keep_timeline=False).identical
