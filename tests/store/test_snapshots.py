"""Snapshots: instance states and timers are written every so many inputs and at a clean stop;
a restart reads the latest snapshot and re-decides the inputs after it. Crashing at any point
and restarting must end exactly where an uninterrupted run ends, offsets of `now` included."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.catalogue import Event
from engine.core import Registry
from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.runtime.durable import DurableEngine
from engine.store import Store
from engine.store import schema as t

#: what a run records; the snapshots themselves (and so each instance's state_seq, and the
#: head of their chain) depend on when the writer stopped, not on what was decided
COMPARED = {
    t.inputs: list(t.inputs.c),
    t.audit: list(t.audit.c),
    t.outbox: list(t.outbox.c),
    t.instances: [c for c in t.instances.c if c.name != "state_seq"],
    t.timers: list(t.timers.c),
    t.chain_heads: list(t.chain_heads.c),
}
WHERE = {t.chain_heads: t.chain_heads.c.chain != "snapshots"}


def recorded(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: [
                    tuple(r)
                    for r in conn.execute(
                        sa.select(*columns)
                        .where(WHERE.get(table, sa.true()))
                        .order_by(*table.primary_key.columns)
                    )
                ]
                for table, columns in COMPARED.items()
            }
    finally:
        engine.dispose()


def ingest(
    url: str,
    registry: Registry,
    events: Sequence[Event],
    crash_after: Sequence[int] = (),
    snapshot_every: int = 50_000,
    received_at: datetime | None = None,
) -> None:
    """Two events per commit; after each index in `crash_after` the writer stops without a
    snapshot (as after SIGKILL: only what was committed remains) and a new one takes over."""
    start = 0
    for stop in [*crash_after, len(events)]:
        store = Store.open(url)
        engine = DurableEngine(store, registry, snapshot_every=snapshot_every)
        for i in range(start, stop, 2):
            engine.submit_many(events[i : min(i + 2, stop)], received_at=received_at)
        start = stop
        if stop < len(events):
            store.close()  # a crash: no snapshot
        else:
            engine.close()


def in_zone(events: Sequence[Event], hours: int) -> list[Event]:
    """The same events, each time written with a UTC offset of `hours`."""
    zone = timezone(timedelta(hours=hours))
    return [e.model_copy(update={"occurred_at": e.occurred_at.astimezone(zone)}) for e in events]


@pytest.mark.parametrize("offset", [0, 2, -5])
def test_a_crash_at_any_point_ends_as_an_uninterrupted_run(
    tmp_path: Path, registry: Registry, history: list[Event], offset: int
) -> None:
    events = in_zone(history, offset)
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    ingest(reference, registry, events)
    expected = recorded(reference)
    assert expected["timers"], "the history leaves timers pending"
    for cut in range(1, len(events)):
        url = f"sqlite:///{tmp_path / f'crash-{cut}.db'}"
        ingest(url, registry, events, crash_after=[cut])
        assert recorded(url) == expected, f"crashed after event {cut}"


def test_crashes_between_periodic_snapshots(
    store_url: str, tmp_path: Path, registry: Registry, history: list[Event]
) -> None:
    """Snapshots every 3 inputs and crashes on either side of them, on both databases."""
    events = in_zone(history, 1)
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    ingest(reference, registry, events)
    ingest(store_url, registry, events, crash_after=[3, 6, 7], snapshot_every=3)
    assert recorded(store_url) == recorded(reference)
    store = Store.open(store_url)
    try:
        with store.engine.connect() as conn:
            taken = conn.execute(sa.select(t.snapshots.c.seq).order_by(t.snapshots.c.seq))
            seqs = list(taken.scalars())
        assert len(seqs) >= 4
        assert seqs[-1] == store.last_seq == store.snapshot_seq
    finally:
        store.close()


def test_crashes_after_timers_fired_late(
    tmp_path: Path, registry: Registry, history: list[Event]
) -> None:
    """Everything received a fortnight late (a backlog): timers due before an event fire
    before it but at the clock the late arrivals pushed on, not at their due times. A restart
    must decide them at that clock too."""
    late = datetime(2026, 3, 20, tzinfo=UTC)
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    ingest(reference, registry, history, received_at=late)
    expected = recorded(reference)
    for cut in range(1, len(history)):
        url = f"sqlite:///{tmp_path / f'late-{cut}.db'}"
        ingest(url, registry, history, [cut], snapshot_every=3, received_at=late)
        assert recorded(url) == expected, f"crashed after event {cut}"


def test_snapshots_are_taken_every_n_inputs_and_hold_the_engines_states(
    store: Store, registry: Registry, history: list[Event]
) -> None:
    engine = DurableEngine(store, registry, snapshot_every=4)
    for event in history:
        engine.submit_many([event])
        store.settle_snapshot(wait=True)  # PostgreSQL's is written behind the writer
        assert store.last_seq - store.snapshot_seq < 4
    with store.engine.connect() as conn:
        taken = list(conn.execute(sa.select(t.snapshots.c.seq)).scalars())
    assert len(taken) >= 3  # after each group that took the log 4 or more past the last
    held = {s.instance_id: s.as_dict() for s in engine.memory.instances.values()}
    store.snapshot()  # a no-op if the last input was just snapshotted
    assert {s.instance_id: s.as_dict() for s in store.instances()} == held


def test_between_snapshots_the_store_has_every_instance_and_the_engine_its_state(
    store: Store, registry: Registry, history: list[Event]
) -> None:
    """Rows exist from the commit that created an instance (found by id and by patient at
    once); their state is as of the latest snapshot, the running engine's as of now."""
    engine = DurableEngine(store, registry)
    engine.submit_many(history)
    held = engine.memory.instances
    for instance_id, state in held.items():
        stored = store.instance(instance_id)
        assert stored is not None
        assert engine.current(stored) is state
        assert [s.instance_id for s in store.instances_of(state.patient_id)]
    assert list(store.instances()) == []  # no snapshot yet: a restart re-decides it all


