"""What the decision core decides: actions to carry out, timers to set or cancel, instances to
open or close, and an audit entry for every decision with the facts behind it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Action:
    """One action, in the public shape `carepath simulate` prints (see `as_dict`)."""

    id: str
    action: str
    patient_id: str
    pathway: str
    pathway_version: str
    instance_id: str
    rule: str
    fired_at: datetime
    due_by: datetime | None
    params: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "patient_id": self.patient_id,
            "pathway": self.pathway,
            "pathway_version": self.pathway_version,
            "instance_id": self.instance_id,
            "rule": self.rule,
            "fired_at": iso_utc(self.fired_at),
            "due_by": iso_utc(self.due_by) if self.due_by else None,
            "params": dict(self.params),
        }


@dataclass(frozen=True, slots=True)
class TimerChange:
    instance_id: str
    timer: str
    due_at: datetime | None  # None: cancelled


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Why something was (or was not) done: the rule, and the facts its condition saw."""

    instance_id: str
    kind: str  # enrol, fire, suppress, stale, cancel, acknowledge, exit, ignore, ...
    rule: str
    action_ids: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "kind": self.kind,
            "rule": self.rule,
            "action_ids": list(self.action_ids),
            "facts": dict(self.facts),
            "note": self.note,
        }


@dataclass(slots=True)
class Decision:
    """Everything one input led to, across every pathway the patient is on."""

    actions: list[Action] = field(default_factory=list)
    timers: list[TimerChange] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    def extend(self, other: Decision) -> None:
        self.actions.extend(other.actions)
        self.timers.extend(other.timers)
        self.audit.extend(other.audit)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a 'Z', to the second unless the instant has microseconds."""
    from datetime import UTC

    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")
