"""FHIR R4 into events: the public samples (mapped, or refused with the reason), synthetic
resources for what the samples lack, invalid FHIR, ids, Bundles, and a fuzz test."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.inbound import events_from_fhir
from engine.catalogue import Event
from engine.errors import InputError

LONDON = ZoneInfo("Europe/London")
NUBC = "https://www.nubc.org/CodeSystem/PatDischargeStatus"
SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
KIND = "urn:carepath:appointment-kind"


def load(shared_samples: Path, name: str) -> dict[str, Any]:
    path = shared_samples / "fhir" / name
    if not path.is_file():
        pytest.skip(f"sample {name} not in {path.parent}")
    with path.open(encoding="utf-8") as handle:
        resource: dict[str, Any] = json.load(handle)
    return resource


def one(resource: Any, **kwargs: Any) -> Event:
    events = events_from_fhir(resource, **kwargs)
    assert len(events) == 1
    return events[0]


def refused(resource: Any) -> InputError:
    with pytest.raises(InputError) as info:
        events_from_fhir(resource)
    return info.value


# -- synthetic resources (written for these tests) -------------------------------------------------


def chf_encounter() -> dict[str, Any]:
    """A finished inpatient stay for heart failure, discharged home with home health (NUBC 06)."""
    return {
        "resourceType": "Encounter",
        "id": "enc-88001",
        "meta": {"versionId": "4", "lastUpdated": "2026-03-10T09:20:00Z"},
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
        },
        "subject": {"reference": "Patient/MRN-4711"},
        "period": {"start": "2026-03-05T14:00:00+00:00", "end": "2026-03-10T09:15:00+00:00"},
        "reasonCode": [{"coding": [{"system": SCT, "code": "42343007"}]}],
        "contained": [
            {
                "resourceType": "Condition",
                "id": "dx1",
                "subject": {"reference": "Patient/MRN-4711"},
                "code": {
                    "coding": [
                        {"system": ICD10CM, "code": "I50.9"},
                        {"system": SCT, "code": "84114007"},
                    ]
                },
            },
            {
                "resourceType": "Condition",
                "id": "dx2",
                "subject": {"reference": "Patient/MRN-4711"},
                "code": {"coding": [{"system": "http://example.org/local", "code": "HF-LOCAL"}]},
            },
        ],
        "diagnosis": [{"condition": {"reference": "#dx1"}, "rank": 1}],
        "hospitalization": {
            "dischargeDisposition": {
                "coding": [{"system": NUBC, "code": "06", "display": "Home health"}]
            }
        },
        "serviceProvider": {"reference": "Organization/rv", "display": "Riverside General"},
    }


def weight(value: Any = 81.4, code: str = "kg", **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Observation",
        "id": "w-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/MRN-4711"},
        "effectiveDateTime": "2026-03-11T07:30:00+00:00",
        "valueQuantity": {
            "value": value,
            "unit": code,
            "system": "http://unitsofmeasure.org",
            "code": code,
        },
    }
    resource.update(extra)
    return resource


def appointment(status: str = "booked", **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Appointment",
        "id": "ap-1",
        "meta": {"lastUpdated": "2026-03-11T10:00:00+00:00"},
        "status": status,
        "appointmentType": {"coding": [{"system": KIND, "code": "follow_up"}]},
        "start": "2026-03-16T09:00:00Z",
        "end": "2026-03-16T09:30:00Z",
        "created": "2026-03-11",
        "participant": [
            {"actor": {"reference": "Patient/MRN-4711"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr-1"}, "status": "accepted"},
        ],
    }
    resource.update(extra)
    return resource


def condition(**extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Condition",
        "id": "c-1",
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {"coding": [{"system": ICD10CM, "code": "E11.9"}]},
        "subject": {"reference": "Patient/MRN-4711"},
        "recordedDate": "2026-02-01T11:00:00+01:00",
    }
    resource.update(extra)
    return resource


def bundle(*resources: dict[str, Any], full_urls: list[str] | None = None) -> dict[str, Any]:
    entries = []
    for n, resource in enumerate(resources):
        entry: dict[str, Any] = {"resource": resource}
        if full_urls:
            entry["fullUrl"] = full_urls[n]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


# -- the public samples ----------------------------------------------------------------------------


def test_encounter_f001_is_refused_it_has_no_discharge_time(shared_samples: Path) -> None:
    resource = load(shared_samples, "r4core_Encounter-f001_dischargeDisposition.json")
    error = refused(resource)
    assert error.location == "Encounter.period.end"
    assert "never guessed" in str(error)
    resource["period"] = {"end": "2013-05-01T12:00:00+01:00"}
    event = one(resource)
    assert event.type == "encounter.discharged"
    assert event.patient_id == "f001"
    assert event.data == {
        "encounter_id": "f001",
        "diagnoses": ["34068001"],  # reasonCode: heart valve replacement
        "disposition": "01",  # SNOMED 306689006 discharge to home
        "facility": "Burgers University Medical Center",
    }


def test_encounter_f203_is_refused_it_has_no_disposition(shared_samples: Path) -> None:
    resource = load(shared_samples, "r4core_Encounter-f203_inpatient_period_end.json")
    error = refused(resource)
    assert error.location == "Encounter.hospitalization.dischargeDisposition"
    assert str(error).startswith("Encounter.hospitalization.dischargeDisposition: missing")
    resource["hospitalization"]["dischargeDisposition"] = {
        "coding": [{"system": NUBC, "code": "01"}]
    }
    event = one(resource, default_tz=LONDON)
    # period.end is a date: the start of that day in the deployment's zone
    assert event.occurred_at == datetime(2013, 3, 20, tzinfo=LONDON)
    assert event.data["diagnoses"] == []  # reasonCode has text only; diagnosis refs unresolved


def test_uscore_encounter_1036_is_refused_it_is_in_progress(shared_samples: Path) -> None:
    resource = load(shared_samples, "uscore_Encounter-1036_dischargeDisposition_nubc.json")
    error = refused(resource)
    assert str(error) == (
        "Encounter.status: is 'in-progress': only a finished Encounter is a discharge"
    )
    resource["status"] = "finished"
    resource["period"] = {"end": "2024-01-28T16:00:00-08:00"}
    event = one(resource)
    assert event.data == {
        "encounter_id": "1036",
        "diagnoses": [],
        "disposition": "01",
        "facility": "Holy Family Hospital",
    }
    assert event.occurred_at.utcoffset() == timedelta(hours=-8)


@pytest.mark.parametrize(
    ("name", "value", "unit"),
    [
        ("r4core_Observation-example_bodyweight_29463-7.json", 185.0, "lb"),
        ("uscore_Observation-weight_kg.json", 20.09414, "kg"),
    ],
)
def test_weight_samples_need_a_time_of_day(
    shared_samples: Path, name: str, value: float, unit: str
) -> None:
    resource = load(shared_samples, name)
    error = refused(resource)
    assert error.location == "Observation.effectiveDateTime"
    assert "has no time of day; a time is needed: gains are counted over 24 h" in str(error)
    resource["effectiveDateTime"] = resource["effectiveDateTime"] + "T07:30:00+01:00"
    event = one(resource)
    assert event.type == "observation.weight"
    assert event.patient_id == "example"
    assert event.data == {"value": value, "unit": unit}
    assert event.occurred_at == datetime.fromisoformat(resource["effectiveDateTime"])


def test_mii_condition_prefers_icd10(shared_samples: Path) -> None:
    resource = load(shared_samples, "mii_Condition-heart-failure_84114007_I50.9.json")
    event = one(resource, default_tz=LONDON)
    assert event.type == "condition.diagnosed"
    assert event.patient_id == "mii-exa-test-data-symptom-patient-1"
    assert event.data == {"code": "I50.9"}  # ICD-10-GM, though SNOMED 84114007 comes first
    assert event.occurred_at == datetime(2023, 11, 20, tzinfo=LONDON)  # onsetDateTime, a date


def test_synthea_condition_alone_is_refused_in_its_bundle_it_maps(shared_samples: Path) -> None:
    resource = load(shared_samples, "synthea_Condition-chf_88805009_extracted.json")
    error = refused(resource)
    assert error.location == "Condition.subject"
    assert "does not resolve to a Patient" in str(error)
    patient_url = resource["subject"]["reference"]
    patient = {"resourceType": "Patient", "id": patient_url.removeprefix("urn:uuid:")}
    event = one(bundle(patient, resource, full_urls=[patient_url, "urn:uuid:c1"]))
    assert event.patient_id == "0f49d2d0-59be-4f72-a22b-0a582367b44b"
    assert event.data == {"code": "88805009"}
    assert event.occurred_at == datetime(2015, 9, 15, 6, 58, 56, tzinfo=UTC)


def test_appointment_example_is_a_booked_follow_up(shared_samples: Path) -> None:
    resource = load(shared_samples, "r4core_Appointment-example.json")
    event = one(resource)
    assert event.type == "appointment.booked"
    assert event.patient_id == "example"
    assert event.data == {
        "appointment_id": "example",
        "kind": "follow_up",  # appointmentType v2-0276 FOLLOWUP
        "start": "2013-12-10T09:00:00Z",
    }
    assert event.occurred_at == datetime(2013, 10, 10, tzinfo=UTC)  # created (no lastUpdated)


@pytest.mark.parametrize(
    "name",
    [
        "r4core_CarePlan-example_daily_weight.json",
        "r4core_Patient-example.json",
        "r4core_Task-example1.json",
        "r4core_ServiceRequest-physiotherapy.json",
        "r4core_EpisodeOfCare-example.json",
        "r4core_Communication-example.json",
    ],
)
def test_resources_we_do_not_read_are_refused_not_dropped(shared_samples: Path, name: str) -> None:
    resource = load(shared_samples, name)
    error = refused(resource)
    assert str(error) == (
        f"{resource['resourceType']}: {resource['resourceType']} is not read by Carepath "
        "(it reads Encounter, Observation, Condition, Appointment, or a Bundle of them)"
    )


def test_every_sample_maps_or_is_refused_with_input_error(shared_samples: Path) -> None:
    for path in sorted((shared_samples / "fhir").glob("*.json")):
        with path.open(encoding="utf-8") as handle:
            resource = json.load(handle)
        try:
            events = events_from_fhir(resource)
        except InputError as error:
            assert error.location, path.name
        else:
            assert events, path.name


# -- Encounter -------------------------------------------------------------------------------------


def test_chf_encounter_discharged_home_with_home_health() -> None:
    event = one(chf_encounter())
    assert event == Event(
        id="fhir:Encounter/enc-88001/4",
        type="encounter.discharged",
        patient_id="MRN-4711",
        occurred_at=datetime(2026, 3, 10, 9, 15, tzinfo=UTC),
        data={
            "encounter_id": "enc-88001",
            # reasonCode, then the Condition Encounter.diagnosis points at (ICD-10 and SNOMED),
            # then other contained Conditions (the local code is not ICD-10/SNOMED: skipped)
            "diagnoses": ["42343007", "I50.9", "84114007"],
            "disposition": "06",
            "facility": "Riverside General",
        },
    )


@pytest.mark.parametrize(
    ("coding", "expected"),
    [
        ({"system": NUBC, "code": "06"}, "06"),
        ({"system": NUBC, "code": "6"}, "06"),
        ({"system": "http://www.nubc.org/patient-discharge", "code": "03"}, "03"),
        ({"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "20"}, "20"),
        ({"system": SCT, "code": "306689006"}, "01"),
        (
            {
                "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                "code": "snf",
            },
            "03",
        ),
    ],
)
def test_disposition_mapping(coding: dict[str, str], expected: str) -> None:
    resource = chf_encounter()
    resource["hospitalization"]["dischargeDisposition"] = {"coding": [coding]}
    assert one(resource).data["disposition"] == expected


def test_an_unmapped_disposition_is_refused_naming_the_codings() -> None:
    resource = chf_encounter()
    resource["hospitalization"]["dischargeDisposition"] = {
        "coding": [{"system": SCT, "code": "306694006"}],
        "text": "Discharge to nursing home",
    }
    error = refused(resource)
    assert error.location == "Encounter.hospitalization.dischargeDisposition"
    assert f"({SCT}|306694006)" in str(error)


def test_encounter_diagnosis_resolves_to_a_condition_in_the_same_bundle() -> None:
    encounter = chf_encounter()
    del encounter["contained"]
    encounter["reasonCode"] = []
    encounter["diagnosis"] = [{"condition": {"reference": "Condition/c-1"}}]
    cond = condition(code={"coding": [{"system": SCT, "code": "88805009"}]})
    events = events_from_fhir(bundle(encounter, cond))
    assert [e.type for e in events] == ["encounter.discharged", "condition.diagnosed"]
    assert events[0].data["diagnoses"] == ["88805009"]


# -- Observation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code", "expected"),
    [
        (81.4, "kg", {"value": 81.4, "unit": "kg"}),
        (80500, "g", {"value": 80.5, "unit": "kg"}),
        (179.5, "[lb_av]", {"value": 179.5, "unit": "lb"}),
    ],
)
def test_weight_units(value: float, code: str, expected: dict[str, Any]) -> None:
    event = one(weight(value, code))
    assert event.data == expected
    assert event.occurred_at == datetime(2026, 3, 11, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("code", ["lb", "lbs", "kgs", "KG"])
def test_non_ucum_units_are_refused(code: str) -> None:
    error = refused(weight(180, code))
    assert str(error) == (
        "Observation.valueQuantity: the unit must be UCUM (http://unitsofmeasure.org) kg, g or "
        f"[lb_av], not 'http://unitsofmeasure.org|{code}'"
    )


def test_a_unit_without_the_ucum_system_is_refused() -> None:
    resource = weight()
    del resource["valueQuantity"]["system"]
    assert "not 'no system|kg'" in str(refused(resource))


@pytest.mark.parametrize(
    ("change", "location", "fragment"),
    [
        (
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]}},
            "Observation.code",
            "not LOINC 29463-7 body weight",
        ),
        ({"status": "cancelled"}, "Observation.status", "is 'cancelled'"),
        ({"status": "entered-in-error"}, "Observation.status", "is 'entered-in-error'"),
        ({"valueQuantity": None}, "Observation.valueQuantity", "needs a valueQuantity.value"),
        ({"effectiveDateTime": None}, "Observation.effective[x]", "needs effectiveDateTime"),
        ({"effectiveDateTime": "2026-03"}, "Observation.effectiveDateTime", "only a year or"),
        ({"subject": {"reference": "Group/g1"}}, "Observation.subject", "not a Patient"),
        ({"subject": None}, "Observation.subject", "no patient"),
    ],
)
def test_weights_refused(change: dict[str, Any], location: str, fragment: str) -> None:
    resource = weight()
    for key, value in change.items():
        if value is None:
            del resource[key]
        else:
            resource[key] = value
    error = refused(resource)
    assert error.location == location
    assert fragment in str(error)


def test_weight_time_from_instant_or_period() -> None:
    resource = weight()
    del resource["effectiveDateTime"]
    resource["effectiveInstant"] = "2026-03-11T08:00:00+01:00"
    assert one(resource).occurred_at == datetime(2026, 3, 11, 7, tzinfo=UTC)
    del resource["effectiveInstant"]
    resource["effectivePeriod"] = {"start": "2026-03-11T06:00:00Z"}
    assert one(resource).occurred_at == datetime(2026, 3, 11, 6, tzinfo=UTC)


def test_implausible_weight_is_refused_by_the_event_model() -> None:
    error = refused(weight(1500000, "g"))
    assert error.location == "Observation -> event.data.value"


@pytest.mark.parametrize(
    ("reference", "patient"),
    [
        ("Patient/MRN-4711", "MRN-4711"),
        ("https://fhir.example.org/r4/Patient/MRN-4711", "MRN-4711"),
        ("Patient/MRN-4711/_history/3", "MRN-4711"),
    ],
)
def test_patient_references(reference: str, patient: str) -> None:
    assert one(weight(subject={"reference": reference})).patient_id == patient


def test_a_logical_patient_reference_gives_the_identifier() -> None:
    subject = {"identifier": {"system": "urn:oid:1.2.3", "value": "MRN-4711"}}
    assert one(weight(subject=subject)).patient_id == "MRN-4711"


# -- Condition -------------------------------------------------------------------------------------


def test_condition_diagnosed() -> None:
    event = one(condition())
    assert event.data == {"code": "E11.9"}
    assert event.occurred_at == datetime(2026, 2, 1, 10, tzinfo=UTC)  # recordedDate


def test_condition_snomed_when_no_icd10() -> None:
    resource = condition(code={"coding": [{"system": SCT, "code": "44054006"}]})
    assert one(resource).data == {"code": "44054006"}


@pytest.mark.parametrize("status", ["refuted", "entered-in-error", "differential", "unconfirmed"])
def test_unconfirmed_conditions_are_refused(status: str) -> None:
    resource = condition()
    resource["verificationStatus"]["coding"][0]["code"] = status
    error = refused(resource)
    assert error.location == "Condition.verificationStatus"


def test_condition_without_a_usable_code_or_time() -> None:
    no_code = condition(code={"coding": [{"system": "http://example.org", "code": "X"}]})
    assert str(refused(no_code)) == "Condition.code: no ICD-10 or SNOMED CT coding"
    no_time = condition()
    del no_time["recordedDate"]
    assert refused(no_time).location == "Condition.onset[x]"


# -- Appointment -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event_type", "occurred"),
    [
        ("booked", "appointment.booked", datetime(2026, 3, 11, 10, tzinfo=UTC)),  # lastUpdated
        ("arrived", "appointment.attended", datetime(2026, 3, 16, 9, tzinfo=UTC)),  # start
        ("checked-in", "appointment.attended", datetime(2026, 3, 16, 9, tzinfo=UTC)),
        ("fulfilled", "appointment.attended", datetime(2026, 3, 16, 9, tzinfo=UTC)),
        ("noshow", "appointment.missed", datetime(2026, 3, 16, 9, tzinfo=UTC)),
        ("cancelled", "appointment.cancelled", datetime(2026, 3, 11, 10, tzinfo=UTC)),
        ("entered-in-error", "appointment.cancelled", datetime(2026, 3, 11, 10, tzinfo=UTC)),
    ],
)
def test_appointment_status_changes(status: str, event_type: str, occurred: datetime) -> None:
    event = one(appointment(status))
    assert event.type == event_type
    assert event.patient_id == "MRN-4711"
    assert event.occurred_at == occurred
    assert event.data == {
        "appointment_id": "ap-1",
        "kind": "follow_up",
        "start": "2026-03-16T09:00:00Z",
    }


def test_a_noshow_foot_screening() -> None:
    resource = appointment(
        "noshow", appointmentType={"coding": [{"system": KIND, "code": "foot_screening"}]}
    )
    event = one(resource)
    assert (event.type, event.data["kind"]) == ("appointment.missed", "foot_screening")


@pytest.mark.parametrize("status", ["proposed", "pending", "waitlist"])
def test_not_yet_booked_is_refused(status: str) -> None:
    error = refused(appointment(status))
    assert error.location == "Appointment.status"
    assert str(error).startswith(f"Appointment.status: is '{status}': not yet a booking")


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ({"appointmentType": {"coding": [{"system": KIND, "code": "home_visit"}]}}, "home_visit"),
        ({"appointmentType": {"text": "podiatry"}}, "podiatry"),
        (
            {
                "appointmentType": {"text": "foot_screening"},
                "serviceType": [
                    {
                        "coding": [
                            {"system": "urn:carepath:action-type", "code": "book_foot_screening"}
                        ]
                    }
                ],
            },
            "foot_screening",
        ),
        (
            {
                "appointmentType": None,
                "serviceType": [{"coding": [{"system": KIND, "code": "foot_team"}]}],
            },
            "foot_team",
        ),
    ],
)
def test_appointment_kinds(types: dict[str, Any], expected: str) -> None:
    resource = appointment()
    for key, value in types.items():
        if value is None:
            del resource[key]
        else:
            resource[key] = value
    assert one(resource).data["kind"] == expected


def test_appointment_kind_missing_or_ambiguous() -> None:
    resource = appointment(appointmentType={"text": "cardiology clinic"})
    assert refused(resource).location == "Appointment.appointmentType"
    resource = appointment(
        serviceType=[{"coding": [{"system": KIND, "code": "podiatry"}]}],
    )
    assert str(refused(resource)) == ("Appointment: names more than one kind: follow_up, podiatry")


def test_appointment_times_and_patients() -> None:
    no_times = appointment("cancelled")
    del no_times["meta"]
    assert str(refused(no_times)) == (
        "Appointment: no time for appointment.cancelled: needs meta.lastUpdated"
    )
    booked = appointment()
    del booked["meta"]
    assert one(booked).occurred_at == datetime(2026, 3, 11, tzinfo=UTC)  # created, a date
    two = appointment()
    two["participant"].append({"actor": {"reference": "Patient/other"}, "status": "accepted"})
    assert str(refused(two)) == (
        "Appointment.participant: 2 Patient participants: an appointment event is for one patient"
    )


# -- invalid FHIR ----------------------------------------------------------------------------------


def test_missing_observation_status() -> None:
    resource = weight()
    del resource["status"]
    error = refused(resource)
    assert str(error) == "Observation.status: Value for the field 'status' is required."


def test_a_number_written_as_a_string_is_refused() -> None:
    error = refused(weight("185"))
    assert str(error) == (
        "Observation.valueQuantity.value: must be a JSON number, not the string '185'"
    )
    assert refused(weight("heavy")).location == "Observation.valueQuantity.value"


def test_a_boolean_written_as_a_string_is_refused() -> None:
    resource = appointment()
    resource["participant"][0]["actor"]["reference"] = "Patient/MRN-4711"
    patient = {"resourceType": "Patient", "id": "MRN-4711", "active": "true"}
    error = refused(bundle(patient, resource))
    assert str(error) == (
        "Bundle.entry[0].resource.active: must be a JSON boolean, not the string 'true'"
    )


def test_an_unknown_element_is_refused() -> None:
    error = refused(weight(bodyWeightKg=81))
    assert str(error) == "Observation.bodyWeightKg: Extra inputs are not permitted"


def test_every_problem_is_listed() -> None:
    """As many as fhir.resources reports at once (it stops at unknown elements)."""
    error = refused(weight("heavy", effectiveDateTime="yesterday"))
    assert error.location == "Observation.effectiveDateTime"
    assert str(error) == (
        "Observation.effectiveDateTime: DateTime value string does not match spec regex. "
        "(and 1 more: Observation.valueQuantity.value: Decimal value string does not match "
        "spec regex.)"
    )


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ([], "a FHIR resource is a JSON object with a resourceType"),
        ({"id": "x"}, "a FHIR resource is a JSON object with a resourceType"),
        ({"resourceType": "Foo"}, "Foo: 'Foo' is not a FHIR R4 resource type"),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "x"}]},
            "Bundle.entry[0].resource: an entry without a resource",
        ),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {}}]},
            "Bundle.entry[0].resource: no resourceType",
        ),
        (
            bundle(weight(), {"resourceType": "CarePlan"}),
            "Bundle.entry[1].resource: CarePlan is not read by Carepath "
            "(it reads Encounter, Observation, Condition, Appointment, or a Bundle of them)",
        ),
        (
            bundle(weight(), weight(status=None)),
            "Bundle.entry[1].resource.status: Value for the field 'status' is required.",
        ),
        (
            bundle(weight(), appointment("proposed")),
            "Bundle.entry[1].resource.status: is 'proposed': not yet a booking (Carepath reads "
            "booked, arrived, checked-in, fulfilled, noshow, cancelled, entered-in-error)",
        ),
    ],
)
def test_structural_refusals(resource: Any, expected: str) -> None:
    if isinstance(resource, dict) and resource.get("entry"):
        for entry in resource["entry"]:
            body = entry.get("resource")
            if isinstance(body, dict) and body.get("status", "") is None:
                del body["status"]
    assert str(refused(resource)) == expected


# -- ids and Bundles -------------------------------------------------------------------------------


def test_event_id_uses_version_id_else_a_content_hash() -> None:
    versioned = weight(meta={"versionId": "3"})
    assert one(versioned).id == "fhir:Observation/w-1/3"
    plain = one(weight())
    assert plain.id.startswith("fhir:Observation/w-1/sha256-")
    # a resend, or the same resource with a new narrative or lastUpdated, is the same event
    rewritten = weight(
        meta={"lastUpdated": "2026-03-11T08:00:00Z"},
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">w</div>'},
    )
    assert one(rewritten).id == plain.id
    assert one(weight(81.5)).id != plain.id  # a corrected value is a new event


def test_long_ids_are_hashed_within_bounds() -> None:
    event = one(weight(id="x" * 64, meta={"versionId": "v" * 64}))
    assert len(event.id) <= 128 and event.id.startswith("fhir:#")


def test_bundle_entries_in_order_context_entries_skipped() -> None:
    patient = {"resourceType": "Patient", "id": "MRN-4711"}
    org = {"resourceType": "Organization", "id": "rv", "name": "Riverside General"}
    events = events_from_fhir(
        bundle(patient, org, chf_encounter(), weight(), appointment(), condition())
    )
    assert [e.type for e in events] == [
        "encounter.discharged",
        "observation.weight",
        "appointment.booked",
        "condition.diagnosed",
    ]


def test_a_bundle_of_context_only_is_refused_an_empty_one_is_nothing() -> None:
    error = refused(bundle({"resourceType": "Patient", "id": "MRN-4711"}))
    assert error.location == "Bundle.entry"
    assert events_from_fhir({"resourceType": "Bundle", "type": "searchset"}) == []


def test_a_bundle_is_all_or_nothing() -> None:
    error = refused(bundle(weight(), chf_encounter(), weight("81")))
    assert error.location == "Bundle.entry[2].resource.valueQuantity.value"


def test_the_default_zone_places_dates_only() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    event = one(condition(recordedDate="2026-02-01"), default_tz=tokyo)
    assert event.occurred_at == datetime(2026, 2, 1, tzinfo=tokyo)
    aware = one(condition(), default_tz=tokyo)
    assert aware.occurred_at.utcoffset() == timedelta(hours=1)  # as sent, not the default zone
    assert aware.occurred_at.tzinfo == timezone(timedelta(hours=1))


# -- nothing but InputError ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
SEEDS = [
    chf_encounter(),
    weight(),
    weight(80500, "g"),
    appointment(),
    appointment("noshow"),
    condition(),
    bundle(weight(), appointment()),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for n, child in enumerate(value):
            out += _paths(child, (*prefix, n))
    return out


def _only_input_errors(resource: Any) -> None:
    try:
        events = events_from_fhir(resource)
    except InputError as error:
        assert str(error)
    else:
        assert all(isinstance(e, Event) for e in events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json_raises_only_input_error(resource: Any) -> None:
    _only_input_errors(resource)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_resources_raise_only_input_error(
    seed: dict[str, Any], data: st.DataObject
) -> None:
    resource = copy.deepcopy(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(resource)[1:] or [("x",)]))
        parent = resource
        for key in path[:-1]:
            parent = parent[key]
        replacement = data.draw(
            JSON
            | st.sampled_from(
                ["Patient/x", "urn:uuid:1", "#dx1", "2026", "2026-03-01", "finished", "kg"]
            )
        )
        if isinstance(parent, dict | list):
            parent[path[-1]] = replacement
    _only_input_errors(resource)


def test_nulls_and_deep_nesting_are_refused() -> None:
    resource = weight()
    resource["code"] = None
    assert str(refused(resource)) == "Observation.code: null is not allowed: leave it out"
    deep: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(200):
        deep = {"url": "http://example.org/x", "extension": [deep]}
    assert str(refused(weight(extension=[deep]))) == (
        "Observation: nested more than 64 levels deep"
    )