def test_a_restart_refuses_a_tail_that_decides_differently_now(
    store_url: str, registry: Registry, history: list[Event]
) -> None:
    """An input recorded after the latest snapshot must decide, again, the actions it
    recorded; if not (the code or a pathway changed under a crash), the engine does not
    start, and says which input."""
    store = Store.open(store_url)
    DurableEngine(store, registry).submit_many(history)
    store.close()  # a crash: no snapshot
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        seq, payload = conn.execute(
            sa.select(t.outbox.c.seq, t.outbox.c.payload).order_by(t.outbox.c.seq).limit(1)
        ).one()
        conn.execute(
            t.outbox.update()
            .where(t.outbox.c.seq == seq, t.outbox.c.payload == payload)
            .values(payload=payload.replace('"action":"', '"action":"x', 1))
        )
    engine.dispose()
    again = Store.open(store_url)
    try:
        with pytest.raises(StoreError, match=rf"input {seq} \(.*decides differently"):
            DurableEngine(again, registry)
    finally:
        again.close()


def test_no_snapshot_without_every_change_since_the_last(
    store_url: str, registry: Registry, history: list[Event]
) -> None:
    """A store opened on an unsnapshotted tail knows nothing of the states it changed: a
    snapshot marked there would make the next restart skip that tail. Only the engine's
    restore, which re-decides it, makes a snapshot possible again."""
    store = Store.open(store_url)
    DurableEngine(store, registry).submit_many(history)
    store.close()  # a crash: no snapshot
    again = Store.open(store_url)
    try:
        with pytest.raises(StoreError, match="every state changed since the latest"):
            again.snapshot()
        DurableEngine(again, registry)  # re-decides the tail, then snapshots
        assert again.snapshot_seq == again.last_seq
    finally:
        again.close()


