"""`carepath replay`: re-deciding a recorded history gives the recorded decisions; a recorded
decision altered afterwards is reported as a divergence, side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from click.testing import Result

from engine.catalogue import Event
from engine.definition.model import Pathway
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store
from engine.store import schema as t
from tests.replay.records import alter


def _decided_inputs(store: Store, patient: str | None = None) -> list[Any]:
    """The log records that were decided (everything but duplicates)."""
    return [r for r in store.inputs(patient_id=patient) if r.kind != "duplicate"]


def _audit_count(store: Store, patient: str | None = None) -> int:
    return len(store.audit_records(patient_id=patient))


def test_replay_of_a_patient_prints_the_timeline_and_is_identical(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    result = cli("replay", "--db", store_url, "--patient", "p-04")
    assert result.exit_code == 0, result.stdout
    inputs, decisions = len(_decided_inputs(recorded, "p-04")), _audit_count(recorded, "p-04")
    assert inputs > 5 and decisions > 5
    out = result.stdout
    assert "Replay timeline" in out
    for expected in ("encounter.discharged", "enrol: hf_discharge", "fire: hf_discharge",
                     "deadline:follow_up_not_booked", "deadline: follow_up_not_booked",
                     "escalate(care_coordinator, follow_up_not_booked)",
                     "missing:missing_weights"):  # fmt: skip
        assert expected in out, expected
    assert "p-01" not in out and "weight_gain" not in out  # nobody else's history
    assert (
        f"identical: {inputs} inputs, {decisions} decisions re-decided exactly as recorded" in out
    )


def test_replay_all_and_one_instance(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    everyone = cli("replay", "--db", store_url, "--all", "--json")
    assert everyone.exit_code == 0
    report = json.loads(everyone.stdout)
    assert report["identical"] is True and report["divergence"] is None
    assert report["inputs"] == len(_decided_inputs(recorded))
    assert report["decisions"] == _audit_count(recorded)
    assert {row["input_id"] for row in report["timeline"]} >= {"ev-001", "ev-006", "ev-014"}

    (instance,) = recorded.instances_of("p-02")
    one = cli("replay", "--db", store_url, "--instance", instance.instance_id, "--json")
    assert one.exit_code == 0
    report = json.loads(one.stdout)
    assert report["identical"] is True
    assert report["inputs"] == len(_decided_inputs(recorded, "p-02"))
    assert {row["instance_id"] for row in report["timeline"]} == {instance.instance_id}
    assert [row["rule"] for row in report["timeline"] if row["kind"] == "fire"][:2] == [
        "hf_discharge",
        "weight_gain_24h",
    ]


def test_replay_json_has_the_whole_timeline(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    result = cli("replay", "--db", store_url, "--patient", "p-02", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["identical"] is True
    audit = recorded.audit_records(patient_id="p-02")
    assert report["decisions"] == len(audit) == len(report["timeline"])
    assert [(r["seq"], r["kind"], r["rule"]) for r in report["timeline"]] == [
        (a["seq"], a["kind"], a["rule"]) for a in audit
    ]
    escalation = next(r for r in report["timeline"] if r["rule"] == "weight_gain_24h")
    assert escalation["decision"] == "escalate(hf_nurse, weight_gain_24h, level 1)"
    assert escalation["input_id"] == "ev-014"
    assert escalation["why"]  # the facts the condition saw




def test_an_altered_outbox_action_is_a_divergence(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    action = next(
        a for a in recorded.actions(patient_id="p-04") if a["rule"] == "follow_up_not_booked"
    )
    with recorded.engine.connect() as conn:
        seq = conn.execute(
            sa.select(t.outbox.c.seq).where(t.outbox.c.action_id == action["id"])
        ).scalar_one()
    timer = next(r for r in recorded.inputs() if r.seq == seq)
    assert timer.kind == "timer"
    alter(recorded, t.outbox, t.outbox.c.action_id, action["id"], "payload",
          lambda a: a["params"].update(role="nobody"))  # fmt: skip

    result = cli("replay", "--db", store_url, "--patient", "p-04")
    assert result.exit_code == 1
    assert f"DIVERGED at input {seq} ({timer.input_id}): actions differ" in result.stdout
    assert '"role": "nobody"' in result.stdout and '"role": "care_coordinator"' in result.stdout
    assert "identical" not in result.stdout

    report = json.loads(cli("replay", "--db", store_url, "--patient", "p-04", "--json").stdout)
    assert report["identical"] is False
    divergence = report["divergence"]
    assert (divergence["seq"], divergence["input_id"], divergence["what"]) == (
        seq,
        timer.input_id,
        "actions",
    )
    assert [a["params"]["role"] for a in divergence["recorded"]] == ["nobody"]
    assert [a["params"]["role"] for a in divergence["replayed"]] == ["care_coordinator"]
    assert {a["id"] for a in divergence["replayed"]} == {action["id"]}
    assert all(row["seq"] < seq for row in report["timeline"])  # replay stops at the divergence

    # other patients' histories are untouched
    assert cli("replay", "--db", store_url, "--patient", "p-03").exit_code == 0


def test_an_altered_audit_record_is_a_divergence(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    with recorded.engine.connect() as conn:
        audit_id, seq = conn.execute(
            sa.select(t.audit.c.id, t.audit.c.seq).where(t.audit.c.rule == "weight_gain_24h")
        ).one()

    def understate(record: dict[str, Any]) -> None:
        assert record["facts"] == {"weight_gain_86400s": 1.5}
        record["facts"]["weight_gain_86400s"] = 0.2

    alter(recorded, t.audit, t.audit.c.id, audit_id, "record", understate)

    result = cli("replay", "--db", store_url, "--all", "--json")
    assert result.exit_code == 1
    divergence = json.loads(result.stdout)["divergence"]
    assert (divergence["seq"], divergence["input_id"], divergence["what"]) == (
        seq,
        "ev-014",
        "audit",
    )
    (recorded_entry,) = [r for r in divergence["recorded"] if r["rule"] == "weight_gain_24h"]
    (replayed_entry,) = [r for r in divergence["replayed"] if r["rule"] == "weight_gain_24h"]
    assert recorded_entry["facts"] == {"weight_gain_86400s": 0.2}
    assert replayed_entry["facts"] == {"weight_gain_86400s": 1.5}
    text = cli("replay", "--db", store_url, "--patient", "p-02")
    assert text.exit_code == 1
    assert f"DIVERGED at input {seq} (ev-014): audit differ" in text.stdout


def test_replay_of_an_unknown_instance_is_an_error(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    result = cli("replay", "--db", store_url, "--instance", "i-0000000000000000")
    assert result.exit_code == 2
    assert "no instance i-0000000000000000 in the store" in result.stderr


def test_a_patient_leaving_both_pathways_at_once_replays_identically(
    store_url: str, pathways: list[Pathway], cli: Callable[..., Result]
) -> None:
    """One input deciding actions on two instances: the CHF instance's counter is well past the
    diabetes instance's, and the recorded actions must be compared in the order decided."""

    def event(eid: str, type_: str, day: int, **data: Any) -> Event:
        at = datetime(2026, 3, 2 + day, 9, tzinfo=UTC)
        return Event.model_validate(
            {"id": eid, "type": type_, "patient_id": "p-both", "occurred_at": at, "data": data}
        )

    store = Store.open(store_url)
    try:
        engine = DurableEngine(store, open_registry(store, pathways, datetime.now(UTC)))
        engine.submit_many([
            event("b-1", "encounter.discharged", 0, encounter_id="enc", diagnoses=["I50.9"]),
            event("b-2", "condition.diagnosed", 0, code="E11.9"),
            event("b-3", "patient.opted_out", 9),
        ])  # fmt: skip
        (last,) = [r for r in store.inputs(patient_id="p-both") if r.input_id == "b-3"]
        exits = [a for a in store.actions(patient_id="p-both") if a["action"] == "exit"]
        assert sorted(a["pathway"] for a in exits) == ["chf-post-discharge", "diabetic-foot-care"]
    finally:
        store.close()
    result = cli("replay", "--db", store_url, "--patient", "p-both", "--json")
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["identical"] is True
    assert [r["rule"] for r in report["timeline"] if r["seq"] == last.seq] == [
        "exit.opted_out",
        "exit.opted_out",
    ]
