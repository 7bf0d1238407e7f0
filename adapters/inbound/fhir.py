"""FHIR R4 resources into events, validated with fhir.resources (its R4B models).

    Encounter    finished, with hospitalization.dischargeDisposition  -> encounter.discharged
    Observation  LOINC 29463-7 body weight, UCUM kg / g / [lb_av]     -> observation.weight
    Condition    ICD-10 (else SNOMED CT) code                          -> condition.diagnosed
    Appointment  booked / arrived, checked-in, fulfilled / noshow /
                 cancelled, entered-in-error                           -> appointment.*
    Bundle       its entries, in order (Patient, Practitioner, PractitionerRole, Organization
                 and Location entries only give context: they resolve references)

Anything else, or one of these that does not say what we need, is refused with an InputError
naming the element (`Encounter.status: ...`), so it reaches the dead-letter table instead of
being dropped: a sender configured to post here should post only what Carepath reads. A Bundle
is all or nothing. The mapping tables and the reasons behind each choice are in
docs/adapters.md ("Inbound").

fhir.resources checks structure, types and cardinality, not terminology; it also converts
what FHIR JSON forbids (`"value": "185"`, `"active": 1`, a number for a dateTime, a string
holding JSON for an object), so we compare every value's JSON type with its element's
ourselves, and refuse `null`s (`_fhir_validation.py`). A body given as bytes or text is read
by `parse_json` (strict UTF-8 and JSON, at most MAX_DEPTH deep) before any of this.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timezone, tzinfo
from decimal import Decimal
from typing import Any

from adapters.inbound._common import (
    disposition_code,
    is_code,
    make_event,
    short,
    stable_id,
)
from adapters.inbound._fhir_validation import CONTEXT, MAX_DEPTH, SUPPORTED, validated
from adapters.inbound.payload import parse_json
from engine.catalogue import APPOINTMENT_KINDS, Event
from engine.errors import InputError

__all__ = [
    "APPOINTMENT_KIND_SYSTEM",
    "APPOINTMENT_STATUS",
    "DISPOSITION_MAP",
    "events_from_fhir",
]


SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NUBC = (
    "https://www.nubc.org/CodeSystem/PatDischargeStatus",  # terminology.hl7.org (US Core 6+)
    "http://www.nubc.org/patient-discharge",  # the older URI, still in the wild
    "http://terminology.hl7.org/CodeSystem/v2-0112",  # HL7 v2 table 0112: the same codes
)
FHIR_DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
ICD10 = (
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm",
)

#: Discharge dispositions from other code systems, to HL7 0112 / UB-04. Only unambiguous
#: meanings: anything else (e.g. the FHIR example code `hosp`, hospice: 50 or 51?) is refused.
DISPOSITION_MAP: dict[tuple[str, str], str] = {
    (SNOMED, "306689006"): "01",  # Discharge to home
    (FHIR_DISCHARGE, "home"): "01",  # Home
    (FHIR_DISCHARGE, "aadvice"): "07",  # Left against advice
    (FHIR_DISCHARGE, "snf"): "03",  # Skilled nursing facility
    (FHIR_DISCHARGE, "exp"): "20",  # Expired
}

#: Weight units: UCUM code -> (unit of the event, factor). Strict: `lb`, `lbs`, `kgs` are not
#: UCUM and are refused, as is a Quantity with no UCUM system.
WEIGHT_UNITS: dict[str, tuple[str, Decimal]] = {
    "kg": ("kg", Decimal(1)),
    "g": ("kg", Decimal("0.001")),
    "[lb_av]": ("lb", Decimal(1)),
}
BODY_WEIGHT = "29463-7"
WEIGHT_STATUSES = ("final", "amended", "corrected", "preliminary")
CONDITION_VERIFIED = (None, "confirmed", "provisional")

#: Appointment.status -> event type. proposed, pending and waitlist are not yet a booking.
APPOINTMENT_STATUS: dict[str, str] = {
    "booked": "appointment.booked",
    "arrived": "appointment.attended",
    "checked-in": "appointment.attended",
    "fulfilled": "appointment.attended",
    "noshow": "appointment.missed",
    "cancelled": "appointment.cancelled",
    "entered-in-error": "appointment.cancelled",
}
#: Our own code system for the appointment kind: a scheduler can tag its appointments with it.
APPOINTMENT_KIND_SYSTEM = "urn:carepath:appointment-kind"
_ACTION_SYSTEM = "urn:carepath:action-type"  # what adapters/outbound/fhir.py puts in serviceType
_KIND_CODES: dict[tuple[str, str], str] = {
    **{(APPOINTMENT_KIND_SYSTEM, kind): kind for kind in APPOINTMENT_KINDS},
    (_ACTION_SYSTEM, "book_follow_up"): "follow_up",
    (_ACTION_SYSTEM, "book_foot_screening"): "foot_screening",
    ("http://terminology.hl7.org/CodeSystem/v2-0276", "FOLLOWUP"): "follow_up",
}
_REFERENCE = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def events_from_fhir(resource: object, *, default_tz: tzinfo = UTC) -> list[Event]:
    """The events a FHIR R4 resource or Bundle stands for, in entry order.

    `resource` is the raw body (bytes or text, read with `parse_json`: the service should pass
    what it received) or the parsed JSON. `default_tz` places a date without a time (FHIR
    allows `2013-03-20`) at the start of that day; the service passes the deployment's zone.
    Raises InputError for anything it refuses.
    """
    if isinstance(resource, bytes | str):
        resource = parse_json(resource, max_depth=MAX_DEPTH)
    rtype, raw_resource, model = validated(resource)
    if rtype != "Bundle":
        return [_map(model, raw_resource, rtype, _Context(default_tz))]
    ctx = _Context(default_tz)
    entries = list(zip(model.entry or [], raw_resource.get("entry") or [], strict=True))
    for entry, _raw in entries:
        ctx.add(entry.resource, entry.fullUrl)
    events: list[Event] = []
    for n, (entry, raw) in enumerate(entries):
        where = f"Bundle.entry[{n}].resource"
        if entry.resource.get_resource_type() in SUPPORTED:
            events.append(_map(entry.resource, raw["resource"], where, ctx))
    if entries and not events:
        raise InputError(
            f"only context entries ({', '.join(CONTEXT)}): nothing Carepath reads",
            location="Bundle.entry",
        )
    return events


# -- mapping ---------------------------------------------------------------------------------------


@dataclass
class _Context:
    """Bundle-wide lookups (references between entries) and the zone for dates."""

    tz: tzinfo
    by_url: dict[str, Any] = field(default_factory=dict)

    def add(self, resource: Any, full_url: str | None) -> None:
        rid = getattr(resource, "id", None)
        if rid:
            self.by_url[f"{resource.get_resource_type()}/{rid}"] = resource
        if full_url:
            self.by_url[full_url] = resource

    def resolve(self, reference: str) -> Any:
        if reference in self.by_url:
            return self.by_url[reference]
        match = _REFERENCE.search(reference)
        return self.by_url.get(f"{match['type']}/{match['id']}") if match else None


def _map(model: Any, raw: Mapping[str, Any], where: str, ctx: _Context) -> Event:
    rtype = model.get_resource_type()
    mapper = {
        "Encounter": _encounter,
        "Observation": _observation,
        "Condition": _condition,
        "Appointment": _appointment,
    }[rtype]
    event_type, patient, occurred, data = mapper(model, where, ctx)
    version = model.meta.versionId if model.meta and model.meta.versionId else _content_hash(raw)
    event_id = stable_id("fhir", f"{rtype}/{model.id or '-'}/{version}")
    return make_event(event_id, event_type, patient, occurred, data, where=where)


_Mapped = tuple[str, str, datetime, dict[str, Any]]


def _encounter(enc: Any, where: str, ctx: _Context) -> _Mapped:
    if enc.status != "finished":
        raise InputError(
            f"is {short(enc.status)}: only a finished Encounter is a discharge",
            location=f"{where}.status",
        )
    disposition_cc = enc.hospitalization.dischargeDisposition if enc.hospitalization else None
    if disposition_cc is None:
        raise InputError(
            "missing: a finished Encounter is read as a discharge only with a discharge "
            "disposition (an outpatient visit also finishes)",
            location=f"{where}.hospitalization.dischargeDisposition",
        )
    disposition = _disposition(disposition_cc, f"{where}.hospitalization.dischargeDisposition")
    end = enc.period.end if enc.period else None
    if end is None:
        raise InputError(
            "missing: the discharge time is the pathway's clock and is never guessed",
            location=f"{where}.period.end",
        )
    encounter_id = enc.id or _first_identifier(enc)
    if not encounter_id:
        raise InputError("an Encounter needs an id or an identifier", location=f"{where}.id")
    data = {
        "encounter_id": encounter_id,
        "diagnoses": _encounter_codes(enc, where, ctx),
        "disposition": disposition,
        "facility": _facility(enc),
    }
    patient = _patient(enc.subject, f"{where}.subject", ctx)
    return "encounter.discharged", patient, _time(end, f"{where}.period.end", ctx), data


def _disposition(concept: Any, where: str) -> str:
    codings = list(concept.coding or [])
    for coding in codings:
        if coding.system in NUBC and coding.code:
            if not is_code(coding.code):
                raise InputError(f"{short(coding.code)} is not a code", location=where)
            return disposition_code(coding.code)
    for coding in codings:
        mapped = DISPOSITION_MAP.get((coding.system or "", coding.code or ""))
        if mapped:
            return mapped
    seen = ", ".join(f"{c.system or '?'}|{c.code or '?'}" for c in codings) or "none"
    raise InputError(
        f"no NUBC / HL7 0112 code and no mapping for the codings given ({seen}); see the "
        "disposition table in docs/adapters.md",
        location=where,
    )


def _encounter_codes(enc: Any, where: str, ctx: _Context) -> list[str]:
    """reasonCode codings, then the Conditions that Encounter.diagnosis points at (contained,
    or in the same Bundle), then any other contained Condition: ICD-10 and SNOMED CT codes only.
    A diagnosis reference to a Condition we cannot see carries no code and is skipped."""
    contained = {f"#{r.id}": r for r in enc.contained or [] if r.id}
    conditions: list[tuple[str, Any]] = []
    for n, diagnosis in enumerate(enc.diagnosis or []):
        reference = diagnosis.condition.reference if diagnosis.condition else None
        if reference:
            found = contained.get(reference) or ctx.resolve(reference)
            if found is not None and found.get_resource_type() == "Condition":
                conditions.append((f"{where}.diagnosis[{n}].condition", found))
    for n, resource in enumerate(enc.contained or []):
        if resource.get_resource_type() == "Condition":
            conditions.append((f"{where}.contained[{n}].code", resource))
    concepts = [(f"{where}.reasonCode[{n}]", c) for n, c in enumerate(enc.reasonCode or [])]
    concepts += [(loc, c.code) for loc, c in conditions if c.code is not None]
    codes: list[str] = []
    for loc, concept in concepts:
        for code in _codes(concept, loc, (*ICD10, SNOMED)):
            if code not in codes:
                codes.append(code)
    return codes


def _facility(enc: Any) -> str | None:
    if enc.serviceProvider and enc.serviceProvider.display:
        return str(enc.serviceProvider.display)
    for location in enc.location or []:
        if location.location and location.location.display:
            return str(location.location.display)
    return None


def _observation(obs: Any, where: str, ctx: _Context) -> _Mapped:
    codings = (obs.code.coding or []) if obs.code is not None else []
    if not any(c.system == LOINC and c.code == BODY_WEIGHT for c in codings):
        raise InputError(
            f"not LOINC {BODY_WEIGHT} body weight: Carepath reads no other observation",
            location=f"{where}.code",
        )
    if obs.status not in WEIGHT_STATUSES:
        raise InputError(
            f"is {short(obs.status)}: a weight is read when {', '.join(WEIGHT_STATUSES)}",
            location=f"{where}.status",
        )
    quantity = obs.valueQuantity
    if quantity is None or quantity.value is None:
        raise InputError(
            "a body weight needs a valueQuantity.value", location=f"{where}.valueQuantity"
        )
    if quantity.system != UCUM or quantity.code not in WEIGHT_UNITS:
        given = f"{quantity.system or 'no system'}|{quantity.code or 'no code'}"
        raise InputError(
            f"the unit must be UCUM ({UCUM}) kg, g or [lb_av], not {short(given, 60)}",
            location=f"{where}.valueQuantity",
        )
    unit, factor = WEIGHT_UNITS[quantity.code]
    data = {"value": float(Decimal(quantity.value) * factor), "unit": unit}
    if obs.effectiveDateTime is not None:
        loc, when = f"{where}.effectiveDateTime", obs.effectiveDateTime
    elif obs.effectiveInstant is not None:
        loc, when = f"{where}.effectiveInstant", obs.effectiveInstant
    elif obs.effectivePeriod is not None and obs.effectivePeriod.start is not None:
        loc, when = f"{where}.effectivePeriod.start", obs.effectivePeriod.start
    else:
        raise InputError(
            "a weight needs effectiveDateTime (or effectiveInstant, effectivePeriod.start)",
            location=f"{where}.effective[x]",
        )
    occurred = _time(when, loc, ctx, need_time="gains are counted over 24 h")
    return "observation.weight", _patient(obs.subject, f"{where}.subject", ctx), occurred, data


def _condition(cond: Any, where: str, ctx: _Context) -> _Mapped:
    verification = _first_code(cond.verificationStatus)
    if verification not in CONDITION_VERIFIED:
        raise InputError(
            f"is {short(verification or '')}: a Condition is read only when confirmed or "
            "provisional (or with no verificationStatus)",
            location=f"{where}.verificationStatus",
        )
    code_loc = f"{where}.code"
    codes = _codes(cond.code, code_loc, ICD10) or _codes(cond.code, code_loc, (SNOMED,))
    if not codes:
        raise InputError("no ICD-10 or SNOMED CT coding", location=code_loc)
    if cond.onsetDateTime is not None:
        occurred = _time(cond.onsetDateTime, f"{where}.onsetDateTime", ctx)
    elif cond.recordedDate is not None:
        occurred = _time(cond.recordedDate, f"{where}.recordedDate", ctx)
    else:
        raise InputError(
            "a Condition needs onsetDateTime or recordedDate", location=f"{where}.onset[x]"
        )
    patient = _patient(cond.subject, f"{where}.subject", ctx)
    return "condition.diagnosed", patient, occurred, {"code": codes[0]}


def _appointment(appt: Any, where: str, ctx: _Context) -> _Mapped:
    event_type = APPOINTMENT_STATUS.get(appt.status)
    if event_type is None:
        raise InputError(
            f"is {short(appt.status)}: not yet a booking (Carepath reads "
            f"{', '.join(APPOINTMENT_STATUS)})",
            location=f"{where}.status",
        )
    if not appt.id:
        raise InputError("an Appointment needs an id", location=f"{where}.id")
    lookups: list[tuple[str, Any]] = [
        ("meta.lastUpdated", appt.meta.lastUpdated if appt.meta else None)
    ]
    if event_type == "appointment.booked":
        lookups.append(("created", appt.created))
    elif event_type in ("appointment.attended", "appointment.missed"):
        lookups.insert(0, ("start", appt.start))
    loc, when = next(((loc, value) for loc, value in lookups if value is not None), (None, None))
    if loc is None:
        raise InputError(
            f"no time for {event_type}: needs {' or '.join(name for name, _ in lookups)}",
            location=where,
        )
    data = {
        "appointment_id": appt.id,
        "kind": _kind(appt, where),
        "start": _time(appt.start, f"{where}.start", ctx) if appt.start else None,
    }
    patients = {
        _patient(p.actor, f"{where}.participant[{n}].actor", ctx)
        for n, p in enumerate(appt.participant or [])
        if p.actor and _is_patient(p.actor, ctx)
    }
    if len(patients) != 1:
        raise InputError(
            f"{len(patients)} Patient participants: an appointment event is for one patient",
            location=f"{where}.participant",
        )
    return event_type, patients.pop(), _time(when, f"{where}.{loc}", ctx), data


def _kind(appt: Any, where: str) -> str:
    """The kind, from appointmentType and serviceType codings (`_KIND_CODES`), or an
    appointmentType.text that is exactly one of our kinds (as adapters/outbound/fhir.py sends)."""
    concepts = [c for c in (appt.appointmentType, *(appt.serviceType or [])) if c is not None]
    kinds = {
        _KIND_CODES[(c.system or "", c.code or "")]
        for concept in concepts
        for c in concept.coding or []
        if (c.system or "", c.code or "") in _KIND_CODES
    }
    if appt.appointmentType and appt.appointmentType.text in APPOINTMENT_KINDS:
        kinds.add(appt.appointmentType.text)
    if len(kinds) == 1:
        return kinds.pop()
    if kinds:
        raise InputError(f"names more than one kind: {', '.join(sorted(kinds))}", location=where)
    raise InputError(
        f"no appointment kind: appointmentType/serviceType carry none of the codings in the "
        f"kind table of docs/adapters.md (e.g. {APPOINTMENT_KIND_SYSTEM}|follow_up)",
        location=f"{where}.appointmentType",
    )


# -- small readers ---------------------------------------------------------------------------------


def _codes(concept: Any, where: str, systems: Iterable[str]) -> list[str]:
    wanted = tuple(systems)
    out: list[str] = []
    for n, coding in enumerate((concept.coding or []) if concept is not None else []):
        if coding.system in wanted and coding.code:
            if not is_code(coding.code):
                raise InputError(
                    f"{short(coding.code)} is not a code", location=f"{where}.coding[{n}]"
                )
            out.append(coding.code)
    return out


def _first_code(concept: Any) -> str | None:
    for coding in (concept.coding or []) if concept is not None else []:
        if coding.code:
            return str(coding.code)
    return None


def _first_identifier(resource: Any) -> str | None:
    for identifier in resource.identifier or []:
        if identifier.value:
            return str(identifier.value)
    return None


def _is_patient(reference: Any, ctx: _Context) -> bool:
    text = reference.reference or ""
    if not text:
        return reference.type == "Patient" and bool(reference.identifier)
    if text.startswith(("urn:", "#")):
        found = ctx.resolve(text)
        return found is not None and found.get_resource_type() == "Patient"
    match = _REFERENCE.search(text)
    return bool(match and match["type"] == "Patient")


def _patient(reference: Any, where: str, ctx: _Context) -> str:
    """`Patient/<id>` (relative, absolute, or with `/_history/n`) -> `<id>`; a `urn:uuid:`
    reference to a Patient entry of the same Bundle -> that Patient's id; a logical reference
    (identifier only) -> the identifier's value."""
    if reference is None:
        raise InputError("no patient", location=where)
    text = reference.reference or ""
    if not text:
        if reference.identifier and reference.identifier.value:
            return str(reference.identifier.value)
        raise InputError("neither a reference nor an identifier", location=where)
    if text.startswith(("urn:", "#")):
        found = ctx.resolve(text)
        if found is None or found.get_resource_type() != "Patient" or not found.id:
            raise InputError(
                f"{short(text)} does not resolve to a Patient (with an id) in the same Bundle",
                location=where,
            )
        return str(found.id)
    match = _REFERENCE.search(text)
    if match is None or match["type"] != "Patient":
        raise InputError(f"{short(text)} is not a Patient reference (Patient/<id>)", location=where)
    return match["id"]


def _time(value: Any, where: str, ctx: _Context, *, need_time: str = "") -> datetime:
    """A FHIR date/dateTime/instant as an aware datetime. A time of day always carries an
    offset in FHIR (kept as sent); a date alone is the start of that day in the deployment's
    zone, unless `need_time` says why this element needs a time; a bare year or month is
    refused."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:
            raise InputError(f"{value.isoformat()} has no UTC offset", location=where)
        return value.replace(tzinfo=timezone(offset))
    if isinstance(value, date):
        if need_time:
            raise InputError(
                f"{value.isoformat()} has no time of day; a time is needed: {need_time}",
                location=where,
            )
        return datetime.combine(value, time(0), tzinfo=ctx.tz)
    raise InputError(f"{short(str(value))} is only a year or a month", location=where)


def _content_hash(raw: Mapping[str, Any]) -> str:
    """A resource without meta.versionId: a hash of its content without `meta` and `text`
    (which servers rewrite without changing the resource), so a resend is a duplicate."""
    content = {k: v for k, v in raw.items() if k not in ("meta", "text")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "sha256-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