def test_an_engine_that_cannot_re_read_the_store_after_a_failed_commit_stops_deciding(
    store: Store, registry: Registry, history: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory holds the batch that failed to commit; if the store cannot be read back to
    undo it, deciding a resent event on top of it would apply it twice."""
    engine = DurableEngine(store, registry)
    engine.submit_many(history[:4])

    def down(*_args: Any, **_kwargs: Any) -> None:
        raise StoreError("connection refused")

    monkeypatch.setattr(store, "write", down)
    monkeypatch.setattr(store, "instances", down)
    with pytest.raises(StoreError, match="connection refused"):
        engine.submit_many(history[4:6])
    monkeypatch.undo()
    with pytest.raises(StoreError, match="could not re-read the store"):
        engine.submit_many(history[4:6])
    with pytest.raises(StoreError, match="could not re-read the store"):
        engine.advance(datetime(2026, 4, 1, tzinfo=UTC))
    last = store.last_seq
    engine.close()  # no snapshot of what memory holds
    reopened = Store.open(store.engine.url.render_as_string(hide_password=False))
    try:
        assert reopened.last_seq == last
        assert reopened.snapshot_seq == 0
    finally:
        reopened.close()


def test_the_holiday_list_changed_twice_before_any_input(
    store: Store, registry: Registry, history: list[Event]
) -> None:
    first, second = date(2026, 3, 3), date(2026, 3, 4)
    DurableEngine(store, registry, holidays=[first]).submit_many(history[:2])
    store.snapshot()
    DurableEngine(store, registry, holidays=[second])
    DurableEngine(store, registry, holidays=[first, second])
    assert store.calendar().at(store.last_seq + 1) == {first, second}
    DurableEngine(store, registry, holidays=[first])  # back to the list in effect: no change
    assert store.calendar().starts == [1]


def test_a_snapshot_prepared_in_slices_between_commits(
    store_url: str, tmp_path: Path, registry: Registry, history: list[Event],
    pathways: list[Pathway], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A periodic snapshot is serialized a slice per flush while commits go on, and written
    once whole, as of the input it was begun at: crashes before, during and after its slices
    end as an uninterrupted run, instances that ended while it was prepared stay inactive in
    the table, and the store verifies intact."""
    from engine.runtime import durable
    from engine.store.verify import verify

    monkeypatch.setattr(durable, "SNAPSHOT_SLICE", 1)  # one state per flush
    events = in_zone(history, 0)
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    for url in (reference, store_url):  # the versions the instances pin, for verify
        with contextlib.closing(Store.open(url)) as fresh:
            fresh.save_pathways(pathways, datetime(2026, 3, 1, tzinfo=UTC))
    ingest(reference, registry, events)
    ingest(store_url, registry, events, crash_after=[4, 5, 9], snapshot_every=3)
    assert recorded(store_url) == recorded(reference)
    store = Store.open(store_url)
    try:
        assert [r.problem for r in verify(store) if r.problem] == []
        with store.engine.connect() as conn:
            taken = list(conn.execute(sa.select(t.snapshots.c.seq)).scalars())
        assert len(taken) >= 3
    finally:
        store.close()


def test_a_staged_snapshot_is_written_as_of_its_input(
    store: Store, registry: Registry, history: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.runtime import durable

    monkeypatch.setattr(durable, "SNAPSHOT_SLICE", 0)  # flushes leave it to this test
    engine = DurableEngine(store, registry)
    engine.submit_many(history[:6])
    staged_at = store.last_seq
    assert store.begin_snapshot()
    assert not store.begin_snapshot()  # one at a time
    states = {s.instance_id: s.as_dict() for s in engine.memory.instances.values()}
    assert not store.prepare_snapshot(1) or len(states) == 1
    engine.submit_many(history[6:])  # commits go on meanwhile
    assert store.finish_snapshot() == len(states)
    assert store.snapshot_seq == staged_at < store.last_seq
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.instances.c.instance_id, t.instances.c.state,
                                      t.instances.c.state_seq)).all()
    written = {r.instance_id: r for r in rows if r.state_seq <= staged_at}
    assert set(written) == set(states)
    for instance_id, state in states.items():
        assert sa_json(written[instance_id].state) == state  # as of the staged input
    engine.close()  # the rest, at once
    assert store.snapshot_seq == store.last_seq


def sa_json(text: str) -> Any:
    return json.loads(text)
