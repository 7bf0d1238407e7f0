"""Table-driven rule cases at their boundaries (shared/clinical/PATHWAYS.md), each a small event
history through `simulate`, with both evaluators. The scenario folders show whole stories; these
tables say exactly which input on which side of a threshold does what."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from itertools import count, product
from typing import Any, get_args

import pytest

from engine.catalogue.events import Symptom
from tests.scenarios.harness import events_text, run_lines

D = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday
H, DAY, SECOND = timedelta(hours=1), timedelta(days=1), timedelta(seconds=1)
KG_PER_LB = 0.45359237
RED_FLAGS = {"dyspnea_at_rest", "chest_pain", "syncope"}
_ids = count(1)


def event(type_: str, at: datetime, patient: str = "p", **data: Any) -> dict[str, Any]:
    return {
        "id": f"e{next(_ids)}",
        "type": type_,
        "patient_id": patient,
        "occurred_at": at.isoformat(),
        "data": data,
    }


def discharge(at: datetime = D, dx: tuple[str, ...] = ("I50.9",), disposition: str | None = "01"):
    data: dict[str, Any] = {"encounter_id": "enc", "diagnoses": list(dx)}
    if disposition is not None:
        data["disposition"] = disposition
    return event("encounter.discharged", at, **data)


def weight(at: datetime, value: float, unit: str = "kg") -> dict[str, Any]:
    return event("observation.weight", at, value=value, unit=unit)


def exam(at: datetime, risk: int, **findings: Any) -> dict[str, Any]:
    data = {
        "iwgdf_risk": risk,
        "active_ulcer": False,
        "infection": "none",
        "ischemia": False,
        "gangrene": False,
    }
    return event("foot_exam.completed", at, **{**data, **findings})


def run(
    evaluator: str,
    *events: dict[str, Any],
    until: datetime | None = None,
    holidays: tuple[date, ...] = (),
) -> list[dict[str, Any]]:
    """The events in time order (none is late), through simulate."""
    in_order = sorted(events, key=lambda e: datetime.fromisoformat(e["occurred_at"]))
    result = run_lines(events_text(*in_order), until=until, holidays=holidays, evaluator=evaluator)
    assert result.bad == 0, result.errors
    return result.actions


def by_rule(actions: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [a for a in actions if a["rule"] == rule]


def escalation_reasons(actions: list[dict[str, Any]]) -> list[str]:
    return [a["params"]["reason"] for a in actions if a["action"] == "escalate"]


def weight_gains(actions: list[dict[str, Any]]) -> list[str]:
    """The reasons of the weight_gain chain's escalations (not the follow-up deadlines')."""
    return [a["params"]["reason"] for a in actions if a["params"].get("chain") == "weight_gain"]


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- CHF weights --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "unit", "escalates"),
    [
        (80.0, 80.9, "kg", False),
        (80.0, 80.99, "kg", False),
        (80.0, 81.0, "kg", True),
        (80.0, 81.1, "kg", True),
        (74.1, 75.1, "kg", True),  # 1.0000000000000142 in floating point: still exactly 1.0 kg
        (80.3, 81.3, "kg", True),  # 0.9999999999999858 in floating point
        (176.0, 178.2, "lb", False),  # 2.2 lb = 0.998 kg
        (176.0, 178.3, "lb", True),  # 2.3 lb = 1.043 kg
    ],
)
def test_24h_gain_threshold(
    evaluator: str, before: float, after: float, unit: str, escalates: bool
) -> None:
    actions = run(evaluator, discharge(), weight(D + H, before, unit), weight(D + DAY, after, unit))
    assert weight_gains(actions) == (["weight_gain_24h"] if escalates else [])
    if escalates:
        (level1,) = by_rule(actions, "weight_gain_24h")
        assert level1["params"] == {
            "role": "hf_nurse",
            "reason": "weight_gain_24h",
            "level": 1,
            "chain": "weight_gain",
        }
        assert level1["due_by"] == z(D + DAY + 4 * H)


@pytest.mark.parametrize(
    ("kg", "lb", "escalates"),
    [
        (80.0, 178.5, False),  # 80.966 kg
        (80.0, 178.6, True),  # 81.012 kg
    ],
)
def test_24h_gain_across_units(evaluator: str, kg: float, lb: float, escalates: bool) -> None:
    assert 1.0 - (lb * KG_PER_LB - kg) != 0  # never exactly on the line: the unit decides
    actions = run(evaluator, discharge(), weight(D + H, kg), weight(D + DAY, lb, "lb"))
    assert weight_gains(actions) == (["weight_gain_24h"] if escalates else [])


def ramp(start: datetime, final: float, final_at: timedelta) -> list[dict[str, Any]]:
    """80.0 at `start`, +0.3 kg a day for six days (never 1 kg in 24 h), then `final`."""
    readings = [weight(start + i * DAY, round(80.0 + 0.3 * i, 1)) for i in range(7)]
    return [*readings, weight(start + final_at, final)]


@pytest.mark.parametrize(("final", "escalates"), [(81.9, False), (82.0, True), (82.1, True)])
def test_7d_gain_threshold(evaluator: str, final: float, escalates: bool) -> None:
    actions = run(evaluator, discharge(), *ramp(D + H, final, 6 * DAY + 23 * H))
    assert weight_gains(actions) == (["weight_gain_7d"] if escalates else [])


@pytest.mark.parametrize(
    ("readings", "reasons"),
    [
        pytest.param([(0 * H, 80.0), (24 * H, 81.5)], ["weight_gain_24h"], id="24h-exactly"),
        pytest.param([(0 * H, 80.0), (24 * H + SECOND, 81.5)], [], id="24h-and-a-second"),
        pytest.param("7d", ["weight_gain_7d"], id="7d-exactly"),
        pytest.param("7d+1s", [], id="7d-and-a-second"),
        pytest.param(
            [(0 * H, 80.5), (5 * H, 80.0), (11 * H, 80.8), (23 * H, 81.0)],
            ["weight_gain_24h"],
            id="against-the-lowest-reading-in-the-window",
        ),
        pytest.param([(0 * H, 81.0), (23 * H, 80.0)], [], id="a-loss"),
        pytest.param([(0 * H, 80.0)], [], id="no-earlier-reading"),
    ],
)
def test_window_edges(evaluator: str, readings: Any, reasons: list[str]) -> None:
    start = D + H
    if readings == "7d":
        events = ramp(start, 82.0, 7 * DAY)
    elif readings == "7d+1s":
        events = ramp(start, 82.0, 7 * DAY + SECOND)  # lowest left in the window: 80.3
    else:
        events = [weight(start + offset, value) for offset, value in readings]
    assert weight_gains(run(evaluator, discharge(), *events)) == reasons


# -- CHF enrolment ------------------------------------------------------------------------------

ENROLMENT = [
    "enrol",
    "outreach_call",
    "book_follow_up",
    "patient_education",
    "reconcile_medications",
]


@pytest.mark.parametrize(
    ("disposition", "actions"),
    [
        ("01", ENROLMENT),
        ("06", [*ENROLMENT[:3], "schedule_home_visit", *ENROLMENT[3:]]),
        (None, ENROLMENT),
        ("02", []),
        ("03", []),
        ("20", []),
        ("50", []),
        ("51", []),
    ],
)
def test_enrolment_by_disposition(
    evaluator: str, disposition: str | None, actions: list[str]
) -> None:
    fired = run(evaluator, discharge(disposition=disposition))
    assert [a["action"] for a in fired] == actions
    for a in fired:
        if a["action"] == "schedule_home_visit":
            assert a["due_by"] == z(D + 48 * H)


@pytest.mark.parametrize(
    ("codes", "enrols"),
    [
        (["I50.9"], True),
        (["I50"], True),
        (["I50.22"], True),
        (["I5023"], True),
        (["84114007"], True),
        (["42343007"], True),
        (["88805009"], True),
        (["E11.9", "I10", "I50.32"], True),
        (["I10"], False),
        (["I51.81"], False),
        (["I11.0"], False),  # hypertensive heart disease WITH heart failure: I50.x goes with it
        (["428.0"], False),  # ICD-9
        (["38341003"], False),
        ([], False),
    ],
)
def test_chf_enrolment_by_code(evaluator: str, codes: list[str], enrols: bool) -> None:
    fired = run(evaluator, discharge(dx=tuple(codes)))
    assert bool(fired) is enrols
    assert [a["action"] for a in fired[:1]] == (["enrol"] if enrols else [])


# -- CHF deadlines and chains -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missed_after", "rebook_due_after"),
    [
        (DAY, 7 * DAY),
        (4 * DAY - SECOND, 7 * DAY),
        (4 * DAY, 7 * DAY),  # the two dates meet
        (4 * DAY + SECOND, 7 * DAY + SECOND),
        (6 * DAY, 9 * DAY),
    ],
)
def test_missed_follow_up_rebook_is_due_by_the_later_date(
    evaluator: str, missed_after: timedelta, rebook_due_after: timedelta
) -> None:
    missed = event("appointment.missed", D + missed_after, appointment_id="a", kind="follow_up")
    fired = by_rule(run(evaluator, discharge(), missed), "missed_follow_up")
    assert [(a["action"], a["due_by"], a["params"]) for a in fired] == [
        (
            "outreach_call",
            z(D + missed_after + DAY),
            {"role": "care_coordinator", "reason": "missed_follow_up"},
        ),
        (
            "book_follow_up",
            z(D + rebook_due_after),
            {"kind": "follow_up", "role": "care_coordinator"},
        ),
    ]


@pytest.mark.parametrize(
    ("booked_after", "attended_after", "reasons"),
    [
        (5 * DAY - SECOND, 7 * DAY - SECOND, []),
        (5 * DAY, 7 * DAY - SECOND, ["follow_up_not_booked"]),
        (5 * DAY - SECOND, 7 * DAY, ["follow_up_overdue"]),
        (None, None, ["follow_up_not_booked", "follow_up_overdue"]),
    ],
)
def test_follow_up_deadlines_at_their_instants(
    evaluator: str, booked_after: Any, attended_after: Any, reasons: list[str]
) -> None:
    events = [discharge(), *(weight(D + k * 40 * H, 80.0) for k in range(1, 5))]
    if booked_after is not None:
        events.append(
            event("appointment.booked", D + booked_after, appointment_id="a", kind="follow_up")
        )
        events.append(
            event("appointment.attended", D + attended_after, appointment_id="a", kind="follow_up")
        )
    fired = run(evaluator, *events, until=D + 8 * DAY)
    assert escalation_reasons(fired) == reasons


@pytest.mark.parametrize("symptom", get_args(Symptom))
def test_red_flag_symptoms(evaluator: str, symptom: str) -> None:
    fired = run(evaluator, discharge(), event("symptom.reported", D + H, symptom=symptom))
    escalations = [a for a in fired if a["action"] == "escalate"]
    if symptom in RED_FLAGS:
        assert [(a["params"], a["due_by"]) for a in escalations] == [
            (
                {
                    "role": "cardiology_on_call",
                    "reason": "red_flag_symptom",
                    "level": 1,
                    "chain": "red_flag",
                    "urgent": True,
                },
                z(D + 2 * H),
            )
        ]
    else:
        assert escalations == []


# -- business days ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("discharged", "holidays", "due"),
    [
        ("2025-03-03T15:00:00+00:00", (), "2025-03-05T15:00:00Z"),  # Mon -> Wed
        ("2025-03-04T15:00:00+00:00", (), "2025-03-06T15:00:00Z"),  # Tue -> Thu
        ("2025-03-05T15:00:00+00:00", (), "2025-03-07T15:00:00Z"),  # Wed -> Fri
        ("2025-03-06T15:00:00+00:00", (), "2025-03-10T15:00:00Z"),  # Thu -> Mon
        ("2025-03-07T15:00:00+00:00", (), "2025-03-11T15:00:00Z"),  # Fri -> Tue
        ("2025-03-08T10:00:00+00:00", (), "2025-03-11T10:00:00Z"),  # Sat -> Tue
        ("2025-03-09T10:00:00+00:00", (), "2025-03-11T10:00:00Z"),  # Sun -> Tue
        ("2025-03-07T15:00:00+00:00", ("2025-03-10",), "2025-03-12T15:00:00Z"),
        ("2025-03-06T15:00:00+00:00", ("2025-03-07",), "2025-03-11T15:00:00Z"),
        ("2025-03-07T15:00:00+00:00", ("2025-03-08", "2025-03-09"), "2025-03-11T15:00:00Z"),
        ("2025-03-07T15:00:00+00:00", ("2025-03-10", "2025-03-11"), "2025-03-13T15:00:00Z"),
        # judged on the patient's own Friday, not on UTC's Saturday
        ("2025-03-07T23:30:00-05:00", (), "2025-03-12T04:30:00Z"),
        # and on their own Saturday, not on UTC's Friday
        ("2025-03-08T00:30:00+02:00", (), "2025-03-10T22:30:00Z"),
    ],
)
def test_outreach_is_due_two_business_days_after_discharge(
    evaluator: str, discharged: str, holidays: tuple[str, ...], due: str
) -> None:
    fired = run(
        evaluator,
        discharge(at=datetime.fromisoformat(discharged)),
        holidays=tuple(date.fromisoformat(h) for h in holidays),
    )
    (outreach,) = [a for a in fired if a["action"] == "outreach_call"]
    assert outreach["due_by"] == due


@pytest.mark.parametrize(
    ("at", "holidays", "due"),
    [
        ("2025-03-05T10:00:00+00:00", (), "2025-03-06T10:00:00Z"),  # Wed -> Thu
        ("2025-03-07T15:00:00+00:00", (), "2025-03-10T15:00:00Z"),  # Fri -> Mon
        ("2025-03-08T10:00:00+00:00", (), "2025-03-10T10:00:00Z"),  # Sat -> Mon
        ("2025-03-09T10:00:00+00:00", (), "2025-03-10T10:00:00Z"),  # Sun -> Mon
        ("2025-03-08T10:00:00+00:00", ("2025-03-10",), "2025-03-11T10:00:00Z"),
        ("2025-12-24T16:00:00+00:00", ("2025-12-25", "2025-12-26"), "2025-12-29T16:00:00Z"),
    ],
)
def test_foot_team_referral_is_due_one_working_day_later(
    evaluator: str, at: str, holidays: tuple[str, ...], due: str
) -> None:
    fired = run(
        evaluator,
        exam(datetime.fromisoformat(at), 3, active_ulcer=True),
        holidays=tuple(date.fromisoformat(h) for h in holidays),
    )
    assert [a["due_by"] for a in by_rule(fired, "active_ulcer")] == [due]


# -- diabetic foot care -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "enrols"),
    [
        ("E08.22", True),
        ("E09.9", True),
        ("E10.65", True),
        ("E11.9", True),
        ("E119", True),
        ("E13.9", True),
        ("E14.9", False),
        ("E16.2", False),
        ("E1", False),
        ("O24.410", False),
        ("I50.9", False),
    ],
)
def test_foot_enrolment_by_diagnosis(evaluator: str, code: str, enrols: bool) -> None:
    fired = run(evaluator, event("condition.diagnosed", D, code=code))
    expected = [("enrol", None), ("book_foot_screening", z(D + 28 * DAY))] if enrols else []
    assert [(a["action"], a["due_by"]) for a in fired] == expected


@pytest.mark.parametrize(
    ("examined", "risk", "due"),
    [
        ("2025-01-31T10:00:00+00:00", 0, "2026-01-31T10:00:00Z"),
        ("2025-01-31T10:00:00+00:00", 1, "2025-07-31T10:00:00Z"),
        ("2025-01-31T10:00:00+00:00", 2, "2025-04-30T10:00:00Z"),
        ("2025-01-31T10:00:00+00:00", 3, "2025-02-28T10:00:00Z"),
        ("2024-01-31T10:00:00+00:00", 3, "2024-02-29T10:00:00Z"),
        ("2024-02-29T10:00:00+00:00", 0, "2025-02-28T10:00:00Z"),
        ("2025-03-31T10:00:00+00:00", 1, "2025-09-30T10:00:00Z"),
        ("2025-08-31T10:00:00+00:00", 2, "2025-11-30T10:00:00Z"),
        ("2025-12-15T10:00:00+00:00", 3, "2026-01-15T10:00:00Z"),
        # calendar months on the patient's own calendar: 31 Jan at -05:00 is 1 Feb in UTC
        ("2025-01-31T23:30:00-05:00", 3, "2025-03-01T04:30:00Z"),
    ],
)
def test_screening_interval_by_risk(evaluator: str, examined: str, risk: int, due: str) -> None:
    fired = run(evaluator, exam(datetime.fromisoformat(examined), risk))
    assert [a["due_by"] for a in by_rule(fired, f"next_screening_risk_{risk}")] == [due]


@pytest.mark.parametrize(
    ("risks", "referrals"),
    [
        ([0], 0),
        ([1], 0),
        ([2], 1),
        ([3], 1),
        ([1, 2], 1),
        ([2, 3], 1),
        ([3, 3, 3], 1),
        ([2, 0, 3], 1),
    ],
)
def test_podiatry_referral_once_per_instance(
    evaluator: str, risks: list[int], referrals: int
) -> None:
    exams = [exam(D + i * 7 * DAY, risk) for i, risk in enumerate(risks)]
    fired = run(evaluator, *exams)
    assert len(by_rule(fired, "podiatry_referral")) == referrals
    assert {a["instance_id"] for a in fired} == {fired[0]["instance_id"]}


@pytest.mark.parametrize(
    ("infection", "ischemia", "gangrene"),
    list(product(["none", "mild", "moderate", "severe"], [False, True], [False, True])),
)
def test_limb_threat(evaluator: str, infection: str, ischemia: bool, gangrene: bool) -> None:
    threat = infection == "severe" or ischemia or gangrene
    fired = run(evaluator, exam(D, 1, infection=infection, ischemia=ischemia, gangrene=gangrene))
    escalations = [(a["params"], a["due_by"]) for a in fired if a["action"] == "escalate"]
    assert escalations == (
        [
            (
                {
                    "role": "acute_vascular_on_call",
                    "reason": "limb_threat",
                    "level": 1,
                    "chain": "limb_threat",
                    "urgent": True,
                },
                z(D + H),
            )
        ]
        if threat
        else []
    )


# -- acknowledging the weight_gain chain --------------------------------------------------------


def _task(level: int, first_action: int = 6) -> str:
    """The id of the escalation sent at `level` (enrolment fires actions 1-5)."""
    digest = hashlib.sha256(b"chf-post-discharge@1|p|dis").hexdigest()[:16]
    return f"i-{digest}.{first_action + level - 1}"


@pytest.mark.parametrize(
    ("ack_after", "ack", "roles"),
    [
        (None, {}, ["hf_nurse", "cardiology_on_call", "medical_director"]),
        (H, {"task_id": _task(1)}, ["hf_nurse"]),
        (5 * H, {"task_id": _task(1)}, ["hf_nurse", "cardiology_on_call"]),
        (5 * H, {"task_id": _task(2)}, ["hf_nurse", "cardiology_on_call"]),
        (7 * H, {"task_id": _task(3)}, ["hf_nurse", "cardiology_on_call", "medical_director"]),
        (H, {"pathway": "chf-post-discharge", "escalation": "weight_gain"}, ["hf_nurse"]),
        (
            5 * H,
            {"pathway": "chf-post-discharge", "escalation": "weight_gain"},
            ["hf_nurse", "cardiology_on_call"],
        ),
        (
            H,
            {"pathway": "chf-post-discharge", "escalation": "red_flag"},
            ["hf_nurse", "cardiology_on_call", "medical_director"],
        ),
        (
            H,
            {"pathway": "diabetic-foot-care", "escalation": "weight_gain"},
            ["hf_nurse", "cardiology_on_call", "medical_director"],
        ),
        (H, {"task_id": _task(1) + "0"}, ["hf_nurse", "cardiology_on_call", "medical_director"]),
        # an acknowledgement at the instant level 2 falls due is too late for level 1
        (4 * H, {"task_id": _task(1)}, ["hf_nurse", "cardiology_on_call"]),
        (4 * H - SECOND, {"task_id": _task(1)}, ["hf_nurse"]),
    ],
)
def test_acknowledging_the_chain(
    evaluator: str, ack_after: timedelta | None, ack: dict[str, str], roles: list[str]
) -> None:
    gain = D + DAY
    events = [
        {**discharge(), "id": "dis"},
        weight(D + H, 80.0),
        weight(gain, 81.0),
    ]
    if ack_after is not None:
        events.append(event("task.acknowledged", gain + ack_after, by="hf_nurse", **ack))
    fired = run(evaluator, *events, until=gain + DAY)
    chain = [a for a in fired if a["params"].get("chain") == "weight_gain"]
    assert [a["params"]["role"] for a in chain] == roles
    assert [a["params"]["level"] for a in chain] == list(range(1, len(roles) + 1))
    assert [a["id"] for a in chain] == [_task(level) for level in range(1, len(roles) + 1)]
    assert [a["fired_at"] for a in chain] == [z(gain), z(gain + 4 * H), z(gain + 6 * H)][
        : len(roles)
    ]


def test_an_acknowledgement_of_a_stopped_chain_does_not_stop_the_next(evaluator: str) -> None:
    gain = D + DAY
    fired = run(
        evaluator,
        {**discharge(), "id": "dis"},
        weight(D + H, 80.0),
        weight(gain, 81.0),
        event("task.acknowledged", gain + H, by="hf_nurse", task_id=_task(1)),
        weight(gain + 2 * H, 82.5),  # a new chain: level 1 is action 7
        event("task.acknowledged", gain + 3 * H, by="hf_nurse", task_id=_task(1)),
        until=gain + DAY,
    )
    chain = [a for a in fired if a["params"].get("chain") == "weight_gain"]
    assert [(a["id"], a["params"]["level"], a["fired_at"]) for a in chain] == [
        (_task(1), 1, z(gain)),
        (_task(1, 7), 1, z(gain + 2 * H)),
        (_task(2, 7), 2, z(gain + 6 * H)),
        (_task(3, 7), 3, z(gain + 8 * H)),
    ]
