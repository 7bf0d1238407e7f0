"""The dispatcher end to end, on real Prefect flow runs (the embedded server): a scenario's
actions from `carepath simulate --db` carried out through the recording port, retries on
injected failures, a permanent failure marked failed and fed back as `action.failed` (which a
pathway can escalate on), and nothing run twice with effect when the dispatcher is killed
between claim and write-back."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.registry import PortRegistry
from adapters.testing import RecordingPort
from engine.definition.loader import check_paths
from engine.definition.model import Pathway
from engine.flows.runners import LocalFlows
from engine.replay import replay
from engine.runtime.dispatch import Dispatcher, FlowRegistry
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Outbox, OutboxItem, Outcome, Store
from engine.store.verify import verify
from tests.flows.conftest import fast_text, simulate_into, store_clock

pytestmark = pytest.mark.slow

CHF, FOOT = "chf-post-discharge.yaml", "diabetic-foot-care.yaml"
BOOKING_FAILED = """\
  - id: booking_failed
    description: A booking that still fails after its retries goes to the care coordinator.
    when: {event: action.failed, action: book_follow_up}
    then:
      - action: notify
        role: care_coordinator
        reason: booking_failed
"""


@pytest.fixture
def pathways(tmp_path: Path) -> Path:
    """Both reference pathways, retries without delay; the CHF one escalates failed bookings."""
    folder = tmp_path / "pathways"
    folder.mkdir()
    (folder / CHF).write_text(fast_text(CHF, rules=BOOKING_FAILED), encoding="utf-8")
    (folder / FOOT).write_text(fast_text(FOOT), encoding="utf-8")
    return folder


Scenario = tuple[Store, list[dict[str, Any]]]


@pytest.fixture
def scenario(tmp_path: Path, pathways: Path) -> Iterator[Scenario]:
    """A store filled by `carepath simulate --db` (both pathways), and the actions it printed
    that are carried out (not enrol or exit)."""
    db = f"sqlite:///{tmp_path / 'carepath.db'}"
    printed = simulate_into(db, "both-pathways", pathways)
    store = Store.open(db)
    yield store, [a for a in printed if a["action"] not in ("enrol", "exit")]
    store.close()


def _loaded(pathways: Path) -> list[Pathway]:
    loaded, problems = check_paths([pathways])
    assert not problems
    return loaded


def _dispatcher(
    store: Store,
    pathways: Path,
    port: RecordingPort,
    home: Path,
    flows: FlowRegistry | None = None,
) -> Dispatcher:
    loaded = _loaded(pathways)
    engine = DurableEngine(store, open_registry(store, loaded, store_clock(store)))
    return Dispatcher(
        store,
        flows or LocalFlows(loaded, home=home),
        PortRegistry.single(port),
        engine.submit_many,
        clock=lambda: store_clock(store),
    )


def _statuses(store: Store, ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
    outbox = Outbox(store)
    found = {i: outbox.status(i) for i in ids}
    return {i: s for i, s in found.items() if s is not None}


def test_a_scenario_is_carried_out_one_flow_run_per_pathway(
    scenario: Scenario, pathways: Path, prefect_home: Path
) -> None:
    store, actions = scenario
    assert {a["pathway"] for a in actions} == {"chf-post-discharge", "diabetic-foot-care"}
    port = RecordingPort()
    reports = _dispatcher(store, pathways, port, prefect_home).drain()
    assert [(r.claimed, r.flow_runs) for r in reports] == [(len(actions), 2)]
    # every action, exactly as simulate printed it, reached the port once, under its own id
    assert port.effects == {a["id"]: a for a in actions}
    assert set(port.effect_counts.values()) == {1}
    statuses = _statuses(store, [a["id"] for a in actions])
    assert {s for s, _ in statuses.values()} == {"succeeded"}
    first = actions[0]["id"]
    assert statuses[first][1] == {
        "succeeded": True,
        "reference": port.references[first],
        "error": None,
        "attempts": 1,
    }
    # the outcome is part of the instance's record
    shown = store.instance_actions(actions[0]["instance_id"])
    assert (
        next(a for a in shown if a["id"] == first)["outcome"]["reference"]
        == (port.references[first])
    )
    # ...and of the hash-chained input log, one `action.succeeded` per action with its reference
    recorded = {
        row.input_id: json.loads(row.payload)["data"]
        for row in store.inputs()
        if row.type == "action.succeeded"
    }
    assert recorded == {
        f"action.succeeded:{a['id']}": {
            "action_id": a["id"], "action": a["action"], "reference": port.references[a["id"]]
        }
        for a in actions
    }
    assert not any(r.problem for r in verify(store))
    # replay re-decides them (no decision, nothing re-run) and shows them in its timeline
    result = replay(store)
    assert result.identical
    outcomes = {row.rule: row.why for row in result.timeline if row.kind == "outcome"}
    assert outcomes == {a["id"]: {"reference": port.references[a["id"]]} for a in actions}


def test_injected_failures_are_retried(
    scenario: Scenario, pathways: Path, prefect_home: Path
) -> None:
    store, actions = scenario
    port = RecordingPort()
    port.fail("book_foot_screening", times=2)
    _dispatcher(store, pathways, port, prefect_home).drain()
    screenings = [a["id"] for a in actions if a["action"] == "book_foot_screening"]
    assert screenings
    for action_id in screenings:
        assert port.attempts(action_id) == 3
        status, outcome = _statuses(store, [action_id])[action_id]
        assert (status, outcome["attempts"]) == ("succeeded", 3)
    assert set(port.effect_counts.values()) == {1}


def test_a_permanent_failure_is_marked_failed_and_fed_back_for_escalation(
    scenario: Scenario, pathways: Path, prefect_home: Path
) -> None:
    store, actions = scenario
    # bp-3 is still on the CHF pathway at the end (bp-1 died, bp-2 opted out)
    booking = next(
        a for a in actions if a["action"] == "book_follow_up" and a["patient_id"] == "bp-3"
    )
    port = RecordingPort()
    port.fail(booking["id"])  # always
    reports = _dispatcher(store, pathways, port, prefect_home).drain()
    assert port.attempts(booking["id"]) == 4  # book_follow_up: 3 retries
    status, outcome = _statuses(store, [booking["id"]])[booking["id"]]
    assert status == "failed"
    assert outcome == {
        "succeeded": False,
        "reference": None,
        "error": f"AdapterError: book_follow_up for {booking['id']}: unavailable (attempt 4)",
        "attempts": 4,
    }
    assert booking["id"] not in port.effects
    # the failure is an input of the instance, recorded in the store's log...
    inputs = [
        r for r in store.inputs(patient_id=booking["patient_id"]) if r.type == "action.failed"
    ]
    assert [r.input_id for r in inputs] == [f"action.failed:{booking['id']}"]
    # ...on which the pathway escalated: a notify action, carried out in the next batch
    notify = [
        a for a in store.instance_actions(booking["instance_id"]) if a["rule"] == "booking_failed"
    ]
    assert [(a["action"], a["params"]["reason"], a["status"]) for a in notify] == [
        ("notify", "booking_failed", "succeeded")
    ]
    assert [r.failed for r in reports] == [[booking["id"]], []]
    # the other actions of the batch were not held back by the failure
    others = [a["id"] for a in actions if a["id"] != booking["id"]]
    assert {s for s, _ in _statuses(store, others).values()} == {"succeeded"}


class Killed(BaseException):
    """The dispatcher's process dying (not an error anything catches)."""


