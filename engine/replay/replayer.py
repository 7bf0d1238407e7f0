"""Replay a recorded history through the pinned pathway versions and compare every decision.

The decision core is deterministic, so re-deciding the recorded inputs (events and timer
firings, in their recorded order, each with the `now` it was decided at) must give exactly the
recorded actions and audit records. The first difference is reported side by side.

Actions are never re-run: what they came to was recorded by the dispatcher as inputs of its own
(`action.succeeded` with the outside system's reference, `action.failed` with the error), which
the timeline shows as `outcome` rows beside the decisions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core import Decision, EventInput, InstanceState, TimerInput, route
from engine.replay.history import (
    as_input,
    decode_actions,
    decode_audit,
    pinned_registry,
    recorded_texts,
)
from engine.store import Store

_AUDIT_KEYS = ("instance_id", "kind", "rule", "action_ids", "facts", "note")


@dataclass(frozen=True, slots=True)
class TimelineRow:
    seq: int
    occurred_at: str
    recorded_at: str
    input: str  # event type or timer key
    input_id: str
    instance_id: str
    kind: str  # audit kind: enrol, fire, exit...
    rule: str
    decision: str  # the actions, e.g. "escalate(hf_nurse, level 1)"
    why: dict[str, Any]
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Divergence:
    seq: int
    input_id: str
    what: str  # "actions" or "audit"
    recorded: list[dict[str, Any]]
    replayed: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "input_id": self.input_id,
            "what": self.what,
            "recorded": self.recorded,
            "replayed": self.replayed,
        }


@dataclass(slots=True)
class ReplayResult:
    inputs: int = 0
    decisions: int = 0
    timeline: list[TimelineRow] = field(default_factory=list)
    divergence: Divergence | None = None

    @property
    def identical(self) -> bool:
        return self.divergence is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "inputs": self.inputs,
            "decisions": self.decisions,
            "divergence": self.divergence.as_dict() if self.divergence else None,
            "timeline": [row.as_dict() for row in self.timeline],
        }


def replay(
    store: Store,
    *,
    patient_id: str | None = None,
    instance_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_timeline: bool = True,
) -> ReplayResult:
    """Re-decide the recorded inputs of one patient, one instance's patient, or everyone."""
    registry = pinned_registry(store)
    rows = list(store.inputs(patient_id=patient_id, instance_id=instance_id))
    recorded_actions, recorded_audit = recorded_texts(store, [r.seq for r in rows])
    result = ReplayResult()
    instances: dict[str, InstanceState] = {}
    latest: dict[tuple[str, str], str] = {}
    for done, row in enumerate(rows, start=1):
        if progress:
            progress(done, len(rows))
        input_ = as_input(row)
        if input_ is None:
            continue
        now = datetime.fromisoformat(row.decided_at)
        if isinstance(input_, TimerInput):
            state = instances.get(input_.instance_id)
            scope = {state.pathway_key: state} if state else {}
        else:
            assert isinstance(input_, EventInput)
            scope = {
                pid: instances[iid]
                for pid in registry.pathway_ids()
                if (iid := latest.get((input_.event.patient_id, pid))) is not None
            }
        changed, decision = route(registry, scope, input_, now)
        for state in changed:
            instances[state.instance_id] = state
            latest[(state.patient_id, state.pathway_key.split("@", 1)[0])] = state.instance_id
        result.inputs += 1
        if not _compare(
            result,
            row,
            decision,
            decode_actions(recorded_actions.get(row.seq, [])),
            decode_audit(recorded_audit.get(row.seq, [])),
            keep_timeline,
        ):
            break
    return result


def _compare(
    result: ReplayResult,
    row: Any,
    decision: Decision,
    recorded_actions: list[dict[str, Any]],
    recorded_audit: list[dict[str, Any]],
    keep_timeline: bool,
) -> bool:
    """Compare one input's decisions with the record; extend the timeline when they agree."""
    replayed_actions = [a.as_dict() for a in decision.actions]
    if replayed_actions != recorded_actions:
        result.divergence = Divergence(
            row.seq, row.input_id, "actions", recorded_actions, replayed_actions
        )
        return False
    replayed_audit = [e.as_dict() for e in decision.audit]
    recorded = [{k: r.get(k) for k in _AUDIT_KEYS} for r in recorded_audit]
    if replayed_audit != recorded:
        result.divergence = Divergence(row.seq, row.input_id, "audit", recorded, replayed_audit)
        return False
    result.decisions += len(decision.audit)
    if keep_timeline:
        if row.type in OUTCOME_TYPES:
            result.timeline.append(_outcome_row(row))
        by_id = {a["id"]: a for a in replayed_actions}
        for entry in decision.audit:
            result.timeline.append(
                TimelineRow(
                    seq=row.seq,
                    occurred_at=row.occurred_at,
                    recorded_at=row.recorded_at,
                    input=row.type,
                    input_id=row.input_id,
                    instance_id=entry.instance_id,
                    kind=entry.kind,
                    rule=entry.rule,
                    decision=", ".join(_describe(by_id[i]) for i in entry.action_ids if i in by_id),
                    why=dict(entry.facts),
                    note=entry.note,
                )
            )
    return True


#: inputs the dispatcher records: what an action came to (replay never re-runs actions)
OUTCOME_TYPES = frozenset({"action.succeeded", "action.failed"})


def _outcome_row(row: Any) -> TimelineRow:
    """A timeline row for a recorded outcome: the action, and the outside system's reference
    or the error."""
    data = json.loads(row.payload).get("data", {})
    action_id = str(data.get("action_id", ""))
    succeeded = row.type == "action.succeeded"
    detail = data.get("reference") if succeeded else data.get("error")
    return TimelineRow(
        seq=row.seq,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        input=row.type,
        input_id=row.input_id,
        instance_id=action_id.rsplit(".", 1)[0],
        kind="outcome",
        rule=action_id,
        decision=f"{data.get('action', '')} {'succeeded' if succeeded else 'failed'}",
        why={"reference" if succeeded else "error": detail or ""},
        note="",
    )


def _describe(action: dict[str, Any]) -> str:
    params = action.get("params") or {}
    bits = [str(params[k]) for k in ("role", "kind", "reason", "topic") if k in params]
    if "level" in params:
        bits.append(f"level {params['level']}")
    return f"{action['action']}({', '.join(bits)})" if bits else str(action["action"])
