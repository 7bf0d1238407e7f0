"""The event vocabulary (shared/clinical/PATHWAYS.md) as pydantic models, and the facts each
event type exposes to a pathway's conditions.

Every event has `id`, `type`, `patient_id`, `occurred_at` (ISO 8601 with offset) and `data`.
Inbound adapters (JSON, HL7 v2, FHIR) all produce `Event`s; `Event.model_validate` checks the
`data` against the model of its type, so a malformed event is refused with the field named.

Types are strict: nothing is converted into what it was not. A number is a number (an integer
such as 80 is taken as 80.0; `true` and `"80"` are refused), a whole number is not `2.0`, a flag
is `true` or `false` (not `1`, `"yes"`), text is a string (not `4711`), a list of codes is a list
(not `"I50"`), and a time is a datetime or an ISO 8601 string with an offset, never a number (a
Unix time) or a string of digits. pydantic's lax mode would accept each of these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

AppointmentKind = Literal["follow_up", "home_visit", "foot_screening", "foot_team", "podiatry"]
APPOINTMENT_KINDS: tuple[str, ...] = get_args(AppointmentKind)

Symptom = Literal[
    "dyspnea_at_rest",
    "dyspnea_on_exertion",
    "orthopnea",
    "paroxysmal_nocturnal_dyspnea",
    "chest_pain",
    "syncope",
    "presyncope",
    "palpitations",
    "edema",
    "fatigue",
    "cough",
    "confusion",
    "reduced_urine_output",
]
Infection = Literal["none", "mild", "moderate", "severe"]


def describe(value: object) -> str:
    """A value as an error message names it, in JSON's words: `true`, `null`, `the number 80`,
    `the string '80'` (cut short), `an array`, `an object`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return f"the number {text if len(text) <= 24 else text[:24] + '...'}"
    if isinstance(value, str):
        return f"the string {value if len(value) <= 40 else value[:40] + '...'!r}"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


_NUMERIC = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")


def _instant(value: object) -> object:
    """A datetime, or an ISO 8601 string; never a number or a string of digits, which pydantic
    would take as a Unix time (1773214200 -> 2026-03-11T07:30:00Z)."""
    if isinstance(value, datetime) or (isinstance(value, str) and not _NUMERIC.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "iso_datetime_type",
        "must be an ISO 8601 string with an offset (2026-03-11T07:30:00+01:00), not {given}",
        {"given": describe(value)},
    )


