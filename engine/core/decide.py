"""The decision core: one input and an instance's state in, decisions and the next state out.

    decide(pathway, state, input, now) -> (state, Decision)

It reads no clock (`now` is passed in), does no I/O and draws no random numbers: identifiers
come from the instance id and a counter, so the same inputs, in the same order, against the same
pathway version, give the same decisions. The state passed in is never changed: the state
returned shares the containers (readings, timers, sets...) that this input left alone, and has
fresh copies of those it changed (copy-on-write: most inputs touch two or three of them, and a
state copied whole for every input was a large part of the cost of an event, and of the garbage
collector's work).

Order of work for an event on an active instance (each step sees the state the previous left):
  1. facts: the event's data, derived measurements (windows), the instance's facts
  2. one evaluation of every condition that concerns this event type
  3. exit: the first exit that holds ends the instance (its actions, then `exit`); nothing else
  4. acknowledgements stop escalation chains
  5. deadlines the event meets are cancelled
  6. the instance learns from the event: readings, last seen (re-arming missing-data timers),
     appointments booked, cancelled, attended
  7. rules that hold fire in file order (stale events fire `if_stale` instead)
  8. deadlines started by this event are armed
An event that enrols first opens the instance (enrol, the trigger's actions, its timers) and
then goes through the steps above like any other.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from engine.catalogue.events import Event
from engine.core.compiled import CompiledPathway
from engine.core.decisions import Action, AuditEntry, Decision, TimerChange
from engine.core.facts import MEASUREMENTS, data_facts, instance_facts, remember, window_facts
from engine.core.inputs import EventInput, Input, TimerInput
from engine.core.moments import fixed
from engine.core.state import InstanceState, OpenChain
from engine.definition.conditions import TRUE, facts_used
from engine.definition.model import ActionTemplate, Anchor, DeadlineStart, Due, Exit

ENROL, EXIT = "enrol", "exit"
_CONTAINERS = ("readings", "last_seen", "booked", "attended", "fired", "chains", "timers")


def instance_id_for(pathway_key: str, patient_id: str, enrolling_input: str) -> str:
    digest = hashlib.sha256(f"{pathway_key}|{patient_id}|{enrolling_input}".encode()).hexdigest()
    return f"i-{digest[:16]}"


def decide(
    pathway: CompiledPathway,
    state: InstanceState | None,
    input_: Input,
    now: datetime,
    holidays: Collection[date] = (),
) -> tuple[InstanceState | None, Decision]:
    """Decide what one input means for one patient's instance of one pathway version."""
    run = _Run(pathway, state.sharing_copy() if state else None, input_, now, holidays)
    if isinstance(input_, TimerInput):
        run.on_timer(input_)
    elif run.state is not None and run.state.active:
        run.on_event(input_.event)
    else:
        run.try_enrol(input_)
    return run.state, run.decision


