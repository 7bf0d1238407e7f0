"""What-if: the recorded cohort under a modified CHF pathway (version 2), per patient (actions
added, removed, moved) and for the cohort."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import Result

from engine.catalogue import Event
from engine.definition.model import Pathway
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store

CHF = Path(__file__).resolve().parents[2] / "pathways" / "chf-post-discharge.yaml"
TWO_DAYS = 2 * 24 * 3600


def candidate(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """A copy of the CHF pathway as version 2 with `changes` (old, new) made to its text."""
    text = CHF.read_text(encoding="utf-8")
    for old, new in (("\nversion: 1\n", "\nversion: 2\n"), *changes):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "chf-v2.yaml"
    path.write_text(text, encoding="utf-8")
    return path


LOWER_THRESHOLD = ("weight_gain_24h_threshold: 1.0 kg", "weight_gain_24h_threshold: 0.5 kg")
EARLIER_BOOKING = (
    "follow_up_booking_escalation_after: 5d",
    "follow_up_booking_escalation_after: 3d",
)


def what_if(cli: Callable[..., Result], url: str, path: Path, *args: str) -> dict[str, Any]:
    result = cli("replay", "--db", url, "--pathway", str(path), "--json", *(args or ["--all"]))
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _brief(action: dict[str, Any]) -> tuple[str, str, str, Any]:
    params = action["params"]
    return action["action"], params.get("reason", ""), action["fired_at"], params.get("level")


def test_a_lower_weight_threshold_adds_one_escalation(
    recorded: Store, store_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    report = what_if(cli, store_url, candidate(tmp_path, LOWER_THRESHOLD))
    assert (report["pathway"], report["baseline"]) == (
        "chf-post-discharge@2",
        "chf-post-discharge@1",
    )
    # p-01's 0.7 kg gain now escalates (and p-01's acknowledgement stops the chain at level 1);
    # p-02 escalated under both versions; p-03's 0.2 kg does not reach 0.5 kg
    (diff,) = report["patients"]
    assert diff["patient_id"] == "p-01"
    assert [_brief(a) for a in diff["added"]] == [
        ("escalate", "weight_gain_24h", "2026-03-04T08:00:00Z", 1)
    ]
    assert diff["added"][0]["params"]["role"] == "hf_nurse"
    assert diff["added"][0]["pathway_version"] == "2"
    assert diff["removed"] == [] and diff["moved"] == []
    assert report["summary"] == {
        "patients": 7,
        "patients_differing": 1,
        "by_action": {"escalate": {"added": 1}},
    }


def test_an_earlier_booking_escalation_moves_and_adds(
    recorded: Store, store_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    report = what_if(cli, store_url, candidate(tmp_path, EARLIER_BOOKING))
    diffs = {d["patient_id"]: d for d in report["patients"]}
    assert set(diffs) == {"p-03", "p-04"}
    # p-03 booked on day 4: escalated on day 3 under version 2, never under version 1
    assert [_brief(a) for a in diffs["p-03"]["added"]] == [
        ("escalate", "follow_up_not_booked", "2026-03-05T10:00:00Z", None)
    ]
    assert diffs["p-03"]["moved"] == diffs["p-03"]["removed"] == []
    # p-04 never booked: the escalation comes two days earlier
    (moved,) = diffs["p-04"]["moved"]
    assert (moved["before"]["fired_at"], moved["after"]["fired_at"]) == (
        "2026-03-07T10:00:00Z",
        "2026-03-05T10:00:00Z",
    )
    assert moved["shift_seconds"] == -TWO_DAYS
    assert moved["after"]["params"]["reason"] == "follow_up_not_booked"
    assert diffs["p-04"]["added"] == diffs["p-04"]["removed"] == []
    assert report["summary"] == {
        "patients": 7,
        "patients_differing": 2,
        "by_action": {"escalate": {"added": 1, "earlier": 1}},
    }


def test_what_if_for_one_patient_and_as_text(
    recorded: Store, store_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    both = candidate(tmp_path, LOWER_THRESHOLD, EARLIER_BOOKING)
    report = what_if(cli, store_url, both, "--patient", "p-04")
    assert [d["patient_id"] for d in report["patients"]] == ["p-04"]
    assert report["summary"] == {
        "patients": 1,
        "patients_differing": 1,
        "by_action": {"escalate": {"earlier": 1}},
    }

    text = cli("replay", "--db", store_url, "--pathway", str(both), "--all")
    assert text.exit_code == 0
    lines = text.stdout
    assert "What if: chf-post-discharge@2" in lines
    assert "escalate -48.0 h" in lines
    for sentence in (
        "chf-post-discharge@2 vs recorded chf-post-discharge@1: 3 of 7 patients would differ",
        "chf-post-discharge@2 would escalate: 2 of 7 patients would gain it",
        "chf-post-discharge@2 would escalate: 1 of 7 patients earlier",
    ):
        assert sentence in lines, sentence


def test_what_if_with_the_recorded_version_changes_nothing(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    report = what_if(cli, store_url, CHF, "--all")
    assert report["patients"] == []
    assert report["summary"] == {"patients": 7, "patients_differing": 0, "by_action": {}}


def test_what_if_refuses_a_broken_candidate(
    recorded: Store, store_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    broken = candidate(tmp_path, (LOWER_THRESHOLD[0], "weight_gain_24h_threshold: heavy"))
    result = cli("replay", "--db", store_url, "--pathway", str(broken), "--all")
    assert result.exit_code == 2
    assert "chf-v2.yaml:" in result.stderr


def test_what_if_for_one_instance_is_for_its_patient(
    recorded: Store, store_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    (instance,) = recorded.instances_of("p-03")
    both = candidate(tmp_path, LOWER_THRESHOLD, EARLIER_BOOKING)
    report = what_if(cli, store_url, both, "--instance", instance.instance_id)
    assert [d["patient_id"] for d in report["patients"]] == ["p-03"]
    assert report["summary"]["patients"] == 1

    unknown = cli("replay", "--db", store_url, "--pathway", str(both), "--instance", "i-nope")
    assert unknown.exit_code == 2
    assert "no instance i-nope" in unknown.stderr


def test_late_events_stay_late_under_what_if(
    store_url: str, pathways: list[Pathway], tmp_path: Path, cli: Callable[..., Result]
) -> None:
    """A weight that arrived a day late was decided when it arrived (after the missing-weights
    call had gone out); under an unchanged pathway what-if must find no difference at all."""
    d = datetime(2026, 3, 2, 10, tzinfo=UTC)

    def event(eid: str, type_: str, patient: str, at: datetime, **data: Any) -> Event:
        return Event.model_validate(
            {"id": eid, "type": type_, "patient_id": patient, "occurred_at": at, "data": data}
        )

    events = [
        event("l-1", "encounter.discharged", "p-late", d, encounter_id="e1", diagnoses=["I50.9"]),
        event("l-2", "encounter.discharged", "p-other", d, encounter_id="e2", diagnoses=["I50.9"]),
        event("l-3", "observation.weight", "p-late", d + timedelta(days=1), value=80.0, unit="kg"),
        event("l-4", "observation.weight", "p-other", d + timedelta(days=3), value=70.0, unit="kg"),
        # taken on day 2, 1.5 kg up: it arrives after the day-3 reading of someone else
        event("l-5", "observation.weight", "p-late", d + timedelta(days=2), value=81.5, unit="kg"),
    ]
    store = Store.open(store_url)
    try:
        DurableEngine(store, open_registry(store, pathways, d)).submit_many(events)
        late = [a for a in store.actions(patient_id="p-late") if a["rule"] != "hf_discharge"]
    finally:
        store.close()
    assert [(a["action"], a["params"]["reason"], a["fired_at"]) for a in late] == [
        ("outreach_call", "missing_weights", "2026-03-05T10:00:00Z"),
        ("escalate", "weight_gain_24h", "2026-03-05T10:00:00Z"),
    ]
    report = what_if(cli, store_url, candidate(tmp_path))
    assert report["summary"] == {"patients": 2, "patients_differing": 0, "by_action": {}}
