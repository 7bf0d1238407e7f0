"""The service's single writer (engine.service.ingest), in-process on a real store: timers on a
wall-clock deadline whatever the input, bounded work in flight, stopping within a deadline,
duplicates told from conflicts, and timers that fire late recorded as late."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from engine.catalogue import Event
from engine.definition.loader import check_paths
from engine.replay import replay
from engine.runtime.durable import DurableEngine, open_registry
from engine.service.ingest import Busy, Ingestor, Stopping
from engine.store import Store
from engine.store import schema as t

ROOT = Path(__file__).resolve().parents[2]


def event(event_id: str, type_: str, patient: str, at: datetime, **data: Any) -> Event:
    return Event.model_validate(
        {"id": event_id, "type": type_, "patient_id": patient, "occurred_at": at.isoformat(),
         "data": data}
    )


def discharge(patient: str, at: datetime) -> Event:
    return event(f"d-{patient}", "encounter.discharged", patient, at, encounter_id=f"e-{patient}",
                 diagnoses=["I50.9"], disposition="01")


def weight(event_id: str, patient: str, at: datetime, kg: float = 80.0) -> Event:
    return event(event_id, "observation.weight", patient, at, value=kg, unit="kg")


def engine_on(url: str) -> DurableEngine:
    pathways, problems = check_paths([ROOT / "pathways"])
    assert not problems
    store = Store.open(url)
    return DurableEngine(store, open_registry(store, pathways, datetime.now(UTC)))


@pytest.fixture
def engine(store_url: str) -> Iterator[DurableEngine]:
    opened = engine_on(store_url)
    yield opened
    opened.close()


def timer_rows(store: Store, timer: str) -> list[sa.Row[Any]]:
    with store.engine.connect() as conn:
        return list(conn.execute(
            sa.select(t.inputs).where(t.inputs.c.kind == "timer", t.inputs.c.type == timer)
            .order_by(t.inputs.c.seq)))


def test_timers_fire_on_time_while_old_events_stream_in_without_a_gap(
    engine: DurableEngine,
) -> None:
    """Before the fix the writer fired timers only after a whole tick with no input, so a
    stream of hour-old readings held every timer back until the stream stopped."""
    now = datetime.now(UTC)
    tick = 0.1
    # missing-weights timers (48 h after a discharge with no weight since) coming due 0.5 s,
    # 1 s and 1.5 s into the stream
    dues = [now + timedelta(seconds=s) for s in (0.5, 1.0, 1.5)]
    engine.submit_many([discharge(f"late-{n}", due - timedelta(hours=48))
                        for n, due in enumerate(dues)])
    ingestor = Ingestor(engine, lambda: datetime.now(UTC), tick_seconds=tick)
    ingestor.start()
    stop = threading.Event()

    def stream() -> None:  # hour-old weights of other patients, without a pause
        n = 0
        while not stop.is_set():
            n += 1
            ingestor.submit([weight(f"w-{n}", f"other-{n % 50}", now - timedelta(hours=1))])
            time.sleep(0.002)

    sender = threading.Thread(target=stream)
    sender.start()
    time.sleep(2.5)
    stop.set()
    sender.join()
    ingestor.stop()
    rows = timer_rows(engine.store, "missing:missing_weights")
    assert len(rows) == 3
    for row in rows:
        late = datetime.fromisoformat(row.decided_at) - datetime.fromisoformat(row.occurred_at)
        # within one tick, plus a commit's time
        assert timedelta(0) <= late <= timedelta(seconds=tick + 0.4), late


def test_work_in_flight_is_bounded(engine: DurableEngine) -> None:
    now = datetime.now(UTC)
    ingestor = Ingestor(engine, lambda: datetime.now(UTC), max_inflight=3)
    # the writer is not running yet: what is submitted waits
    first = ingestor.submit([weight("a", "p", now), weight("b", "p", now)])
    second = ingestor.submit([weight("c", "p", now)])
    with pytest.raises(Busy, match="3 event"):
        ingestor.submit([weight("d", "p", now)])
    assert ingestor.inflight == 3
    ingestor.start()
    assert first.result(10).accepted == ["a", "b"]
    assert second.result(10).accepted == ["c"]
    # a group larger than the limit is taken when nothing else waits (or it never could be)
    big = ingestor.submit([weight(f"big-{n}", "p", now) for n in range(5)])
    assert len(big.result(10).accepted) == 5
    assert ingestor.inflight == 0
    ingestor.stop()


def test_stopping_refuses_new_work_commits_what_is_queued_and_keeps_the_deadline(
    engine: DurableEngine,
) -> None:
    now = datetime.now(UTC)
    ingestor = Ingestor(engine, lambda: datetime.now(UTC))
    queued = ingestor.submit([weight("q1", "p", now)])
    ingestor.close_intake()
    with pytest.raises(Stopping):
        ingestor.submit([weight("q2", "p", now)])
    # the service's own inputs (the dispatcher's outcomes) are still taken
    internal = ingestor.submit([weight("q3", "p", now)], internal=True)
    ingestor.start()
    ingestor.stop(grace_seconds=10)
    assert queued.result(1).accepted == ["q1"] and internal.result(1).accepted == ["q3"]
    with pytest.raises(Stopping):
        ingestor.submit([weight("q4", "p", now)], internal=True)


def test_what_is_still_queued_at_the_deadline_is_refused_not_lost(engine: DurableEngine) -> None:
    now = datetime.now(UTC)
    ingestor = Ingestor(engine, lambda: datetime.now(UTC))
    futures = [ingestor.submit([weight(f"x{n}", "p", now)]) for n in range(3)]
    ingestor.close_intake(drain_seconds=0)  # the deadline has passed when the writer starts
    ingestor.start()
    ingestor.stop()
    for future in futures:
        with pytest.raises(Stopping):
            future.result(1)
    assert engine.store.known_event_ids(["x0", "x1", "x2"]) == set()  # nothing half-done


def test_an_id_sent_again_with_another_body_is_a_conflict_not_a_duplicate(
    engine: DurableEngine,
) -> None:
    at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    ingestor = Ingestor(engine, lambda: datetime.now(UTC))
    ingestor.start()
    first = ingestor.submit([weight("w1", "p1", at, 80.0)]).result(10)
    assert first.accepted == ["w1"]
    same_instant = at.astimezone(ZoneInfo("Europe/Paris"))
    receipt = ingestor.submit([
        weight("w1", "p1", same_instant, 80.0),  # the same event, the same instant: duplicate
        weight("w1", "p1", at, 81.0),  # another value under the same id: conflict
        weight("w1", "p2", at, 80.0),  # another patient: conflict
        weight("w2", "p1", at, 80.0),
        weight("w2", "p1", at + timedelta(minutes=1), 80.0),  # in the same group: conflict
    ]).result(10)
    ingestor.stop()
    assert receipt.accepted == ["w2"]
    assert receipt.duplicates == ["w1"]
    assert receipt.conflicts == ["w1", "w1", "w2"]
    with engine.store.engine.connect() as conn:
        kinds = conn.execute(sa.select(t.inputs.c.input_id, t.inputs.c.kind)
                             .where(t.inputs.c.input_id.in_(["w1", "w2"]))
                             .order_by(t.inputs.c.seq)).all()
    assert [tuple(k) for k in kinds] == [("w1", "event"), ("w1", "duplicate"), ("w2", "event")]


def test_a_timer_due_while_the_service_was_down_is_recorded_as_late(store_url: str) -> None:
    """The weight_gain chain's level 1 (hf_nurse, acknowledge within 4 h) is not acknowledged;
    the service is down across its due time. After the restart it fires late: recorded with
    its due time and the time it really fired, and level 2's window (2 h) counts from then."""
    t0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    clock = [t0]
    engine = engine_on(store_url)
    ingestor = Ingestor(engine, lambda: clock[0], tick_seconds=3600)
    ingestor.start()
    ingestor.submit([discharge("p1", t0 - timedelta(days=1)),
                     weight("w1", "p1", t0 - timedelta(hours=1), 80.0),
                     weight("w2", "p1", t0, 81.5)]).result(10)  # a 1.5 kg gain in 24 h
    (state,) = [s for s in engine.memory.instances.values() if s.patient_id == "p1"]
    due = state.timers["escalation:weight_gain"]
    assert due == t0 + timedelta(hours=4)
    # a crash: no clean stop, no snapshot
    ingestor.close_intake()
    engine.store.close()

    back = due + timedelta(hours=3)  # the service comes back 3 h after the due time
    clock[0] = back
    engine = engine_on(store_url)
    ingestor = Ingestor(engine, lambda: clock[0], tick_seconds=0.05)
    ingestor.start()
    time.sleep(0.3)
    ingestor.stop()
    (fired,) = timer_rows(engine.store, "escalation:weight_gain")
    assert datetime.fromisoformat(fired.occurred_at) == due
    assert datetime.fromisoformat(fired.recorded_at) == back
    assert datetime.fromisoformat(fired.decided_at) == back
    level2 = [a for a in engine.store.actions(patient_id="p1") if a["rule"].endswith("level2")]
    assert [datetime.fromisoformat(a["due_by"]) for a in level2] == [back + timedelta(hours=2)]
    assert engine.memory.instances[state.instance_id].timers["escalation:weight_gain"] == \
        back + timedelta(hours=2)
    engine.close()
    with contextlib.closing(Store.open(store_url)) as store:
        assert replay(store).identical


def test_requests_that_waited_too_long_in_the_queue_turn_new_ones_away(
    engine: DurableEngine,
) -> None:
    now = datetime.now(UTC)
    release = threading.Event()
    known = engine.store.known_events

    def stalled(ids: Any) -> Any:  # the store stops answering for a while
        release.wait(10)
        return known(ids)

    engine.store.known_events = stalled  # type: ignore[method-assign]
    ingestor = Ingestor(engine, lambda: datetime.now(UTC), max_queue_seconds=0.1)
    first = ingestor.submit([weight("a", "p", now)])
    time.sleep(0.3)  # it waits 0.3 s before the writer takes it
    ingestor.start()
    time.sleep(0.1)
    with pytest.raises(Busy, match=r"wait 0\.3 s"):
        ingestor.submit([weight("b", "p", now)])
    release.set()
    assert first.result(10).accepted == ["a"]
    # the queue is empty again: taken
    assert ingestor.submit([weight("c", "p", now)]).result(10).accepted == ["c"]
    ingestor.stop()