class _Run:
    def __init__(
        self,
        cp: CompiledPathway,
        state: InstanceState | None,
        input_: Input,
        now: datetime,
        holidays: Collection[date],
    ) -> None:
        self.cp = cp
        self.pathway = cp.pathway
        self.state = state
        self.input = input_
        self.now = now
        self.holidays = holidays
        self.decision = Decision()
        #: the containers of `state` already copied for this input (copy-on-write)
        self.owned: set[str] = set()

    # -- copy-on-write: a container of the state is copied before its first change -----------

    def _own(self, name: str) -> None:
        if name not in self.owned:
            self.owned.add(name)
            state = self._state
            if name == "chains":
                state.chains = {k: c.copy() for k, c in state.chains.items()}
            else:
                setattr(state, name, getattr(state, name).copy())

    def own_timers(self) -> dict[str, datetime]:
        self._own("timers")
        return self._state.timers

    def own_chains(self) -> dict[str, OpenChain]:
        self._own("chains")
        return self._state.chains

    def own_set(self, name: str) -> set[str]:
        self._own(name)
        value: set[str] = getattr(self._state, name)
        return value

    # -- helpers ----------------------------------------------------------------------------

    @property
    def _state(self) -> InstanceState:
        assert self.state is not None
        return self.state

    def audit(
        self,
        kind: str,
        rule: str,
        action_ids: Iterable[str] = (),
        facts: Mapping[str, Any] | None = None,
        note: str = "",
    ) -> None:
        self.decision.audit.append(
            AuditEntry(
                self._state.instance_id, kind, rule, tuple(action_ids), dict(facts or {}), note
            )
        )

    def set_timer(self, key: str, due: datetime) -> None:
        key = _shared(key)  # one string per key, not one per instance: states stay small
        self.own_timers()[key] = due
        self.decision.timers.append(TimerChange(self._state.instance_id, key, due))

    def cancel_timer(self, key: str) -> None:
        if key in self._state.timers:
            del self.own_timers()[key]
            self.decision.timers.append(TimerChange(self._state.instance_id, key, None))

    def due(self, due: Due | None, anchor_event: datetime) -> datetime | None:
        if due is None:
            return None
        moments = [
            o.duration.add_to(
                anchor_event if o.anchor is Anchor.EVENT else self._state.enrolled_at, self.holidays
            )
            for o in due.offsets
        ]
        return max(moments) if due.pick_later else min(moments)

    def emit(
        self, action: str, rule: str, params: Mapping[str, Any], due_by: datetime | None
    ) -> Action:
        state = self._state
        state.actions_count += 1
        fired = Action(
            id=f"{state.instance_id}.{state.actions_count}",
            action=action,
            patient_id=state.patient_id,
            pathway=self.pathway.id,
            pathway_version=self.pathway.version,
            instance_id=state.instance_id,
            rule=rule,
            fired_at=self.now,
            due_by=due_by,
            params=dict(params),
        )
        self.decision.actions.append(fired)
        if action not in (ENROL, EXIT) and action not in state.fired:
            self.own_set("fired").add(action)
        return fired

    def condition_facts(self, spec_id: str, facts: Mapping[str, Any]) -> dict[str, Any]:
        spec = self.cp.specs.get(spec_id)
        if spec is None or spec.condition == TRUE:
            return {}
        return {name: facts[name] for name in sorted(facts_used(spec.condition)) if name in facts}

    def fire(
        self,
        templates: Iterable[ActionTemplate],
        rule: str,
        matched: Collection[str],
        anchor: datetime,
        facts: Mapping[str, Any] | None = None,
        kind: str = "fire",
        audit_facts: Mapping[str, Any] | None = None,
    ) -> None:
        """Fire the templates; audit with the facts the rule's condition saw, or, for a
        decision with no condition (a timer's), with `audit_facts`."""
        ids = []
        for template in templates:
            if template.only_if != TRUE and f"only_if:{template.location}" not in matched:
                continue
            if template.type == "escalate" and "chain" in template.params:
                started = self.start_chain(template, rule)
                ids.extend(started)
                continue
            due_by = self.due(template.due, anchor)
            action = self.emit(template.type, rule, template.params, due_by)
            ids.append(action.id)
            self.arm_action_deadlines(action)
        if ids:
            seen = (
                audit_facts
                if audit_facts is not None
                else self.condition_facts(f"rule:{rule}", facts or {})
            )
            self.audit(kind, rule, ids, seen)

    def arm_action_deadlines(self, action: Action) -> None:
        for deadline in self.cp.deadlines_started_by_action.get(action.action, ()):
            start = action.due_by or action.fired_at
            due = deadline.after.add_to(start, self.holidays) if deadline.after else start
            self.set_timer(f"deadline:{deadline.id}", due)

    # -- escalation chains ------------------------------------------------------------------

    def start_chain(self, template: ActionTemplate, rule: str) -> list[str]:
        name = str(template.params["chain"])
        state = self._state
        if name in state.chains:
            self.audit(
                "suppress",
                rule,
                note=f"escalation chain '{name}' is already open "
                f"(level {state.chains[name].level}); not started again",
            )
            return []
        reason = str(template.params.get("reason", ""))
        urgent = bool(template.params.get("urgent", False))
        action = self.send_level(name, 1, reason, urgent, rule)
        self.own_chains()[name] = OpenChain(1, (action.id,), reason, urgent, rule)
        return [action.id]

    def send_level(self, name: str, level: int, reason: str, urgent: bool, rule: str) -> Action:
        chain = self.pathway.chains[name]
        step = chain.levels[level - 1]
        due_by = (
            step.acknowledge_within.add_to(self.now, self.holidays)
            if step.acknowledge_within
            else None
        )
        params: dict[str, Any] = {
            "role": step.role,
            "reason": reason,
            "level": level,
            "chain": name,
        }
        if urgent:
            params["urgent"] = True
        action = self.emit("escalate", rule, params, due_by)
        if due_by is not None:
            self.set_timer(f"escalation:{name}", due_by)
        return action

    def acknowledge(self, event: Event) -> None:
        state = self._state
        task_id = event.data.get("task_id")
        for name, chain in list(state.chains.items()):
            by_task = task_id is not None and task_id in chain.task_ids
            by_name = (
                task_id is None
                and event.data.get("pathway") == self.pathway.id
                and event.data.get("escalation") == name
            )
            if by_task or by_name:
                del self.own_chains()[name]
                self.cancel_timer(f"escalation:{name}")
                self.audit(
                    "acknowledge",
                    f"{name}.level{chain.level}",
                    chain.task_ids,
                    {"by": event.data.get("by")},
                    note=f"escalation chain '{name}' stopped at level {chain.level}",
                )

    # -- enrolment and exit -------------------------------------------------------------------

    def try_enrol(self, input_: EventInput) -> None:
        event = input_.event
        triggers = [t for t in self.pathway.triggers if t.event_type == event.type]
        if not triggers:
            return
        facts = data_facts(event)
        matched = self.cp.matches(event.type, facts)
        for trigger in triggers:
            if f"trigger:{trigger.id}" not in matched:
                continue
            if trigger.exclusion is not None and f"unless:{trigger.id}" in matched:
                continue
            self.enrol(trigger.id, trigger.actions, event, matched, facts)
            self.on_event(event)
            return

    def enrol(
        self,
        trigger_id: str,
        actions: Iterable[ActionTemplate],
        event: Event,
        matched: Collection[str],
        facts: Mapping[str, Any],
    ) -> None:
        d = fixed(event.occurred_at)
        self.owned = set(_CONTAINERS)  # a new state: every container is its own
        self.state = InstanceState(
            instance_id=instance_id_for(self.pathway.key, event.patient_id, event.id),
            pathway_key=sys.intern(self.pathway.key),
            patient_id=event.patient_id,
            enrolled_at=d,
        )
        enrol = self.emit(ENROL, trigger_id, {}, None)
        self.audit(
            "enrol",
            trigger_id,
            (enrol.id,),
            self.condition_facts(f"trigger:{trigger_id}", facts),
            note=f"enrolled on {self.pathway.key}; the instance's clock starts at {d.isoformat()}",
        )
        self.fire(actions, trigger_id, matched, d, facts)
        for deadline in self.pathway.deadlines:
            if deadline.start is DeadlineStart.ENROLMENT and deadline.after:
                self.set_timer(f"deadline:{deadline.id}", deadline.after.add_to(d, self.holidays))
        for rule in self.pathway.missing_data:
            self.set_timer(f"missing:{rule.id}", rule.silence.add_to(d, self.holidays))
        for exit_ in self.pathway.exits:
            if exit_.after is not None:
                self.set_timer(f"exit:{exit_.reason}", exit_.after.add_to(d, self.holidays))

    def exit(
        self, exit_: Exit, matched: Collection[str], anchor: datetime, facts: Mapping[str, Any]
    ) -> None:
        rule = f"exit.{exit_.reason}"
        self.fire(exit_.actions, rule, matched, anchor, facts)
        state = self._state
        for key in sorted(state.timers):
            self.cancel_timer(key)
        if state.chains:
            self.own_chains().clear()
        state.active = False
        state.exit_reason = exit_.reason
        action = self.emit(EXIT, rule, {"reason": exit_.reason}, None)
        self.audit(
            "exit",
            rule,
            (action.id,),
            self.condition_facts(f"exit:{exit_.reason}", facts),
            note="every pending timer cancelled",
        )

    # -- events on an active instance ---------------------------------------------------------

    def on_event(self, event: Event) -> None:
        state = self._state
        cp = self.cp
        kind = _shared(event.type)  # kept as a key in the state: one string, not one each
        at = fixed(event.occurred_at)
        facts = data_facts(event)
        value = None
        if kind in MEASUREMENTS:
            value = float(facts[MEASUREMENTS[kind]])
            readings = state.readings.get(kind, [])
            facts.update(window_facts(readings, at, value, cp.windows_by_event.get(kind, ())))
        facts.update(instance_facts(state, at, cp.facts_needed.get(kind, frozenset())))
        matched = cp.matches(kind, facts)

        for exit_, exit_id in cp.exits_by_event.get(kind, ()):
            if exit_id in matched:
                self.exit(exit_, matched, at, facts)
                return
        if kind == "task.acknowledged":
            self.acknowledge(event)
        for deadline, key, cancel_id in cp.cancels_by_event.get(kind, ()):
            if key in state.timers and cancel_id in matched:
                self.cancel_timer(key)
                self.audit(
                    "cancel",
                    deadline.id,
                    facts=self.condition_facts(f"cancel:{deadline.id}", facts),
                    note=f"deadline met by {event.type}",
                )
        self.learn(kind, at, facts, value)
        for rule, rule_id in cp.rule_ids.get(kind, ()):
            if rule_id not in matched:
                continue
            if rule.max_age is not None and rule.max_age.add_to(at, self.holidays) < self.now:
                self.audit(
                    "stale",
                    rule.id,
                    facts=self.condition_facts(f"rule:{rule.id}", facts),
                    note=f"event occurred {at.isoformat()}, older than max_age "
                    f"{rule.max_age} when decided",
                )
                self.fire(rule.if_stale, rule.id, matched, at, facts, kind="fire-stale")
                continue
            self.fire(rule.actions, rule.id, matched, at, facts)
            for deadline_id in rule.cancels:
                if f"deadline:{deadline_id}" in state.timers:
                    self.cancel_timer(f"deadline:{deadline_id}")
                    self.audit("cancel", deadline_id, note=f"cancelled by rule {rule.id}")
        for deadline, key, start_id in cp.starts_by_event.get(kind, ()):
            if start_id in matched:
                assert deadline.after is not None
                self.set_timer(key, deadline.after.add_to(at, self.holidays))

    def learn(
        self, event_type: str, at: datetime, facts: Mapping[str, Any], value: float | None
    ) -> None:
        state = self._state
        if value is not None:
            keep = 2 * self.cp.retention.get(event_type, 0)
            self._own("readings")  # remember() replaces the list in it, never changes a list
            remember(state, event_type, at, value, keep)
        watching = self.cp.missing_by_event.get(event_type, ())
        if watching:
            last = state.last_seen.get(event_type)
            if last is None or at > last:
                self._own("last_seen")
                state.last_seen[event_type] = at
                for rule in watching:
                    # Only forward: a first reading that is late (taken before D, or before a
                    # silence already called about) must not pull the timer back, into the past.
                    key, due = f"missing:{rule.id}", rule.silence.add_to(at, self.holidays)
                    pending = state.timers.get(key)
                    if pending is None or due > pending:
                        self.set_timer(key, due)
        kind = facts.get("kind")
        if isinstance(kind, str):
            if event_type == "appointment.booked":
                if kind not in state.booked:
                    self.own_set("booked").add(_shared(kind))
            elif event_type == "appointment.cancelled":
                if kind in state.booked:
                    self.own_set("booked").discard(kind)
            elif event_type == "appointment.attended" and kind not in state.attended:
                self.own_set("attended").add(_shared(kind))

    # -- timers -------------------------------------------------------------------------------

    def on_timer(self, timer: TimerInput) -> None:
        state = self.state
        if state is None or not state.active or state.timers.get(timer.timer) != timer.due_at:
            if state is not None:
                self.audit("ignore", timer.timer, note="timer no longer pending")
            return
        self.cancel_timer(timer.timer)
        kind, _, name = timer.timer.partition(":")
        due = timer.due_at
        if kind == "deadline":
            deadline = next(d for d in self.pathway.deadlines if d.id == name)
            self.fire(deadline.actions, deadline.id, (), due, kind="deadline")
        elif kind == "missing":
            rule = next(r for r in self.pathway.missing_data if r.id == name)
            self.fire(
                rule.actions,
                rule.id,
                (),
                due,
                kind="missing-data",
                audit_facts={"last_seen": _iso(state.last_seen.get(rule.event_type))},
            )
            self.set_timer(timer.timer, rule.silence.add_to(due, self.holidays))
        elif kind == "escalation":
            if name not in state.chains:
                return
            chain = self.own_chains()[name]
            level = chain.level + 1
            action = self.send_level(
                name, level, chain.reason, chain.urgent, f"{name}.level{level}"
            )
            chain.level = level
            chain.task_ids = (*chain.task_ids, action.id)
            self.audit(
                "escalate",
                f"{name}.level{level}",
                (action.id,),
                note=f"level {level - 1} not acknowledged by {due.isoformat()}",
            )
        elif kind == "exit":
            exit_ = next(e for e in self.pathway.exits if e.reason == name)
            self.exit(exit_, (), due, {})


def _shared(text: str) -> str:
    """The interned copy of a string the state keeps (str subclasses are kept as they are)."""
    return sys.intern(text) if type(text) is str else text


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
