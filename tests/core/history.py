"""Golden histories (STYLE 4): recorded inputs, each with the `now` it was decided at, and the
full decision each one led to; re-deciding them with `engine.core.route` must give exactly the
recorded decisions.

A history file (tests/core/golden/*.json) is self-contained: it holds the source of every
pathway version it was decided against (pinned, as the store pins them), so a later edit to
pathways/ does not change what the history means. Record again (after reading the diff) with
CAREPATH_UPDATE_GOLDEN=1 .venv/bin/pytest tests/core/test_golden.py: that re-runs the recorded
events through the pathways in pathways/ as they are now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine.catalogue import Event
from engine.core import (
    Decision,
    EventInput,
    InstanceState,
    Registry,
    TimerInput,
    compile_pathway,
    route,
)
from engine.core.inputs import Input
from engine.definition.loader import load_text
from engine.runtime.memory import MemoryEngine
from tests.scenarios.harness import EVALUATORS, PATHWAYS

GOLDEN = Path(__file__).resolve().parent / "golden"


def as_json(value: Any) -> Any:
    """What a value looks like once written to and read from a JSON file."""
    return json.loads(json.dumps(value))


def decision_dict(decision: Decision) -> dict[str, Any]:
    return as_json(
        {
            "actions": [a.as_dict() for a in decision.actions],
            "timers": [
                {
                    "instance_id": t.instance_id,
                    "timer": t.timer,
                    "due_at": t.due_at.isoformat() if t.due_at else None,
                }
                for t in decision.timers
            ],
            "audit": [e.as_dict() for e in decision.audit],
        }
    )


def input_dict(input_: Input) -> dict[str, Any]:
    if isinstance(input_, EventInput):
        return {
            "event": input_.event.model_dump(mode="json"),
            "recorded_at": input_.recorded_at.isoformat(),
        }
    return {**input_.as_dict(), "recorded_at": input_.recorded_at.isoformat()}


def input_from(data: dict[str, Any]) -> Input:
    recorded_at = datetime.fromisoformat(data["recorded_at"])
    if "event" in data:
        return EventInput(Event.model_validate(data["event"]), recorded_at)
    return TimerInput(
        data["instance_id"], data["timer"], datetime.fromisoformat(data["due_at"]), recorded_at
    )


def registry_of(golden: dict[str, Any], evaluator: str = "rulebook") -> Registry:
    """The pinned pathway versions the history was decided against."""
    registry = Registry()
    for key, pinned in sorted(golden["pathways"].items()):
        pathway, problems = load_text(pinned["file"], pinned["source"])
        assert pathway is not None, problems
        assert pathway.key == key
        registry.add(compile_pathway(pathway, EVALUATORS[evaluator]))
    return registry


def pin(*files: str) -> dict[str, dict[str, str]]:
    """The pathway files in pathways/, as a history pins them: key -> file name and source."""
    pinned = {}
    for name in files:
        source = (PATHWAYS / name).read_text(encoding="utf-8")
        pathway, problems = load_text(name, source)
        assert pathway is not None, problems
        pinned[pathway.key] = {"file": name, "source": source}
    return pinned


def record(
    about: str,
    pinned: dict[str, dict[str, str]],
    events: list[dict[str, Any]],
    until: str | None = None,
    holidays: list[str] | tuple[str, ...] = (),
    evaluator: str = "rulebook",
) -> dict[str, Any]:
    """Run events through the in-memory engine (as `simulate` does) and keep every decision."""
    golden: dict[str, Any] = {
        "about": about,
        "holidays": list(holidays),
        "until": until,
        "pathways": pinned,
        "events": events,
        "history": [],
    }
    history = golden["history"]

    def journal(
        input_: Input | Event, patient: str, now: datetime, decision: Decision, changed: list
    ) -> None:
        assert not isinstance(input_, Event), "golden histories hold no duplicates"
        history.append(
            {
                "input": input_dict(input_),
                "now": now.isoformat(),
                "decision": decision_dict(decision),
                "instances": as_json([s.as_dict() for s in changed]),
            }
        )

    engine = MemoryEngine(
        registry_of(golden, evaluator), [date.fromisoformat(h) for h in holidays], journal=journal
    )
    for data in events:
        engine.submit(Event.model_validate(data))
    if until is not None:
        engine.advance(datetime.fromisoformat(until))
    return golden


@dataclass(frozen=True)
class Step:
    """One recorded input, re-decided: what went in, and what came out this time."""

    index: int
    input: Input
    now: datetime
    states: dict[str, InstanceState]  # what route was given, by pathway id
    decision: dict[str, Any]
    instances: list[dict[str, Any]]


def redecide(
    golden: dict[str, Any],
    evaluator: str = "rulebook",
    decide_with: Callable[..., Any] = route,
) -> Iterator[Step]:
    """Feed every recorded input, with its recorded `now`, to `route`, keeping instance states
    between inputs exactly as the engine around the core does."""
    registry = registry_of(golden, evaluator)
    holidays = [date.fromisoformat(h) for h in golden["holidays"]]
    instances: dict[str, InstanceState] = {}
    latest: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(golden["history"]):
        input_ = input_from(entry["input"])
        now = datetime.fromisoformat(entry["now"])
        if isinstance(input_, EventInput):
            patient = input_.event.patient_id
            states = {
                pid: instances[latest[(patient, pid)]]
                for pid in registry.pathway_ids()
                if (patient, pid) in latest
            }
        elif input_.instance_id in instances:
            state = instances[input_.instance_id]
            states = {state.pathway_key.split("@", 1)[0]: state}
        else:  # only in a history altered to name an instance that never was
            states = {}
        changed, decision = decide_with(registry, states, input_, now, holidays)
        for state in changed:
            instances[state.instance_id] = state
            latest[(state.patient_id, state.pathway_key.split("@", 1)[0])] = state.instance_id
        yield Step(
            index,
            input_,
            now,
            states,
            decision_dict(decision),
            as_json([s.as_dict() for s in changed]),
        )


@dataclass(frozen=True)
class Divergence:
    index: int
    what: str  # "actions", "timers", "audit" or "instances"
    recorded: Any
    replayed: Any


def first_divergence(golden: dict[str, Any], evaluator: str = "rulebook") -> Divergence | None:
    """The first input whose re-decision differs from the recorded one, or None."""
    for step in redecide(golden, evaluator):
        entry = golden["history"][step.index]
        for what in ("actions", "timers", "audit"):
            if step.decision[what] != entry["decision"][what]:
                return Divergence(step.index, what, entry["decision"][what], step.decision[what])
        if step.instances != entry["instances"]:
            return Divergence(step.index, "instances", entry["instances"], step.instances)
    return None


def load(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def save(name: str, golden: dict[str, Any]) -> None:
    (GOLDEN / name).write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
