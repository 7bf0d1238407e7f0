"""What-if: replay the recorded events under another pathway version, and say per patient which
actions would have differed: added, removed, or moved in time, with a cohort summary.

Only events are replayed, each decided when the record says it was (a late event stays late);
timers follow from the pathway under test, fired on the virtual clock up to the time the record
reaches. Actions are matched on what they ask for (pathway id, action, role, reason, kind, level,
chain), in time order, not on rule ids, which a new version may rename.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core import EventInput, Registry, compile_pathway
from engine.definition.model import Pathway
from engine.replay.history import as_input, pinned_registry
from engine.runtime.memory import MemoryEngine
from engine.store import Store

_SIGNATURE = ("role", "reason", "kind", "level", "chain", "topic")


def _signature(action: dict[str, Any]) -> str:
    params = action.get("params") or {}
    bits = {k: params[k] for k in _SIGNATURE if k in params}
    return json.dumps([action["pathway"], action["action"], bits], sort_keys=True)


@dataclass(slots=True)
class PatientDiff:
    patient_id: str
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)  # {before, after, shift_seconds}

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.moved)

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "added": self.added,
            "removed": self.removed,
            "moved": self.moved,
        }


@dataclass(slots=True)
class WhatIfResult:
    pathway: str
    baseline: str  # the recorded version(s) of that pathway id
    patients: int = 0
    diffs: list[PatientDiff] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per action type: how many patients would have it added, removed, earlier, later."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for diff in self.diffs:
            seen: set[tuple[str, str]] = set()
            for a in diff.added:
                seen.add((a["action"], "added"))
            for a in diff.removed:
                seen.add((a["action"], "removed"))
            for m in diff.moved:
                seen.add((m["after"]["action"], "earlier" if m["shift_seconds"] < 0 else "later"))
            for action, change in seen:
                out[action][change] += 1
        return {
            "patients": self.patients,
            "patients_differing": sum(1 for d in self.diffs if d.differs),
            "by_action": {a: dict(sorted(c.items())) for a, c in sorted(out.items())},
        }

    def sentences(self) -> list[str]:
        """The cohort summary in words, e.g. 'escalate: 37 of 512 patients earlier'."""
        summary = self.summary()
        lines = [
            f"{self.pathway} vs recorded {self.baseline}: "
            f"{summary['patients_differing']} of {self.patients} patients would differ"
        ]
        words = {
            "added": "would gain it",
            "removed": "would lose it",
            "earlier": "earlier",
            "later": "later",
        }
        for action, changes in summary["by_action"].items():
            for change, count in changes.items():
                lines.append(
                    f"{self.pathway} would {action}: {count} of {self.patients} "
                    f"patients {words[change]}"
                )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "pathway": self.pathway,
            "baseline": self.baseline,
            "summary": self.summary(),
            "patients": [d.as_dict() for d in self.diffs if d.differs],
        }


def what_if(
    store: Store,
    candidate: Pathway,
    *,
    patient_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WhatIfResult:
    recorded_registry = pinned_registry(store)
    baseline = sorted(k for k in recorded_registry.by_key if k.split("@", 1)[0] == candidate.id)
    registry = Registry()
    for compiled in recorded_registry.by_key.values():
        if compiled.pathway.id != candidate.id:
            registry.add(compiled)
    registry.add(compile_pathway(candidate))
    end = store.clock()
    by_patient: dict[str, list[EventInput]] = defaultdict(list)
    for row in store.inputs(patient_id=patient_id):
        input_ = as_input(row)
        if isinstance(input_, EventInput):
            by_patient[input_.event.patient_id].append(input_)
    recorded = defaultdict(list)
    for action in store.actions(patient_id=patient_id):
        if action["pathway"] == candidate.id:
            recorded[action["patient_id"]].append(action)
    result = WhatIfResult(candidate.key, ", ".join(baseline) or "(none)")
    patients = sorted(set(by_patient) | set(recorded))
    for done, patient in enumerate(patients, start=1):
        if progress:
            progress(done, len(patients))
        engine = MemoryEngine(registry)
        replayed: list[dict[str, Any]] = []
        for input_ in by_patient.get(patient, []):
            # decided when it was (a late event stays late), as the record has it, after the
            # timers that had fallen due by then (the service's ticks fire them as they fall due)
            replayed.extend(a.as_dict() for a in engine.advance(input_.recorded_at).actions)
            decision = engine.submit(input_.event, received_at=input_.recorded_at)
            replayed.extend(a.as_dict() for a in decision.actions)
        if end is not None:
            replayed.extend(a.as_dict() for a in engine.advance(end).actions)
        mine = [a for a in replayed if a["pathway"] == candidate.id]
        result.diffs.append(_diff(patient, recorded.get(patient, []), mine))
    result.patients = len(patients)
    return result


def _diff(patient: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> PatientDiff:
    diff = PatientDiff(patient)
    old: dict[str, list[dict[str, Any]]] = defaultdict(list)
    new: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in before:
        old[_signature(a)].append(a)
    for a in after:
        new[_signature(a)].append(a)
    for sig in sorted(set(old) | set(new)):
        olds = sorted(old.get(sig, []), key=lambda a: a["fired_at"])
        news = sorted(new.get(sig, []), key=lambda a: a["fired_at"])
        for o, n in zip(olds, news, strict=False):
            if o["fired_at"] != n["fired_at"] or o["due_by"] != n["due_by"]:
                shift = (_at(n["fired_at"]) - _at(o["fired_at"])).total_seconds()
                if shift == 0 and o["due_by"] and n["due_by"]:
                    shift = (_at(n["due_by"]) - _at(o["due_by"])).total_seconds()
                diff.moved.append({"before": o, "after": n, "shift_seconds": shift})
        diff.removed.extend(olds[len(news) :])
        diff.added.extend(news[len(olds) :])
    return diff


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
