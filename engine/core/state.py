"""The state of one patient's instance of one pathway version.

It holds only what decisions need: when the instance started (D), the readings inside the
longest window any rule looks back over, when each watched event type was last seen, which
appointment kinds are booked or attended, which action types have fired, the open escalation
chains and the pending timers. Everything else is in the input log.

Timer keys name what the timer does, one pending timer per key:

    deadline:<deadline id>     missing:<rule id>     escalation:<chain>     exit:<reason>
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class OpenChain:
    """An escalation chain waiting for acknowledgement."""

    level: int  # 1-based level of the latest escalation sent
    task_ids: tuple[str, ...]  # the action id of each level sent so far
    reason: str
    urgent: bool
    rule: str  # the rule that started the chain

    def copy(self) -> OpenChain:
        return OpenChain(self.level, self.task_ids, self.reason, self.urgent, self.rule)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "task_ids": list(self.task_ids),
            "reason": self.reason,
            "urgent": self.urgent,
            "rule": self.rule,
        }


_new_state = object.__new__


@dataclass(slots=True)
class InstanceState:
    instance_id: str
    pathway_key: str
    patient_id: str
    enrolled_at: datetime  # D, with the offset of the enrolling event
    active: bool = True
    exit_reason: str | None = None
    actions_count: int = 0  # for deterministic action ids
    #: (occurred_at, kg) of readings, sorted by occurred_at; pruned to the longest window.
    #: Each list is replaced, never changed in place, so that copies can share it.
    readings: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    booked: set[str] = field(default_factory=set)
    attended: set[str] = field(default_factory=set)
    fired: set[str] = field(default_factory=set)
    chains: dict[str, OpenChain] = field(default_factory=dict)
    timers: dict[str, datetime] = field(default_factory=dict)

    def copy(self) -> InstanceState:
        """A copy that can be changed without touching this one.

        Built field by field (the core copies the state for every input: this is hot). The
        containers are new and their items (instants, numbers, strings, tuples) immutable and
        shared; open chains are copied. The lists of readings are shared: they are never
        changed in place (`facts.remember` replaces a list when it adds a reading)."""
        new = _new_state(InstanceState)
        new.instance_id = self.instance_id
        new.pathway_key = self.pathway_key
        new.patient_id = self.patient_id
        new.enrolled_at = self.enrolled_at
        new.active = self.active
        new.exit_reason = self.exit_reason
        new.actions_count = self.actions_count
        new.readings = self.readings.copy()
        new.last_seen = self.last_seen.copy()
        new.booked = self.booked.copy()
        new.attended = self.attended.copy()
        new.fired = self.fired.copy()
        new.chains = (
            {
                k: OpenChain(c.level, c.task_ids, c.reason, c.urgent, c.rule)
                for k, c in self.chains.items()
            }
            if self.chains
            else {}
        )
        new.timers = self.timers.copy()
        return new

    def sharing_copy(self) -> InstanceState:
        """A new state object that shares this one's containers (the decision core's
        copy-on-write): whoever changes a container of it must first replace that container
        with a copy of its own (see `decide._Run`), so that this state never changes."""
        new = _new_state(InstanceState)
        new.instance_id = self.instance_id
        new.pathway_key = self.pathway_key
        new.patient_id = self.patient_id
        new.enrolled_at = self.enrolled_at
        new.active = self.active
        new.exit_reason = self.exit_reason
        new.actions_count = self.actions_count
        new.readings = self.readings
        new.last_seen = self.last_seen
        new.booked = self.booked
        new.attended = self.attended
        new.fired = self.fired
        new.chains = self.chains
        new.timers = self.timers
        return new

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (for the store, the API and golden tests)."""
        return {
            "instance_id": self.instance_id,
            "pathway": self.pathway_key,
            "patient_id": self.patient_id,
            "enrolled_at": self.enrolled_at.isoformat(),
            "active": self.active,
            "exit_reason": self.exit_reason,
            "actions_count": self.actions_count,
            "readings": {
                k: [[t.isoformat(), kg] for t, kg in v] for k, v in sorted(self.readings.items())
            },
            "last_seen": {k: v.isoformat() for k, v in sorted(self.last_seen.items())},
            "booked": sorted(self.booked),
            "attended": sorted(self.attended),
            "fired": sorted(self.fired),
            "chains": {k: c.as_dict() for k, c in sorted(self.chains.items())},
            "timers": {k: v.isoformat() for k, v in sorted(self.timers.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceState:
        parse = datetime.fromisoformat
        name = _shared  # names every instance repeats (keys, kinds, actions): one copy each
        return cls(
            instance_id=data["instance_id"],
            pathway_key=name(data["pathway"]),
            patient_id=data["patient_id"],
            enrolled_at=parse(data["enrolled_at"]),
            active=data["active"],
            exit_reason=data["exit_reason"],
            actions_count=data["actions_count"],
            readings={
                name(k): [(parse(t), float(kg)) for t, kg in v] for k, v in data["readings"].items()
            },
            last_seen={name(k): parse(v) for k, v in data["last_seen"].items()},
            booked={name(k) for k in data["booked"]},
            attended={name(k) for k in data["attended"]},
            fired={name(k) for k in data["fired"]},
            chains={
                k: OpenChain(c["level"], tuple(c["task_ids"]), c["reason"], c["urgent"], c["rule"])
                for k, c in data["chains"].items()
            },
            timers={name(k): parse(v) for k, v in data["timers"].items()},
        )


def _shared(text: str) -> str:
    return sys.intern(text) if type(text) is str else text
