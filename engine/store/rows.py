"""The rows a group of decided inputs becomes: one input log row each, its audit records and
its outbox actions, as tuples in the column order of `Statements` (engine.store.statements)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core import Action, AuditEntry, Decision, InstanceState
from engine.core.inputs import EventInput, Input, TimerInput


@dataclass(slots=True)
class Recorded:
    """One input and everything decided for it, ready to be written."""

    input: Input | None  # None for a duplicate
    kind: str  # event | timer | duplicate
    input_id: str
    patient_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    decided_at: datetime
    payload: Mapping[str, Any]
    decision: Decision = field(default_factory=Decision)
    changed: list[InstanceState] = field(default_factory=list)
    instance_id: str | None = None
    seq: int = 0

    @classmethod
    def of(
        cls,
        input_: Input,
        decided_at: datetime,
        decision: Decision,
        changed: list[InstanceState],
        patient_id: str,
    ) -> Recorded:
        if isinstance(input_, EventInput):
            e = input_.event
            return cls(
                input_,
                "event",
                e.id,
                e.patient_id,
                e.type,
                e.occurred_at,
                input_.recorded_at,
                decided_at,
                e.model_dump(mode="json"),
                decision,
                changed,
                seq=input_.seq,
            )
        assert isinstance(input_, TimerInput)
        return cls(
            input_,
            "timer",
            input_.input_id,
            patient_id,
            input_.timer,
            input_.due_at,
            input_.recorded_at,
            decided_at,
            input_.as_dict(),
            decision,
            changed,
            instance_id=input_.instance_id,
            seq=input_.seq,
        )


#: `json.dumps(value, separators=(",", ":"))` and the same with `sort_keys=True`, built once
#: (`json.dumps` with options builds a new encoder for every call); the text is the same.
compact_json = json.JSONEncoder(separators=(",", ":")).encode
sorted_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


@dataclass(slots=True)
class Prepared:
    """A batch's rows, as tuples in the column order of `Statements`, ready to commit."""

    size: int
    #: (seq, input hash, audit id, audit hash, action number, outbox hash) once committed
    heads: tuple[int, str, int, str, int, str]
    inputs: list[tuple[Any, ...]]
    audit: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    instances: list[tuple[Any, ...]]  # instances created by the batch
    statuses: list[tuple[Any, ...]]  # (active, last_seq, instance id) of those it ended
    changed: dict[str, tuple[InstanceState, int]]  # instance id -> (state, last seq)


def action_order(action: Mapping[str, Any]) -> tuple[str, int]:
    _, _, n = str(action["id"]).rpartition(".")
    return (action["fired_at"], int(n) if n.isdigit() else 0)


def audit_row(
    audit_id: int, input_row: Mapping[str, Any], entry: AuditEntry, pathway_key: str
) -> dict[str, Any]:
    """The audit row of `entry`, decided for the input whose log row is `input_row`."""
    record = entry.as_dict()
    record.update(
        {
            "seq": input_row["seq"],
            "pathway": pathway_key,
            "patient_id": input_row["patient_id"],
            "input": input_row["input_id"],
            "input_type": input_row["type"],
            "occurred_at": input_row["occurred_at"],
            "recorded_at": input_row["recorded_at"],
            "decided_at": input_row["decided_at"],
        }
    )
    return {
        "id": audit_id,
        "seq": input_row["seq"],
        "instance_id": entry.instance_id,
        "pathway_key": pathway_key,
        "kind": entry.kind,
        "rule": entry.rule,
        "record": sorted_json(record),
    }


def action_text(action: Action) -> str:
    """An action as the outbox stores it (its `payload`)."""
    return compact_json(action.as_dict())


def outbox_row(seq: int, action: Action) -> tuple[Any, ...]:
    """The outbox row of `action`, in the column order of `Statements.outbox`."""
    carried_out = action.action not in ("enrol", "exit")
    return (
        action.id,
        seq,
        action.instance_id,
        action.patient_id,
        f"{action.pathway}@{action.pathway_version}",
        action.action,
        action_text(action),
        "pending" if carried_out else "recorded",
        0,
    )