class DieAfterRun:
    """Runs the flows for real, then dies before the outcomes are written back."""

    def __init__(self, flows: FlowRegistry) -> None:
        self.flows = flows

    def run_group(
        self, pathway_key: str, items: Sequence[OutboxItem], ports: PortRegistry | None
    ) -> Sequence[Outcome]:
        self.flows.run_group(pathway_key, items, ports)
        raise Killed


def test_nothing_runs_twice_when_the_dispatcher_is_restarted_mid_batch(
    scenario: Scenario, pathways: Path, prefect_home: Path
) -> None:
    store, actions = scenario
    ids = [a["id"] for a in actions]
    port = RecordingPort()
    flows = LocalFlows(_loaded(pathways), home=prefect_home)
    first = _dispatcher(store, pathways, port, prefect_home, DieAfterRun(flows))
    with pytest.raises(Killed):
        first.run_once()  # claimed; the first pathway's group carried out; killed
    assert {s for s, _ in _statuses(store, ids).values()} == {"running"}
    carried_out = set(port.effects)
    assert carried_out and carried_out < set(ids)

    restarted = _dispatcher(store, pathways, port, prefect_home)
    assert restarted.recover() == len(ids)
    restarted.drain()
    assert {s for s, _ in _statuses(store, ids).values()} == {"succeeded"}
    # what was carried out before the kill reached the port again, and had its effect once:
    # the key is the action id
    assert {i: port.attempts(i) for i in ids} == {i: 2 if i in carried_out else 1 for i in ids}
    assert port.effect_counts == dict.fromkeys(ids, 1)
    for action_id in ids:
        assert (
            _statuses(store, [action_id])[action_id][1]["reference"] == (port.references[action_id])
        )


def test_a_claim_whose_dispatcher_died_before_running_is_run_once(
    scenario: Scenario, pathways: Path, prefect_home: Path
) -> None:
    store, actions = scenario
    port = RecordingPort()
    dead = _dispatcher(store, pathways, port, prefect_home)
    assert len(dead.claim()) == len(actions)  # then the process dies
    restarted = _dispatcher(store, pathways, port, prefect_home)
    assert restarted.recover() == len(actions)
    restarted.drain()
    assert port.calls and all(port.attempts(a["id"]) == 1 for a in actions)
    assert Outbox(store).counts()["succeeded"] == len(actions)
