"""Golden histories (STYLE 4): re-deciding the recorded inputs gives exactly the recorded
decisions, and a history altered in any part is reported as divergent at the altered input."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.core.history import GOLDEN, first_divergence, load, pin, record, save

GOLDENS = sorted(p.name for p in GOLDEN.glob("*.json"))
UPDATE = os.environ.get("CAREPATH_UPDATE_GOLDEN") == "1"


def test_there_is_a_golden_history_for_each_reference_pathway() -> None:
    pinned = {key for name in GOLDENS for key in load(name)["pathways"]}
    assert pinned == {"chf-post-discharge@1", "diabetic-foot-care@1"}


@pytest.mark.parametrize("name", GOLDENS)
def test_redeciding_the_history_gives_the_recorded_decisions(name: str, evaluator: str) -> None:
    golden = load(name)
    if UPDATE and evaluator == "rulebook":
        pinned = pin(*(p["file"] for p in golden["pathways"].values()))
        golden = record(
            golden["about"], pinned, golden["events"], golden["until"], golden["holidays"]
        )
        save(name, golden)
    history = golden["history"]
    assert len(history) >= 10
    assert sum(len(step["decision"]["actions"]) for step in history) >= 15
    assert any("timer" in step["input"] for step in history)
    assert first_divergence(golden, evaluator) is None


@pytest.mark.parametrize("name", GOLDENS)
def test_the_engine_loop_records_the_same_history(name: str, evaluator: str) -> None:
    """Not only the core: the in-memory engine (simulate's loop) fires the same timers, in the
    same order, with the same `now`, for the recorded events."""
    golden = load(name)
    again = record(
        golden["about"],
        golden["pathways"],
        golden["events"],
        golden["until"],
        golden["holidays"],
        evaluator,
    )
    assert again == golden


# -- alterations: each changes one thing and says at which input, and in what, the replay must
# first differ; `recorded` alterations change an output (the replay gives the original back),
# the others change an input.

Alteration = Callable[[dict[str, Any]], tuple[int, str]]


def _first(golden: dict[str, Any], has: Callable[[dict[str, Any]], bool]) -> int:
    return next(i for i, step in enumerate(golden["history"]) if has(step))


def _escalates(step: dict[str, Any]) -> bool:
    return any(a["action"] == "escalate" for a in step["decision"]["actions"])


def an_action_param(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, _escalates)
    actions = golden["history"][index]["decision"]["actions"]
    next(a for a in actions if a["action"] == "escalate")["params"]["role"] = "someone_else"
    return index, "actions"


def an_action_due_time(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: any(a["due_by"] for a in s["decision"]["actions"]))
    actions = golden["history"][index]["decision"]["actions"]
    next(a for a in actions if a["due_by"])["due_by"] = "2099-01-01T00:00:00Z"
    return index, "actions"


def a_missing_action(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: len(s["decision"]["actions"]) > 1)
    golden["history"][index]["decision"]["actions"].pop()
    return index, "actions"


def a_timer_change(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: any(t["due_at"] for t in s["decision"]["timers"]))
    timers = golden["history"][index]["decision"]["timers"]
    next(t for t in timers if t["due_at"])["due_at"] = "2099-01-01T00:00:00+00:00"
    return index, "timers"


def an_audit_fact(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: any(e["facts"] for e in s["decision"]["audit"]))
    entry = next(e for e in golden["history"][index]["decision"]["audit"] if e["facts"])
    entry["facts"] = {**entry["facts"], "tampered": True}
    return index, "audit"


def an_instance_state(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: bool(s["instances"]))
    golden["history"][index]["instances"][0]["actions_count"] += 1
    return index, "instances"


RECORDED: list[Alteration] = [
    an_action_param,
    an_action_due_time,
    a_missing_action,
    a_timer_change,
    an_audit_fact,
    an_instance_state,
]


def the_patient_of_an_event(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: "event" in s["input"] and bool(s["decision"]["actions"]))
    event = golden["history"][index]["input"]["event"]
    event["patient_id"] = f"{event['patient_id']}-someone-else"
    return index, "actions"


def the_now_of_a_timer(golden: dict[str, Any]) -> tuple[int, str]:
    index = _first(golden, lambda s: "timer" in s["input"] and _escalates(s))
    step = golden["history"][index]
    step["now"] = (datetime.fromisoformat(step["now"]) + timedelta(seconds=1)).isoformat()
    return index, "actions"


INPUTS: list[Alteration] = [the_patient_of_an_event, the_now_of_a_timer]


@pytest.mark.parametrize("alter", RECORDED + INPUTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", GOLDENS)
def test_an_altered_history_is_reported_as_divergent(
    name: str, alter: Alteration, evaluator: str
) -> None:
    golden = load(name)
    altered = copy.deepcopy(golden)
    index, what = alter(altered)
    assert altered != golden
    divergence = first_divergence(altered, evaluator)
    assert divergence is not None
    assert (divergence.index, divergence.what) == (index, what)
    assert divergence.recorded != divergence.replayed
    if alter in RECORDED:
        original = golden["history"][index]
        assert divergence.replayed == (
            original["instances"] if what == "instances" else original["decision"][what]
        )
