"""The core is deterministic: same inputs, same outputs, byte for byte, in any process, at any
wall-clock time; it never changes the state it is given; identifiers come from the input
history alone; instance states survive their JSON form."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Collection
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from typer.testing import CliRunner

from engine.cli import app
from engine.core import Decision, InstanceState, Registry, decide, route
from engine.core.inputs import Input
from tests.core.history import GOLDEN, load, redecide
from tests.scenarios.harness import events_text, run_lines, scenario

GOLDENS = sorted(p.name for p in GOLDEN.glob("*.json"))
CAREPATH = Path(sys.executable).with_name("carepath")

#: Scenarios where no patient's decisions depend on another's events (no shared clock tricks,
#: no event id reused across patients).
INDEPENDENT = [
    "both-pathways",
    "chf-escalation-chain",
    "chf-follow-up",
    "foot-intervals",
    "foot-screening",
]


def test_the_same_file_twice_gives_identical_output(evaluator: str) -> None:
    s = scenario("chf-exits")
    first, second = s.run(evaluator), s.run(evaluator)
    assert first.text == second.text == s.expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_a_fresh_process_gives_identical_bytes(seed: str) -> None:
    """A new interpreter, with another string-hash seed (set iteration order changes): the
    same bytes as in this process and as the expected file."""
    s = scenario("both-pathways")
    in_process = CliRunner().invoke(app, s.cli_args())
    assert in_process.exit_code == 0, in_process.output
    command = [str(CAREPATH)] if CAREPATH.exists() else [sys.executable, "-m", "engine.cli.app"]
    done = subprocess.run(
        [*command, *s.cli_args()],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == in_process.stdout_bytes == s.expected.read_bytes()


# -- decide does not change what it is given ------------------------------------------------------


def _checked_route(
    registry: Registry,
    states: dict[str, InstanceState],
    input_: Input,
    now: datetime,
    holidays: Collection[date],
) -> tuple[list[InstanceState], Decision]:
    """`route`, after deciding each given state with `decide` directly, and checking that
    neither call changed any state it was given."""
    before = {pid: copy.deepcopy(s.as_dict()) for pid, s in states.items()}
    for state in states.values():
        new, _ = decide(registry.by_key[state.pathway_key], state, input_, now, holidays)
        assert new is not state
    assert {pid: s.as_dict() for pid, s in states.items()} == before
    changed, decision = route(registry, states, input_, now, holidays)
    assert {pid: s.as_dict() for pid, s in states.items()} == before
    assert not any(c is s for c in changed for s in states.values())
    return changed, decision


@pytest.mark.parametrize("name", GOLDENS)
def test_decide_does_not_mutate_the_state_passed_in(name: str, evaluator: str) -> None:
    golden = load(name)
    steps = list(redecide(golden, evaluator, decide_with=_checked_route))
    assert len(steps) == len(golden["history"])
    assert sum(1 for step in steps if step.states) >= len(steps) // 2


# -- identifiers ---------------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", INDEPENDENT)
def test_a_patient_alone_gets_the_same_actions_and_ids_as_in_a_crowd(name: str) -> None:
    s = scenario(name)
    expected = [json.loads(line) for line in _lines(s.expected)]
    events = [json.loads(line) for line in _lines(s.events)]
    patients = sorted({e["patient_id"] for e in events})
    assert len(patients) > 2
    for patient in patients:
        alone = run_lines(
            events_text(*(e for e in events if e["patient_id"] == patient)),
            until=datetime.fromisoformat(s.until.replace("Z", "+00:00")) if s.until else None,
            holidays=[date.fromisoformat(h) for h in s.holidays],
            evaluator="reference",
        )
        assert alone.actions == [a for a in expected if a["patient_id"] == patient], patient


def _events(path: Path) -> list[dict[str, Any]]:
    """The events of a file, leaving out the lines that are not events (bad-lines)."""
    out = []
    for line in _lines(path):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "patient_id" in event:
            out.append(event)
    return out


def _instance_id(pathway_key: str, patient: str, event_id: str) -> str:
    text = "|".join((pathway_key, patient, event_id))
    return "i-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def test_instance_ids_come_from_pathway_version_patient_and_enrolling_event() -> None:
    """Written out here, not imported: the derivation is part of the recorded history."""
    enrolments = 0
    for expected in sorted(scenario("chf-exits").folder.parent.glob("*/expected.jsonl")):
        events = _events(expected.with_name("events.jsonl"))
        for action in map(json.loads, _lines(expected)):
            if action["action"] != "enrol":
                continue
            key = f"{action['pathway']}@{action['pathway_version']}"
            patient = action["patient_id"]
            enrolling = {
                e["id"]
                for e in events
                if e["patient_id"] == patient
                and _instance_id(key, patient, e["id"]) == action["instance_id"]
            }
            assert len(enrolling) == 1, action
            enrolments += 1
    assert enrolments > 100


def _renamed(events: list[dict[str, Any]], enrolling: bool) -> list[dict[str, Any]]:
    triggers = {"encounter.discharged", "condition.diagnosed"}
    return [
        {**e, "id": f"renamed-{e['id']}"} if (e["type"] in triggers) is enrolling else e
        for e in events
    ]


def test_renaming_events_that_enrol_nobody_changes_nothing() -> None:
    """Action ids count within their instance; task ids in acknowledgements still match."""
    s = scenario("chf-escalation-chain")
    renamed = _renamed(_events(s.events), enrolling=False)
    until = datetime.fromisoformat(s.until.replace("Z", "+00:00"))
    assert run_lines(events_text(*renamed), until=until).lines == _lines(s.expected)


def test_renaming_enrolling_events_changes_only_the_instance_ids() -> None:
    s = scenario("chf-follow-up")
    renamed = _renamed(_events(s.events), enrolling=True)
    until = datetime.fromisoformat(s.until.replace("Z", "+00:00"))
    again = run_lines(events_text(*renamed), until=until).actions
    original = [json.loads(line) for line in _lines(s.expected)]
    assert {a["instance_id"] for a in again}.isdisjoint({a["instance_id"] for a in original})
    new_ids = {a["instance_id"]: a["patient_id"] for a in again}
    old_ids = {a["patient_id"]: a["instance_id"] for a in original}

    def with_old_ids(action: dict[str, Any]) -> dict[str, Any]:
        old = old_ids[new_ids[action["instance_id"]]]
        return {
            **action,
            "id": action["id"].replace(action["instance_id"], old),
            "instance_id": old,
        }

    assert [with_old_ids(a) for a in again] == original


# -- instance states survive their JSON form -----------------------------------------------------


def _states(golden: dict[str, Any]) -> list[InstanceState]:
    out: list[InstanceState] = []
    for step in redecide(golden, "reference"):
        out.extend(step.states.values())
    return out


@pytest.mark.parametrize("name", GOLDENS)
def test_instance_state_round_trips_through_as_dict(name: str) -> None:
    states = _states(load(name))
    assert any(s.chains for s in states)
    assert any(s.timers for s in states)
    assert any(not s.active for s in states) or any(s.readings for s in states)
    for state in states:
        data = state.as_dict()
        back = InstanceState.from_dict(json.loads(json.dumps(data)))
        assert back == state
        assert back.as_dict() == data
        # offsets survive too (equal datetimes may differ in offset)
        assert back.enrolled_at.utcoffset() == state.enrolled_at.utcoffset()
        assert [t.utcoffset() for t in back.timers.values()] == [
            t.utcoffset() for t in state.timers.values()
        ]


# -- the core reads no clock ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "wall_clock", ["1970-01-02 00:00:00", "2025-03-05 09:00:00", "2099-12-31 23:59:59"]
)
def test_simulate_gives_the_same_output_whatever_the_wall_clock(wall_clock: str) -> None:
    s = scenario("both-pathways")
    with freeze_time(wall_clock, tick=True):
        assert datetime.now().year == int(wall_clock[:4])
        run = s.run("reference")
        cli = CliRunner().invoke(app, scenario("chf-escalation-chain").cli_args())
    assert run.text == s.expected.read_text(encoding="utf-8")
    assert cli.exit_code == 0, cli.output
    assert cli.stdout == scenario("chf-escalation-chain").expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("wall_clock", ["1999-12-31 23:59:59", "2031-06-15 12:00:00"])
def test_golden_histories_replay_whatever_the_wall_clock(wall_clock: str) -> None:
    from tests.core.history import first_divergence

    with freeze_time(wall_clock):
        for name in GOLDENS:
            assert first_divergence(load(name), "reference") is None
