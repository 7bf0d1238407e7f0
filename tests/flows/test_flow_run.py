"""Real flow runs on the embedded Prefect server: each action through its task and port, with
retries, timeouts and failures kept to the action that failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.registry import PortRegistry
from adapters.testing import RecordingPort
from engine.flows.runners import LocalFlows
from engine.store import OutboxItem, Outcome
from tests.flows.conftest import fast_pathway

pytestmark = pytest.mark.slow

KEY = "chf-post-discharge@1"


def _items(*types: str) -> list[OutboxItem]:
    items = []
    for n, action_type in enumerate(types, start=1):
        action: dict[str, Any] = {
            "id": f"i-00000000000000aa.{n}",
            "action": action_type,
            "patient_id": "p-1",
            "pathway": "chf-post-discharge",
            "pathway_version": "1",
            "instance_id": "i-00000000000000aa",
            "rule": "test",
            "fired_at": "2026-03-02T10:00:00Z",
            "due_by": None,
            "params": {"role": "care_coordinator", "reason": "test"},
        }
        items.append(OutboxItem(action["id"], KEY, action, 1))
    return items


def _run(
    home: Path,
    port: RecordingPort,
    items: list[OutboxItem],
    execution: dict[str, str] | None = None,
) -> list[Outcome]:
    flows = LocalFlows([fast_pathway("chf-post-discharge.yaml", execution)], home=home)
    return flows.run_group(KEY, items, PortRegistry.single(port))


def test_every_action_is_carried_out_once_with_its_id_as_key(prefect_home: Path) -> None:
    port = RecordingPort()
    items = _items("outreach_call", "book_follow_up", "escalate", "notify")
    outcomes = _run(prefect_home, port, items)
    assert outcomes == [
        Outcome(i.action_id, True, port.references[i.action_id], None, 1) for i in items
    ]
    assert port.effects == {i.action_id: i.action for i in items}
    assert sorted(port.calls) == sorted(i.action_id for i in items)


def test_retries_happen_and_a_failure_stays_with_its_action(prefect_home: Path) -> None:
    port = RecordingPort()
    items = _items("book_follow_up", "outreach_call", "patient_education", "notify")
    port.fail("book_follow_up", times=2)  # works at the third attempt (3 retries allowed)
    port.fail(items[1].action_id)  # never works
    outcomes = _run(prefect_home, port, items)
    book, call, education, notify = outcomes
    assert book.succeeded and book.attempts == 3
    assert port.attempts(items[0].action_id) == 3
    assert not call.succeeded
    assert call.attempts == 6  # outreach_call: 5 retries by default
    assert port.attempts(items[1].action_id) == 6
    assert call.error == (
        f"AdapterError: outreach_call for {items[1].action_id}: unavailable (attempt 6)"
    )
    assert education.succeeded and notify.succeeded
    assert set(port.effect_counts.values()) == {1}
    assert items[1].action_id not in port.effects


def test_a_timeout_ends_a_hung_attempt_and_retries_it(prefect_home: Path) -> None:
    port = RecordingPort()
    port.delay("notify", 2.5)
    items = _items("notify", "escalate")
    execution = {"notify": "{retries: 1, retry_delay: 0 seconds, timeout: 1 second}"}
    outcomes = _run(prefect_home, port, items, execution)
    notify, escalate = outcomes
    assert not notify.succeeded and notify.attempts == 2
    assert "TimeoutError" in (notify.error or "") or "timeout" in (notify.error or "").lower()
    assert escalate.succeeded


def test_an_action_type_without_a_task_fails_alone(prefect_home: Path) -> None:
    port = RecordingPort()
    items = _items("refer_podiatry", "notify")  # refer_podiatry is not a CHF action
    podiatry, notify = _run(prefect_home, port, items)
    assert podiatry == Outcome(
        items[0].action_id,
        False,
        error="the flow of chf-post-discharge@1 has no task for 'refer_podiatry'",
        attempts=0,
    )
    assert notify.succeeded


def test_the_embedded_default_runs_untagged_and_emits_no_events(prefect_home: Path) -> None:
    from prefect.events import emit_event

    from engine.flows import prefect_runtime

    flows = LocalFlows([fast_pathway("chf-post-discharge.yaml")], home=prefect_home)
    assert flows.tag_runs is False
    with prefect_runtime(prefect_home):
        assert emit_event("carepath.test", resource={"prefect.resource.id": "carepath"}) is None
