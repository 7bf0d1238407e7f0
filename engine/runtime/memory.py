"""The engine loop around the decision core, on a virtual clock: instances in dicts, timers in
a heap. `carepath simulate` runs on it; `DurableEngine` (engine.runtime.durable) adds the store.

Every input goes the same way: dedupe, decide, apply, journal. Before an event, every timer due
at or before its occurred_at fires, in due-time order (ties by patient, pathway, timer key), each
as an input of its own, decided with `now` = its due time. An event is decided with `now` = the
later of the clock and its occurred_at: the virtual clock never runs backwards, so a late event
is decided at the time it arrived.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

from engine.catalogue import Event
from engine.core import Decision, EventInput, InstanceState, Registry, TimerInput, route
from engine.core.inputs import Input
from engine.core.moments import fixed

#: Called for every input once decided: (input or None for a duplicate event, the event or
#: timer's patient, now, decision, changed instances).
Journal = Callable[[Input | Event, str, datetime, Decision, list[InstanceState]], None]


#: A pending timer in the heap: (due in UTC, patient id, pathway version, key, arming counter,
#: instance id, due as armed with its own offset). Timers due at the same instant fire in order
#: of patient, pathway, then key (deadline:, escalation:, exit:, missing:): an order that the
#: stored state alone gives again after a restart. The arming counter is unique, so the fields
#: after it are never compared. A plain tuple: ordered in C; a dataclass with order=True costs a
#: Python call per comparison, and a heap push or pop makes a dozen of them.
_Pending = tuple[datetime, str, str, str, int, str, datetime]
_DUE: Final = 0
_KEY: Final = 3
_INSTANCE: Final = 5
_LOCAL_DUE: Final = 6


@dataclass
class MemoryEngine:
    registry: Registry
    holidays: Collection[date] = ()
    journal: Journal | None = None
    instances: dict[str, InstanceState] = field(default_factory=dict)
    #: (patient id, pathway id) -> the latest instance id
    latest: dict[tuple[str, str], str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    clock: datetime | None = None
    _heap: list[_Pending] = field(default_factory=list)
    _armed: int = 0

    def submit(self, event: Event, received_at: datetime | None = None) -> Decision:
        """Fire the timers due by the event, then decide the event (a duplicate does nothing).

        `received_at` is the wall-clock time a live service received the event; without it (a
        simulation) the event is taken to arrive when it occurred. Either way only the timers due
        by the event's occurred_at fire before it: a booking made on day 1 but received on day 6
        (a backlog, a restart) still meets a day-5 deadline that had not fired yet. The timers
        due between then and now fire on the service's next tick."""
        decision = self.advance(event.occurred_at, received_at)
        occurred = fixed(event.occurred_at)  # the same instant, offset and isoformat()
        horizon = occurred if received_at is None else max(occurred, fixed(received_at))
        now = max(self.clock, horizon) if self.clock else horizon
        if event.id in self.seen:
            if self.journal:
                self.journal(event, event.patient_id, now, Decision(), [])
            return decision
        self.seen.add(event.id)
        self.clock = now
        input_ = EventInput(event, recorded_at=now)
        changed, part = route(
            self.registry, self._latest_of(event.patient_id), input_, now, self.holidays
        )
        self._apply(changed, part)
        if self.journal:
            self.journal(input_, event.patient_id, now, part, changed)
        decision.extend(part)
        return decision

    def advance(self, until: datetime, at: datetime | None = None) -> Decision:
        """Fire every pending timer due at or before `until`.

        `at`: the wall-clock time a live service fires them at. A timer due before it fires
        late, and is decided (and recorded) at `at`, not back-dated to its due time: an outage
        or a backlog shows in the record, and what the firing starts (the next escalation
        level's window) counts from when it really happened. Without it (a simulation, a
        replay's virtual clock) timers fire at their due times."""
        decision = Decision()
        until = fixed(until)  # compared with UTC due times on every event: the fast path
        floor = fixed(at) if at is not None else None
        for due, _, _, key, _, instance_id, local_due in self._due(until):
            state = self.instances[instance_id]
            # A timer armed already overdue (by a late event) fires now, not in the past:
            # the clock never runs backwards.
            self.clock = max(self.clock, due) if self.clock else due
            if floor is not None and floor > self.clock:
                self.clock = floor
            now = local_due if due >= self.clock else self.clock
            timer = TimerInput(instance_id, key, local_due, recorded_at=self.clock)
            changed, part = route(self.registry, {state.pathway_key: state}, timer, now,
                                  self.holidays)
            self._apply(changed, part)
            if self.journal:
                self.journal(timer, state.patient_id, now, part, changed)
            decision.extend(part)
        return decision

    def redo(
        self, input_: Input, decided_at: datetime, holidays: Collection[date]
    ) -> tuple[list[InstanceState], Decision]:
        """Decide a recorded input again and apply it, journaling nothing: how a restart brings
        the states of the latest snapshot up to the end of the log. Returns the instances it
        changed and the decision.

        The input is decided at the `now` it was decided at the first time (`decided_at` gives
        the instant), carried on the clock as `submit` and `advance` carry it, so that the UTC
        offset it is labelled with (which due times and business days are counted in) comes out
        as it did; with the `holidays` it was decided with."""
        if isinstance(input_, TimerInput):
            due = input_.due_at.astimezone(UTC)
            clock = max(self.clock, due) if self.clock else due
            if clock != input_.recorded_at:  # the clock had run on (recorded_at is where to)
                clock = input_.recorded_at
            self.clock = clock
            now = fixed(input_.due_at) if due >= clock else clock
            state = self.instances.get(input_.instance_id)
            scope = {state.pathway_key: state} if state else {}
        else:
            occurred = fixed(input_.event.occurred_at)
            now = max(self.clock, occurred) if self.clock else occurred
            if now != decided_at:  # received after it occurred: decided at the time it arrived
                now = decided_at
            self.clock = now
            scope = self._latest_of(input_.event.patient_id)
        changed, decision = route(self.registry, scope, input_, now, holidays)
        self._apply(changed, decision)
        return changed, decision

    def _latest_of(self, patient_id: str) -> dict[str, InstanceState]:
        """The patient's latest instance of each pathway it has one of, by pathway id."""
        return {
            pathway_id: self.instances[iid]
            for pathway_id in self.registry.pathway_ids()
            if (iid := self.latest.get((patient_id, pathway_id))) is not None
        }

    def next_due(self) -> datetime | None:
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][_DUE] if self._heap else None

    def _live(self, pending: _Pending) -> bool:
        state = self.instances.get(pending[_INSTANCE])
        return state is not None and state.timers.get(pending[_KEY]) == pending[_LOCAL_DUE]

    def _due(self, until: datetime) -> Iterator[_Pending]:
        while self._heap and self._heap[0][_DUE] <= until:
            pending = heapq.heappop(self._heap)
            if self._live(pending):
                yield pending

    def restore(self, states: Iterator[InstanceState], clock: datetime | None) -> None:
        """Rebuild from stored instance states (oldest first) and re-arm their timers."""
        for state in states:
            self._apply([state], Decision())
            for key, due in sorted(state.timers.items(), key=lambda kv: (kv[1], kv[0])):
                self._arm(state.instance_id, key, due)
        self.clock = clock

    def _apply(self, changed: list[InstanceState], decision: Decision) -> None:
        for state in changed:
            self.instances[state.instance_id] = state
            self.latest[(state.patient_id, state.pathway_key.split("@", 1)[0])] = state.instance_id
        for change in decision.timers:
            if change.due_at is not None:
                self._arm(change.instance_id, change.timer, change.due_at)

    def _arm(self, instance_id: str, key: str, due: datetime) -> None:
        self._armed += 1
        state = self.instances[instance_id]
        heapq.heappush(
            self._heap,
            (due.astimezone(UTC), state.patient_id, state.pathway_key, key, self._armed,
             instance_id, due),
        )