#: Strict scalars: no bool or str into numbers, no number into str, no 1 or "yes" into a bool.
Number = Annotated[float, Strict()]  # an int is accepted as that float: 80 -> 80.0
Whole = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Instant = Annotated[AwareDatetime, BeforeValidator(_instant)]
Code = Annotated[Text, Field(min_length=1, max_length=64, pattern=r"^\S+$")]
Identifier = Annotated[Text, Field(min_length=1, max_length=128)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncounterDischarged(_Data):
    encounter_id: Identifier
    diagnoses: tuple[Code, ...] = ()
    disposition: Code | None = None  # HL7 table 0112 / UB-04 patient status, e.g. "01", "06"
    facility: Text | None = None


class EncounterAdmitted(_Data):
    encounter_id: Identifier
    diagnoses: tuple[Code, ...] = ()


class ObservationWeight(_Data):
    value: Number = Field(gt=0, lt=1000)
    unit: Literal["kg", "lb"]


class SymptomReported(_Data):
    symptom: Symptom


class AppointmentEvent(_Data):
    appointment_id: Identifier
    kind: AppointmentKind
    start: Instant | None = None


class TaskAcknowledged(_Data):
    task_id: Identifier | None = None
    pathway: Identifier | None = None
    escalation: Identifier | None = None
    by: Identifier

    @model_validator(mode="after")
    def _names_what(self) -> TaskAcknowledged:
        if self.task_id is None and (self.pathway is None or self.escalation is None):
            raise ValueError("give either task_id, or both pathway and escalation")
        return self


class FootExamCompleted(_Data):
    iwgdf_risk: Whole = Field(ge=0, le=3)
    active_ulcer: Flag
    infection: Infection
    ischemia: Flag
    gangrene: Flag


class ConditionDiagnosed(_Data):
    code: Code


class NoData(_Data):
    pass


class ActionFailed(_Data):
    """Produced by the engine when an action still fails after its retries."""

    action_id: Identifier
    action: Identifier
    error: Text = ""


class ActionSucceeded(_Data):
    """Produced by the engine when an action was carried out: its outcome, in the input log."""

    action_id: Identifier
    action: Identifier
    reference: Text = ""  # the outside system's id for it (a FHIR resource, a message id)


EVENT_MODELS: dict[str, type[_Data]] = {
    "encounter.discharged": EncounterDischarged,
    "encounter.admitted": EncounterAdmitted,
    "observation.weight": ObservationWeight,
    "symptom.reported": SymptomReported,
    "appointment.booked": AppointmentEvent,
    "appointment.attended": AppointmentEvent,
    "appointment.missed": AppointmentEvent,
    "appointment.cancelled": AppointmentEvent,
    "task.acknowledged": TaskAcknowledged,
    "foot_exam.completed": FootExamCompleted,
    "condition.diagnosed": ConditionDiagnosed,
    "patient.deceased": NoData,
    "patient.opted_out": NoData,
    "patient.transferred": NoData,
    "action.failed": ActionFailed,
    "action.succeeded": ActionSucceeded,
}


class Event(BaseModel):
    """One patient event, as every inbound adapter produces it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    type: Text
    patient_id: Identifier
    occurred_at: Instant
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_MODELS:
            known = ", ".join(sorted(EVENT_MODELS))
            raise ValueError(f"unknown event type '{value}' (known: {known})")
        return value

    @field_validator("data")
    @classmethod
    def _data_matches_type(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        event_type = info.data.get("type")
        if event_type is None:
            return value
        model = EVENT_MODELS[event_type]
        return model.model_validate(value).model_dump(mode="json", exclude_none=True)

    @property
    def occurred(self) -> datetime:
        return self.occurred_at


# -- facts a condition may read ------------------------------------------------------------------


class FactKind(StrEnum):
    CODES = "codes"  # a list of codes (ICD-10-CM, SNOMED CT, ...)
    CODE = "code"  # one code
    ENUM = "enum"  # one of a closed list of words
    ENUM_LIST = "enum_list"  # a list drawn from a closed list of words
    INTEGER = "integer"
    BOOL = "bool"
    MASS = "mass"  # kilograms; thresholds must carry a unit
    DURATION = "duration"  # seconds; thresholds are durations
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class FactSpec:
    name: str
    kind: FactKind
    description: str
    values: tuple[str, ...] = ()  # ENUM / ENUM_LIST: the allowed words
    minimum: int | None = None  # INTEGER bounds
    maximum: int | None = None
    windowed: bool = False  # needs `over: <duration>` (a change over a window)


def _literal_values(annotation: object) -> tuple[str, ...]:
    return tuple(str(v) for v in get_args(annotation))


_DATA_FACTS: dict[str, tuple[FactSpec, ...]] = {
    "encounter.discharged": (
        FactSpec("diagnoses", FactKind.CODES, "diagnosis codes of the encounter"),
        FactSpec("disposition", FactKind.CODE, "discharge disposition (HL7 table 0112 / UB-04)"),
        FactSpec("facility", FactKind.TEXT, "discharging facility"),
    ),
    "encounter.admitted": (
        FactSpec("diagnoses", FactKind.CODES, "diagnosis codes of the admission"),
    ),
    "observation.weight": (
        FactSpec("weight_kg", FactKind.MASS, "the reading, converted to kg"),
        FactSpec(
            "weight_gain",
            FactKind.MASS,
            "this reading minus the lowest reading in the window before it (kg)",
            windowed=True,
        ),
    ),
    "symptom.reported": (
        FactSpec("symptom", FactKind.ENUM, "the symptom", _literal_values(Symptom)),
    ),
    "task.acknowledged": (FactSpec("by", FactKind.TEXT, "role that acknowledged"),),
    "foot_exam.completed": (
        FactSpec("iwgdf_risk", FactKind.INTEGER, "IWGDF risk category", minimum=0, maximum=3),
        FactSpec("active_ulcer", FactKind.BOOL, "an active ulcer was found"),
        FactSpec("infection", FactKind.ENUM, "infection severity", _literal_values(Infection)),
        FactSpec("ischemia", FactKind.BOOL, "limb ischaemia"),
        FactSpec("gangrene", FactKind.BOOL, "gangrene"),
    ),
    "condition.diagnosed": (FactSpec("code", FactKind.CODE, "the diagnosis code"),),
    "action.failed": (FactSpec("action", FactKind.TEXT, "the action type that failed"),),
    "action.succeeded": (
        FactSpec("action", FactKind.TEXT, "the action type that was carried out"),
    ),
}
_APPOINTMENT_FACTS = (FactSpec("kind", FactKind.ENUM, "appointment kind", APPOINTMENT_KINDS),)
for _type in (
    "appointment.booked",
    "appointment.attended",
    "appointment.missed",
    "appointment.cancelled",
):
    _DATA_FACTS[_type] = _APPOINTMENT_FACTS

#: Facts about the patient's instance of the pathway, available to every rule (not enrolment).
INSTANCE_FACTS: tuple[FactSpec, ...] = (
    FactSpec("time_since_enrolment", FactKind.DURATION, "time from enrolment to this event"),
    FactSpec(
        "booked",
        FactKind.ENUM_LIST,
        "appointment kinds booked in this instance and not since cancelled",
        APPOINTMENT_KINDS,
    ),
    FactSpec(
        "attended",
        FactKind.ENUM_LIST,
        "appointment kinds attended in this instance",
        APPOINTMENT_KINDS,
    ),
    FactSpec("actions_fired", FactKind.ENUM_LIST, "action types already fired in this instance"),
)


def event_facts(event_type: str, *, enrolled: bool) -> dict[str, FactSpec]:
    """The facts a condition on `event_type` may read; instance facts only once enrolled."""
    facts = {f.name: f for f in _DATA_FACTS.get(event_type, ())}
    if enrolled:
        facts.update({f.name: f for f in INSTANCE_FACTS})
    return facts
